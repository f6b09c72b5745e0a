//! Test support for the simulated Metal driver.
//!
//! [`artifacts`] builds `libsim_metal.so` and the `mlx_workload` binary with
//! clang against GCC's libobjc and the BlocksRuntime, once per source
//! revision, cached under `target/sim-metal/<hash>/`. [`WorkloadRun`] starts
//! one workload as a child process (optionally with a library preloaded),
//! waits for it with a time limit, and collects the simulated panic reports.
//!
//! The driver models community reports of the IOGPUFamily bug, not Apple's
//! code: see `tests/sim-metal/README.md`.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

const DRIVER_SOURCE: &str = include_str!("../sim_metal.m");
const HEADER_SOURCE: &str = include_str!("../sim_metal.h");
const WORKLOAD_SOURCE: &str = include_str!("../mlx_workload.m");
const SELFTEST_CLIENT_SOURCE: &str = include_str!("../selftest_client.m");

/// File names `metal-guard selftest --sim-driver DIR` expects in `DIR`.
pub const SELFTEST_DRIVER_FILE: &str = "libsim_metal.so";
/// The ctypes-facing "MLX" of the self-test (`selftest_client.m`).
pub const SELFTEST_CLIENT_FILE: &str = "libmlx_selftest_client.so";

/// What to install when the toolchain is missing (Debian/Ubuntu).
pub const INSTALL_HINT: &str = "apt-get install clang libobjc-12-dev libblocksruntime-dev";

/// The built driver and workload.
#[derive(Debug, Clone)]
pub struct SimArtifacts {
    /// Folder holding both files.
    pub dir: PathBuf,
    /// `libsim_metal.so`: exports `MTLCreateSystemDefaultDevice` and `MTLCopyAllDevices`.
    pub library: PathBuf,
    /// `mlx_workload`: linked against the library (rpath to `dir`).
    pub workload: PathBuf,
}

/// Why the simulated driver could not be built.
#[derive(Debug, Clone)]
pub enum BuildError {
    /// `clang` is not on PATH.
    ClangMissing,
    /// GCC's Objective-C runtime (headers + libobjc.so) or Block.h is missing.
    HeadersMissing(String),
    /// clang ran and failed.
    CompileFailed { command: String, output: String },
    /// Creating or renaming the cache folder failed.
    Io(String),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::ClangMissing => write!(
                f,
                "cannot build the simulated Metal driver: clang is not on PATH; install the toolchain with `{INSTALL_HINT}`"
            ),
            BuildError::HeadersMissing(what) => write!(
                f,
                "cannot build the simulated Metal driver: {what}; install it with `{INSTALL_HINT}`"
            ),
            BuildError::CompileFailed { command, output } => write!(
                f,
                "building the simulated Metal driver failed: `{command}`:\n{output}"
            ),
            BuildError::Io(msg) => write!(f, "cannot build the simulated Metal driver: {msg}"),
        }
    }
}

impl std::error::Error for BuildError {}

/// The valgrind suppressions for GCC libobjc's own allocations
/// (`tests/sim-metal/valgrind.supp`).
pub fn valgrind_suppressions() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("valgrind.supp")
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| here.to_path_buf())
}

/// Cargo's target folder: `CARGO_TARGET_DIR` if set, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// `target/debug/libmetal_guard_inject.so`, if it has been built.
pub fn inject_library() -> Option<PathBuf> {
    let path = target_dir().join("debug").join("libmetal_guard_inject.so");
    path.is_file().then_some(path)
}

/// Builds `libmetal_guard_inject.so` with `cargo build -p metal-guard-inject`
/// (debug profile, this workspace's target folder) once per process and
/// returns its path. Cargo releases its build lock before running tests, so
/// this is safe inside `cargo test`.
pub fn build_inject_library() -> Result<PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let output = Command::new(&cargo)
                .args(["build", "-p", "metal-guard-inject"])
                .current_dir(workspace_root())
                .output()
                .map_err(|e| {
                    format!(
                        "cannot run `{} build -p metal-guard-inject`: {e}",
                        cargo.to_string_lossy()
                    )
                })?;
            if !output.status.success() {
                return Err(format!(
                    "`cargo build -p metal-guard-inject` failed:\n{}",
                    String::from_utf8_lossy(&output.stderr)
                ));
            }
            inject_library().ok_or_else(|| {
                format!(
                    "`cargo build -p metal-guard-inject` succeeded but {} is missing",
                    target_dir()
                        .join("debug/libmetal_guard_inject.so")
                        .display()
                )
            })
        })
        .clone()
}

/// Builds (or finds in the cache) the driver and the workload. Built once
/// per process; concurrent test binaries build into private folders and
/// rename, so they never see a half-written file.
pub fn artifacts() -> Result<&'static SimArtifacts, BuildError> {
    static BUILT: OnceLock<Result<SimArtifacts, BuildError>> = OnceLock::new();
    BUILT.get_or_init(build).as_ref().map_err(Clone::clone)
}

struct Toolchain {
    objc_include: PathBuf,
    objc_lib_dir: PathBuf,
}

fn find_toolchain() -> Result<Toolchain, BuildError> {
    match Command::new("clang")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => {}
        _ => return Err(BuildError::ClangMissing),
    }
    if !Path::new("/usr/include/Block.h").is_file() {
        return Err(BuildError::HeadersMissing(
            "/usr/include/Block.h (libblocksruntime-dev) not found".into(),
        ));
    }
    // GCC's runtime lives in /usr/lib/gcc/<triple>/<version>/; prefer 12.
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(triples) = fs::read_dir("/usr/lib/gcc") {
        for triple in triples.flatten() {
            if let Ok(versions) = fs::read_dir(triple.path()) {
                candidates.extend(versions.flatten().map(|v| v.path()));
            }
        }
    }
    candidates.sort_by_key(|p| {
        let is_12 = p.file_name() == Some(OsStr::new("12"));
        (!is_12, p.clone())
    });
    for dir in candidates {
        let include = dir.join("include");
        if include.join("objc").join("runtime.h").is_file() && dir.join("libobjc.so").exists() {
            return Ok(Toolchain {
                objc_include: include,
                objc_lib_dir: dir,
            });
        }
    }
    Err(BuildError::HeadersMissing(
        "GCC's Objective-C runtime (objc/runtime.h and libobjc.so under /usr/lib/gcc/*/*/) not found"
            .into(),
    ))
}

/// FNV-1a, 64-bit: a stable cache key for the sources and flags.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0u8)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

fn run_clang(args: &[OsString]) -> Result<(), BuildError> {
    let output = Command::new("clang")
        .args(args)
        .output()
        .map_err(|_| BuildError::ClangMissing)?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stdout));
    let command = std::iter::once(OsStr::new("clang"))
        .chain(args.iter().map(OsString::as_os_str))
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    Err(BuildError::CompileFailed {
        command,
        output: text,
    })
}

/// The clang flags every simulated-driver file is compiled with.
fn compile_flags(tools: &Toolchain) -> Vec<String> {
    vec![
        "-fobjc-runtime=gcc".into(),
        "-fblocks".into(),
        "-g".into(),
        "-O1".into(),
        "-Wall".into(),
        "-Wextra".into(),
        "-Wno-unused-parameter".into(),
        "-Werror".into(),
        // After clang's own headers, so its stdatomic.h etc. win over GCC's.
        "-idirafter".into(),
        tools.objc_include.display().to_string(),
    ]
}

fn build() -> Result<SimArtifacts, BuildError> {
    let tools = find_toolchain()?;
    let common = compile_flags(&tools);
    let key = fnv1a(&[
        DRIVER_SOURCE,
        HEADER_SOURCE,
        WORKLOAD_SOURCE,
        &common.join(" "),
        &tools.objc_lib_dir.display().to_string(),
    ]);
    let base = target_dir().join("sim-metal");
    let dir = base.join(format!("{key:016x}"));
    let artifacts = SimArtifacts {
        library: dir.join("libsim_metal.so"),
        workload: dir.join("mlx_workload"),
        dir: dir.clone(),
    };
    if artifacts.library.is_file() && artifacts.workload.is_file() {
        return Ok(artifacts);
    }
    fs::create_dir_all(&base).map_err(|e| BuildError::Io(format!("{}: {e}", base.display())))?;
    let scratch = tempfile::Builder::new()
        .prefix(".build-")
        .tempdir_in(&base)
        .map_err(|e| BuildError::Io(format!("{}: {e}", base.display())))?;
    let src = scratch.path();
    for (name, text) in [
        ("sim_metal.m", DRIVER_SOURCE),
        ("sim_metal.h", HEADER_SOURCE),
        ("mlx_workload.m", WORKLOAD_SOURCE),
    ] {
        fs::write(src.join(name), text)
            .map_err(|e| BuildError::Io(format!("{}: {e}", src.join(name).display())))?;
    }
    let objc_lib = format!("-L{}", tools.objc_lib_dir.display());
    let os = |s: &str| OsString::from(s);
    let path = |p: &Path| p.as_os_str().to_os_string();

    let mut lib_args: Vec<OsString> = common.iter().map(|s| os(s)).collect();
    lib_args.extend([
        os("-shared"),
        os("-fPIC"),
        os("-fvisibility=hidden"),
        os("-I"),
        path(src),
        path(&src.join("sim_metal.m")),
        os("-o"),
        path(&src.join("libsim_metal.so")),
        os(&objc_lib),
        os("-lobjc"),
        os("-lBlocksRuntime"),
        os("-lpthread"),
    ]);
    run_clang(&lib_args)?;

    let mut exe_args: Vec<OsString> = common.iter().map(|s| os(s)).collect();
    let mut rpath = OsString::from("-Wl,-rpath,");
    rpath.push(dir.as_os_str());
    let mut lib_dir = OsString::from("-L");
    lib_dir.push(src.as_os_str());
    exe_args.extend([
        os("-I"),
        path(src),
        path(&src.join("mlx_workload.m")),
        os("-o"),
        path(&src.join("mlx_workload")),
        lib_dir,
        os("-lsim_metal"),
        rpath,
        os(&objc_lib),
        os("-lobjc"),
        os("-lBlocksRuntime"),
        os("-lpthread"),
    ]);
    run_clang(&exe_args)?;

    let staged = scratch.keep();
    match fs::rename(&staged, &dir) {
        Ok(()) => {}
        Err(_) if artifacts.library.is_file() && artifacts.workload.is_file() => {
            // Another process finished the same build first.
            let _ = fs::remove_dir_all(&staged);
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&staged);
            return Err(BuildError::Io(format!(
                "rename {} -> {}: {e}",
                staged.display(),
                dir.display()
            )));
        }
    }
    Ok(artifacts)
}

/// What `metal-guard selftest` needs on Linux: the driver and the client
/// library Python loads with ctypes, side by side in one folder (the client
/// finds the driver through `$ORIGIN`).
#[derive(Debug, Clone)]
pub struct SelftestArtifacts {
    /// Pass this as `metal-guard selftest --sim-driver DIR`.
    pub dir: PathBuf,
    /// `DIR/libsim_metal.so`.
    pub driver: PathBuf,
    /// `DIR/libmlx_selftest_client.so`.
    pub client: PathBuf,
}

/// Builds (or finds in the cache) the self-test folder,
/// `target/sim-metal/selftest-<hash>/`, once per process.
pub fn selftest_artifacts() -> Result<&'static SelftestArtifacts, BuildError> {
    static BUILT: OnceLock<Result<SelftestArtifacts, BuildError>> = OnceLock::new();
    BUILT
        .get_or_init(build_selftest)
        .as_ref()
        .map_err(Clone::clone)
}

fn build_selftest() -> Result<SelftestArtifacts, BuildError> {
    let sim = artifacts()?;
    let tools = find_toolchain()?;
    let common = compile_flags(&tools);
    let key = fnv1a(&[
        DRIVER_SOURCE,
        HEADER_SOURCE,
        SELFTEST_CLIENT_SOURCE,
        &common.join(" "),
        &tools.objc_lib_dir.display().to_string(),
    ]);
    let base = target_dir().join("sim-metal");
    let dir = base.join(format!("selftest-{key:016x}"));
    let built = SelftestArtifacts {
        driver: dir.join(SELFTEST_DRIVER_FILE),
        client: dir.join(SELFTEST_CLIENT_FILE),
        dir: dir.clone(),
    };
    if built.driver.is_file() && built.client.is_file() {
        return Ok(built);
    }
    let io = |what: &Path, e: io::Error| BuildError::Io(format!("{}: {e}", what.display()));
    let scratch = tempfile::Builder::new()
        .prefix(".build-selftest-")
        .tempdir_in(&base)
        .map_err(|e| io(&base, e))?;
    let src = scratch.path();
    for (name, text) in [
        ("sim_metal.h", HEADER_SOURCE),
        ("selftest_client.m", SELFTEST_CLIENT_SOURCE),
    ] {
        fs::write(src.join(name), text).map_err(|e| io(&src.join(name), e))?;
    }
    fs::copy(&sim.library, src.join(SELFTEST_DRIVER_FILE)).map_err(|e| io(&sim.library, e))?;
    let mut args: Vec<OsString> = common.iter().map(OsString::from).collect();
    let mut lib_dir = OsString::from("-L");
    lib_dir.push(src.as_os_str());
    args.extend([
        OsString::from("-shared"),
        "-fPIC".into(),
        "-fvisibility=hidden".into(),
        "-I".into(),
        src.as_os_str().to_os_string(),
        src.join("selftest_client.m").into_os_string(),
        "-o".into(),
        src.join(SELFTEST_CLIENT_FILE).into_os_string(),
        lib_dir,
        "-lsim_metal".into(),
        "-Wl,-rpath,$ORIGIN".into(),
        format!("-L{}", tools.objc_lib_dir.display()).into(),
        "-lobjc".into(),
        "-lBlocksRuntime".into(),
        "-lpthread".into(),
    ]);
    run_clang(&args)?;
    let staged = scratch.keep();
    match fs::rename(&staged, &dir) {
        Ok(()) => Ok(built),
        Err(_) if built.driver.is_file() && built.client.is_file() => {
            // Another process finished the same build first.
            let _ = fs::remove_dir_all(&staged);
            Ok(built)
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&staged);
            Err(io(&staged, e))
        }
    }
}

/// The MLX-like workloads of `mlx_workload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Workload {
    /// Repeated model load/unload, back to back (late completion records).
    LoadUnload,
    /// Two request streams; cache trims free buffers still in flight.
    ConcurrentTrim,
    /// Residency-set churn with a raised wired limit.
    ResidencyChurn,
    /// One allocation above the working set while work is in flight.
    OversizePrefill,
    /// Exit with GPU work in flight.
    ExitInflight,
    /// The same calls in a safe order: never panics (control).
    Steady,
}

impl Workload {
    /// Every workload that trips the simulated bug when unguarded.
    pub const PANICKING: [Workload; 5] = [
        Workload::LoadUnload,
        Workload::ConcurrentTrim,
        Workload::ResidencyChurn,
        Workload::OversizePrefill,
        Workload::ExitInflight,
    ];

    /// The subcommand name.
    pub fn name(self) -> &'static str {
        match self {
            Workload::LoadUnload => "load-unload",
            Workload::ConcurrentTrim => "concurrent-trim",
            Workload::ResidencyChurn => "residency-churn",
            Workload::OversizePrefill => "oversize-prefill",
            Workload::ExitInflight => "exit-inflight",
            Workload::Steady => "steady",
        }
    }

    /// The panic-string fragment the unguarded run is expected to produce.
    pub fn expected_panic(self) -> Option<&'static str> {
        match self {
            Workload::ResidencyChurn => Some("fPendingMemorySet"),
            Workload::Steady => None,
            _ => Some("completeMemory() prepare count underflow"),
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The guard settings every guarded run uses: the guard's own defaults with
/// its intervals scaled from minutes to fractions of a second, matched to
/// the driver's default delays (`SIM_METAL_COMPLETE_LAG_US` = 100 ms, so a
/// 300 ms cadence interval covers it), and bursts sized for the workloads'
/// 4 MiB "weights" instead of real multi-GiB models.
///
/// `METALGUARD_BURST_QUIET_MS=15`: shorter than the ~22 ms between two loads
/// of `load-unload`, longer than the guard's own synchronous breadcrumb
/// write between two allocations of one load.
pub const GUARD_TEST_ENV: &[(&str, &str)] = &[
    ("METALGUARD_CADENCE_INTERVAL_S", "0.3"),
    ("METALGUARD_CADENCE_UNLOAD_INTERVAL_S", "0.3"),
    ("METALGUARD_CADENCE_MAX_STALL_S", "2"),
    ("METALGUARD_BURST_MIN_MB", "2"),
    ("METALGUARD_BURST_WINDOW_MS", "500"),
    ("METALGUARD_BURST_QUIET_MS", "15"),
    ("METALGUARD_RESIDENCY_GRACE_MS", "20"),
    ("METALGUARD_EXIT_DRAIN_S", "5"),
];

/// One child-process run of a workload.
#[derive(Debug, Clone)]
pub struct WorkloadRun {
    pub workload: Workload,
    /// Extra `--key value` arguments.
    pub args: Vec<OsString>,
    /// Extra environment (applied after the defaults below).
    pub env: Vec<(OsString, OsString)>,
    /// A library to `LD_PRELOAD` (the guard).
    pub preload: Option<PathBuf>,
    /// Where the simulated driver writes panic reports (`METALGUARD_SIM_PANIC_DIR`).
    pub panic_dir: PathBuf,
    /// `HOME` for the child (the guard's default state lives under it).
    pub home: PathBuf,
    /// Killed after this long.
    pub timeout: Duration,
    /// A command the workload runs under (e.g. valgrind and its options).
    pub wrapper: Vec<OsString>,
}

/// What a run produced.
#[derive(Debug)]
pub struct WorkloadOutcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// `.ips` files in the panic folder after the run, sorted by name.
    pub reports: Vec<PathBuf>,
    pub timed_out: bool,
    pub elapsed: Duration,
}

impl WorkloadOutcome {
    /// Killed by SIGABRT: the simulated reboot (or a client fault).
    pub fn aborted(&self) -> bool {
        self.status.signal() == Some(6)
    }

    /// A simulated kernel panic happened (a report was written).
    pub fn panicked(&self) -> bool {
        !self.reports.is_empty()
    }

    /// Exit 0 and no report.
    pub fn clean(&self) -> bool {
        self.status.success() && self.reports.is_empty() && !self.timed_out
    }

    /// The concatenated text of every report.
    pub fn report_text(&self) -> String {
        self.reports
            .iter()
            .filter_map(|p| fs::read_to_string(p).ok())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A one-paragraph description for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "status={:?} signal={:?} timed_out={} reports={:?} elapsed={:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.status.code(),
            self.status.signal(),
            self.timed_out,
            self.reports,
            self.elapsed,
            tail(&self.stdout, 3000),
            tail(&self.stderr, 6000)
        )
    }
}

fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

impl WorkloadRun {
    /// A run with the panic folder and HOME inside `scratch`.
    pub fn new(workload: Workload, scratch: &Path) -> WorkloadRun {
        WorkloadRun {
            workload,
            args: Vec::new(),
            env: Vec::new(),
            preload: None,
            panic_dir: scratch.join("panics"),
            home: scratch.join("home"),
            timeout: Duration::from_secs(60),
            wrapper: Vec::new(),
        }
    }

    /// Adds `--key value`.
    pub fn arg(mut self, key: &str, value: impl Into<OsString>) -> Self {
        self.args.push(format!("--{key}").into());
        self.args.push(value.into());
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Preloads a library (the guard).
    pub fn preload(mut self, library: impl Into<PathBuf>) -> Self {
        self.preload = Some(library.into());
        self
    }

    /// Runs the workload under `program` with `options` (e.g. valgrind).
    pub fn wrapped<I, S>(mut self, program: impl Into<OsString>, options: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.wrapper = std::iter::once(program.into())
            .chain(options.into_iter().map(Into::into))
            .collect();
        self
    }

    /// Where a guarded run's breadcrumbs go (next to the panic folder).
    pub fn breadcrumb_path(&self) -> PathBuf {
        self.home.join("breadcrumbs.log")
    }

    /// Preloads the guard with [`GUARD_TEST_ENV`], its breadcrumbs in
    /// [`Self::breadcrumb_path`] and its cooldown gate reading this run's
    /// panic folder. Later `env` calls override these.
    pub fn guarded(mut self, library: impl Into<PathBuf>) -> Self {
        self.preload = Some(library.into());
        let mut env: Vec<(OsString, OsString)> = GUARD_TEST_ENV
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect();
        env.push((
            "METALGUARD_BREADCRUMB_PATH".into(),
            self.breadcrumb_path().into_os_string(),
        ));
        env.push((
            "METALGUARD_PANIC_REPORT_DIRS".into(),
            self.panic_dir.clone().into_os_string(),
        ));
        env.append(&mut self.env);
        self.env = env;
        self
    }

    /// The breadcrumb log's text after a guarded run ("" if none).
    pub fn breadcrumbs(&self) -> String {
        fs::read_to_string(self.breadcrumb_path()).unwrap_or_default()
    }

    /// Starts the child, waits (bounded) and collects its output and reports.
    pub fn run(&self, artifacts: &SimArtifacts) -> io::Result<WorkloadOutcome> {
        fs::create_dir_all(&self.panic_dir)?;
        fs::create_dir_all(&self.home)?;
        let mut cmd = match self.wrapper.split_first() {
            Some((program, options)) => {
                let mut cmd = Command::new(program);
                cmd.args(options).arg(&artifacts.workload);
                cmd
            }
            None => Command::new(&artifacts.workload),
        };
        cmd.arg(self.workload.name()).args(&self.args);
        // The child's configuration comes only from this run.
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("METALGUARD_") || k.starts_with("SIM_METAL_") || k == "LD_PRELOAD" {
                cmd.env_remove(&key);
            }
        }
        cmd.env("METALGUARD_SIM_PANIC_DIR", &self.panic_dir)
            .env("HOME", &self.home)
            .env("XDG_CACHE_HOME", self.home.join(".cache"));
        if let Some(lib) = &self.preload {
            cmd.env("LD_PRELOAD", lib);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd.spawn()?;
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let (status, timed_out) = wait_bounded(&mut child, self.timeout)?;
        let elapsed = started.elapsed();
        let stdout = stdout.join().unwrap_or_default();
        let stderr = stderr.join().unwrap_or_default();
        let mut reports: Vec<PathBuf> = fs::read_dir(&self.panic_dir)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension() == Some(OsStr::new("ips")))
            .collect();
        reports.sort();
        Ok(WorkloadOutcome {
            status,
            stdout,
            stderr,
            reports,
            timed_out,
            elapsed,
        })
    }
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut text);
        }
        String::from_utf8_lossy(&text).into_owned()
    })
}

fn wait_bounded(child: &mut Child, limit: Duration) -> io::Result<(ExitStatus, bool)> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok((status, false));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return Ok((child.wait()?, true));
        }
        thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_key_changes_with_any_part() {
        assert_ne!(fnv1a(&["a", "b"]), fnv1a(&["ab"]));
        assert_ne!(fnv1a(&["a"]), fnv1a(&["b"]));
        assert_eq!(fnv1a(&["x", "y"]), fnv1a(&["x", "y"]));
    }

    #[test]
    fn every_panicking_workload_names_its_signature() {
        for w in Workload::PANICKING {
            assert!(w.expected_panic().is_some(), "{w}");
        }
        assert!(Workload::Steady.expected_panic().is_none());
    }
}
