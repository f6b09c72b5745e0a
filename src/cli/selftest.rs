//! `metal-guard selftest`: run a tiny MLX program (on Linux: the same steps
//! against the simulated Metal driver) through `mlx-safe-python` and check,
//! from the program's own report, the guard's handshake and its breadcrumbs,
//! that the guard is really there. See `docs/selftest.md`.

use super::outcome::{CommandError, CommandResult, Outcome};
use metal_guard::selftest::{
    breadcrumbs_for_pid, check_device_class, check_hooks, check_library_loaded, check_refusal,
    check_summary, check_tiny_program, parse_program_report, Check, Environment, ProgramReport,
    SelftestReport, CEILING_GIB, OVERSIZE_BYTES,
};
use metal_guard_core::env_vars;
use metal_guard_core::gates::start_gate::{
    self, CooldownGate, StartOutcome, VerdictSource, FORCE_VAR,
};
use metal_guard_shim::binary_inspection::inspect_binary;
use metal_guard_shim::exec_plan::{choose_python, plan_exec, PYTHON_BIN_VAR};
use metal_guard_shim::injection_rules::BinaryFormat;
use metal_guard_shim::launch_env::{LaunchEnv, Platform};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The self-test could not run (nothing was judged).
/// How long the program may take (the first `import mlx` can be slow).
const PROGRAM_TIMEOUT: Duration = Duration::from_secs(180);

const PROGRAM_COMMON: &str = include_str!("../selftest_programs/common.py");
const PROGRAM_MLX: &str = include_str!("../selftest_programs/mlx.py");
const PROGRAM_SIM: &str = include_str!("../selftest_programs/sim.py");

/// The simulated driver's files (`cargo run -p metal-guard-sim-metal --bin sim-metal-build`).
const SIM_DRIVER_FILE: &str = "libsim_metal.so";
const SIM_CLIENT_FILE: &str = "libmlx_selftest_client.so";
const SIM_DIR_VAR: &str = "METALGUARD_SIM_METAL_DIR";
const SIM_BUILD_COMMAND: &str = "cargo run -p metal-guard-sim-metal --bin sim-metal-build";

/// Settings that would make the guard stand aside; the self-test runs without them.
const OVERRIDDEN_SETTINGS: &[&str] = &[
    "METALGUARD_DISABLED",
    "METALGUARD_MODE",
    "METALGUARD_CEILING",
    "METALGUARD_MAX_SINGLE_ALLOC_PCT",
    "METALGUARD_MAX_LIVE_GB",
    "METALGUARD_MAX_LIVE_PCT",
];

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Exit codes: 0 every check passed, 1 a check failed, 3 the self-test could not run (no launcher, no interpreter, the simulated driver is not built, or a cooldown is in force without --force)."
)]
pub struct Args {
    /// The Python interpreter to test (default: what mlx-safe-python would choose).
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// Keep the temporary folder (program, output, breadcrumbs) and print where it is.
    #[arg(long)]
    pub keep: bool,
    /// Run even during a cooldown or lockout (the self-test does real GPU work).
    #[arg(long)]
    pub force: bool,
    /// Linux: the folder with the simulated Metal driver (libsim_metal.so, libmlx_selftest_client.so); default: METALGUARD_SIM_METAL_DIR.
    #[arg(long, value_name = "DIR")]
    pub sim_driver: Option<PathBuf>,
}

/// The driver the program talks to.
enum Driver {
    Metal,
    Simulated { dir: PathBuf, client: PathBuf },
}

/// The self-test could not run (status 3, `COULD_NOT_ANSWER`).
fn could_not_run(message: &str) -> CommandResult {
    Err(CommandError::failed(format!("selftest: {message}")))
}

pub fn run(args: Args, output: super::shared_args::JsonOutput) -> CommandResult {
    let launcher = match launcher_path() {
        Ok(p) => p,
        Err(message) => return could_not_run(&message),
    };
    let sim_dir = args.sim_driver.clone().or_else(|| {
        std::env::var_os(SIM_DIR_VAR)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let driver = match choose_driver(sim_dir.as_deref()) {
        Ok(d) => d,
        Err(message) => return could_not_run(&message),
    };
    let mut args = args;
    if let Some(python) = &args.python {
        // The program runs in a temporary folder: a relative path would not
        // resolve there. Symlinks are kept (a venv's python is run by its path).
        args.python = Some(std::path::absolute(python).unwrap_or_else(|_| python.clone()));
    }
    if let Some(python) = &args.python {
        if !python.is_file() {
            return could_not_run(&format!(
                "--python {} is not a file; pass the interpreter that runs MLX (for example `.venv/bin/python`)",
                python.display()
            ));
        }
    }

    let mut notes: Vec<String> = Vec::new();
    // The one override rule; `--force` is the self-test's own spelling of it.
    let force = args.force || start_gate::force_requested(&env_vars::process_env);
    let decision = start_gate::decide(
        CooldownGate::from_environment().verdict(),
        force,
        "metal-guard selftest",
    );
    match decision.outcome {
        StartOutcome::Blocked {
            reason,
            how_to_clear,
        } => {
            let clear = how_to_clear.map(|h| format!("; {h}")).unwrap_or_default();
            return could_not_run(&format!(
                "the cooldown gate blocks GPU work right now ({reason}{clear}); the self-test does real GPU work, so it waits too: run `metal-guard selftest --force` to run it anyway"
            ));
        }
        StartOutcome::Overridden { reason, .. } => {
            notes.push(format!("cooldown in force, run with --force: {reason}"))
        }
        StartOutcome::FailedOpen { error } => {
            notes.push(format!("the cooldown gate could not decide ({error})"))
        }
        StartOutcome::Proceed => {}
    }

    let folder = match tempfile::Builder::new()
        .prefix("metal-guard-selftest.")
        .tempdir()
    {
        Ok(d) => d,
        Err(e) => {
            return could_not_run(&format!(
                "cannot create a temporary folder ({e}); set TMPDIR to a writable folder"
            ))
        }
    };
    let outcome = run_program(&launcher, &driver, &args, force, folder.path());
    let kept = args.keep.then(|| folder.keep());
    let outcome = match outcome {
        Ok(o) => o,
        Err(message) => {
            if let Some(dir) = &kept {
                eprintln!("metal-guard selftest: files kept in {}", dir.display());
            }
            return could_not_run(&message);
        }
    };

    let report = judge(&outcome, &driver, &args, &launcher, notes, kept.as_deref());
    let text = if output.json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => text + "\n",
            Err(e) => return could_not_run(&format!("cannot write the JSON report: {e}")),
        }
    } else {
        let mut text = report.render();
        if report.exit_code() != 0 && !outcome.stderr.trim().is_empty() {
            text.push_str("\nthe program's last error lines:\n");
            for line in tail_lines(&outcome.stderr, 12) {
                text.push_str(&format!("  {line}\n"));
            }
        }
        text
    };
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::stdout().write_all(text.as_bytes());
    Ok(Outcome::finding_if(report.exit_code() != 0))
}

/// `mlx-safe-python` beside this executable (symlinks resolved).
fn launcher_path() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable ({e})"))?;
    let exe = std::fs::canonicalize(&exe).unwrap_or(exe);
    let launcher = exe.with_file_name("mlx-safe-python");
    if launcher.is_file() {
        Ok(launcher)
    } else {
        Err(format!(
            "mlx-safe-python is not beside {} (they ship together); reinstall metal-guard, or build both with `cargo build`",
            exe.display()
        ))
    }
}

fn choose_driver(sim_dir: Option<&Path>) -> Result<Driver, String> {
    if cfg!(target_os = "macos") {
        return match sim_dir {
            Some(_) => Err("--sim-driver (METALGUARD_SIM_METAL_DIR) is for Linux; on a Mac the self-test uses Metal itself: run `metal-guard selftest` without it".into()),
            None => Ok(Driver::Metal),
        };
    }
    let how = format!(
        "build it from a metal-guard checkout with `{SIM_BUILD_COMMAND}` (needs clang, libobjc-12-dev and libblocksruntime-dev) and pass the folder it prints with --sim-driver DIR or METALGUARD_SIM_METAL_DIR"
    );
    let Some(dir) = sim_dir else {
        return Err(format!(
            "this is not a Mac, so the self-test runs against the simulated Metal driver, and none was given; {how}"
        ));
    };
    for file in [SIM_DRIVER_FILE, SIM_CLIENT_FILE] {
        if !dir.join(file).is_file() {
            return Err(format!(
                "the simulated Metal driver is not built: {} is missing; {how}",
                dir.join(file).display()
            ));
        }
    }
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    Ok(Driver::Simulated {
        client: dir.join(SIM_CLIENT_FILE),
        dir,
    })
}

/// What one run of the program left behind.
struct ProgramOutcome {
    pid: u32,
    exit: Option<i32>,
    signal: Option<i32>,
    timed_out: bool,
    stdout: String,
    stderr: String,
    breadcrumbs: String,
}

fn run_program(
    launcher: &Path,
    driver: &Driver,
    args: &Args,
    force: bool,
    folder: &Path,
) -> Result<ProgramOutcome, String> {
    let program = folder.join("selftest.py");
    let platform_part = match driver {
        Driver::Metal => PROGRAM_MLX,
        Driver::Simulated { .. } => PROGRAM_SIM,
    };
    std::fs::write(&program, format!("{PROGRAM_COMMON}\n{platform_part}"))
        .map_err(|e| format!("cannot write {} ({e})", program.display()))?;
    let breadcrumbs = folder.join("breadcrumbs.log");

    let mut cmd = Command::new(launcher);
    cmd.arg(&program);
    if let Driver::Simulated { client, .. } = driver {
        cmd.arg(client);
    }
    for name in OVERRIDDEN_SETTINGS {
        cmd.env_remove(name);
    }
    cmd.env("METALGUARD_BREADCRUMB_PATH", &breadcrumbs)
        .env("METALGUARD_MAX_SINGLE_ALLOC_GB", CEILING_GIB.to_string())
        .env(
            "METALGUARD_SELFTEST_OVERSIZE_BYTES",
            OVERSIZE_BYTES.to_string(),
        )
        .current_dir(folder)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(python) = &args.python {
        cmd.env(PYTHON_BIN_VAR, python);
    }
    if force {
        cmd.env(FORCE_VAR, "1");
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {} ({e})", launcher.display()))?;
    let pid = child.id();
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let started = Instant::now();
    let (status, timed_out) = loop {
        match child.try_wait() {
            Ok(Some(status)) => break (status, false),
            Ok(None) if started.elapsed() > PROGRAM_TIMEOUT => {
                let _ = child.kill();
                break (
                    child
                        .wait()
                        .map_err(|e| format!("waiting for the program: {e}"))?,
                    true,
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for the program: {e}")),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let _ = std::fs::write(folder.join("program.stdout"), &stdout);
    let _ = std::fs::write(folder.join("program.stderr"), &stderr);
    use std::os::unix::process::ExitStatusExt;
    Ok(ProgramOutcome {
        pid,
        exit: status.code(),
        signal: status.signal(),
        timed_out,
        stdout,
        stderr,
        breadcrumbs: std::fs::read_to_string(&breadcrumbs).unwrap_or_default(),
    })
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn tail_lines(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// The launcher's messages (its refusals and notes) from the program's stderr.
fn launcher_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("mlx-safe-python:"))
        .collect()
}

/// The interpreter the launcher chooses, resolved the same way, with the
/// facts that decide whether the guard can be injected into it.
fn describe_interpreter(launcher: &Path, python: Option<&Path>) -> (Option<PathBuf>, String) {
    let mut vars: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    if let Some(p) = python {
        vars.retain(|(k, _)| k != PYTHON_BIN_VAR);
        vars.push((PYTHON_BIN_VAR.into(), p.into()));
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let env = LaunchEnv::new(vars, cwd, launcher.to_path_buf(), Platform::current());
    let plan = choose_python(&env).and_then(|(start, origin)| {
        plan_exec(&env, start.clone(), start.into_os_string(), &[]).map(|p| (p, origin))
    });
    let (plan, origin) = match plan {
        Ok(p) => p,
        Err(e) => return (None, e.message().to_string()),
    };
    let facts: Vec<String> = plan
        .checked_binaries
        .iter()
        .map(|binary| match inspect_binary(binary) {
            Ok(f) => {
                let format = match &f.format {
                    BinaryFormat::MachO(m) => match &m.signature {
                        Some(sig) => format!(
                            "Mach-O {}, signature flags {} ({}), team {}, allow-dyld-env {}, disable-library-validation {}",
                            m.arch,
                            if sig.flags_text.is_empty() { "none".into() } else { sig.flags_text.clone() },
                            format_args!("0x{:x}", sig.flags),
                            sig.team_id.as_deref().unwrap_or("none (ad-hoc)"),
                            sig.allows_dyld_environment,
                            sig.disables_library_validation
                        ),
                        None => format!("Mach-O {}, unsigned", m.arch),
                    },
                    BinaryFormat::Elf { has_interpreter } => format!(
                        "ELF, {}",
                        if *has_interpreter { "dynamically linked" } else { "statically linked" }
                    ),
                    BinaryFormat::Script => "a script".into(),
                    BinaryFormat::Unreadable { why } => format!("unreadable headers ({why})"),
                    BinaryFormat::Other => "unknown format".into(),
                };
                format!("{}: {format}", f.path.display())
            }
            Err(e) => format!("{}: cannot read ({e})", binary.display()),
        })
        .collect();
    (
        Some(plan.program.clone()),
        format!(
            "{} (from {origin}); {}",
            plan.program.display(),
            facts.join("; ")
        ),
    )
}

fn judge(
    outcome: &ProgramOutcome,
    driver: &Driver,
    args: &Args,
    launcher: &Path,
    notes: Vec<String>,
    kept: Option<&Path>,
) -> SelftestReport {
    let simulated = matches!(driver, Driver::Simulated { .. });
    let (interpreter, interpreter_facts) = describe_interpreter(launcher, args.python.as_deref());
    let mut notes = notes;
    let mut checks: Vec<Check> = Vec::new();

    let launcher_said = launcher_lines(&outcome.stderr).join(" / ");
    let launcher_check = match outcome.exit {
        Some(125) => Check::fail(
            "launcher accepted the interpreter",
            format!("the guard library was not found: {launcher_said}"),
        ),
        Some(126) => Check::fail(
            "launcher accepted the interpreter",
            format!("refused: {launcher_said}"),
        ),
        Some(127) => Check::fail(
            "launcher accepted the interpreter",
            format!("no interpreter: {launcher_said}; pass --python PATH"),
        ),
        Some(10) => Check::fail(
            "launcher accepted the interpreter",
            format!("blocked by the cooldown gate: {launcher_said}; rerun with --force"),
        ),
        _ => Check::pass("launcher accepted the interpreter", interpreter_facts),
    };
    let launched = launcher_check.status == metal_guard::selftest::CheckStatus::Pass;
    checks.push(launcher_check);

    let program = if launched {
        match parse_program_report(&outcome.stdout) {
            Ok(p) => Some(p),
            Err(why) => {
                let how = if outcome.timed_out {
                    format!("killed after {} s", PROGRAM_TIMEOUT.as_secs())
                } else {
                    match (outcome.exit, outcome.signal) {
                        (Some(code), _) => format!("exit {code}"),
                        (None, Some(sig)) => format!("killed by signal {sig}"),
                        _ => "ended".into(),
                    }
                };
                checks.push(Check::fail(
                    "tiny program ran",
                    format!(
                        "{why} ({how}); last error line: {}",
                        tail_lines(&outcome.stderr, 1).first().unwrap_or(&"(none)")
                    ),
                ));
                None
            }
        }
    } else {
        None
    };

    if let Some(program) = &program {
        if program.pid != outcome.pid {
            notes.push(format!(
                "the program reports pid {} but the launcher was pid {}: the interpreter was started anew (a framework build's Python.app stub?); its own pid is checked",
                program.pid, outcome.pid
            ));
        }
        let lines = breadcrumbs_for_pid(&outcome.breadcrumbs, program.pid);
        checks.push(check_library_loaded(program, env!("CARGO_PKG_VERSION")));
        checks.push(check_device_class(&lines, simulated));
        checks.extend(check_hooks(&lines, simulated));
        checks.push(check_tiny_program(program));
        checks.push(check_refusal(&lines, program));
        checks.push(check_summary(&lines));
    }

    SelftestReport {
        environment: environment(driver, interpreter, program.as_ref()),
        checks,
        notes,
        kept_folder: kept.map(|p| p.display().to_string()),
    }
}

fn environment(
    driver: &Driver,
    interpreter: Option<PathBuf>,
    program: Option<&ProgramReport>,
) -> Environment {
    let hardware = metal_guard_core::hardware::detect();
    let interpreter = program
        .and_then(|p| p.executable.clone())
        .or_else(|| interpreter.as_ref().map(|p| p.display().to_string()));
    let mlx_version = program.and_then(|p| p.mlx_version.clone()).or_else(|| {
        let python = interpreter.as_ref().map(PathBuf::from)?;
        metal_guard_core::registry::installed::installed_packages(Some(&python), &["mlx"])
            .versions
            .get("mlx")
            .cloned()
    });
    let os = match (&hardware.macos_version, &hardware.macos_build) {
        (Some(v), Some(b)) => format!("macOS {v} ({b})"),
        (Some(v), None) => format!("macOS {v}"),
        _ => linux_os_name().unwrap_or_else(|| std::env::consts::OS.to_string()),
    };
    Environment {
        metal_guard_version: env!("CARGO_PKG_VERSION").to_string(),
        os,
        kernel: kernel_name(),
        hardware,
        interpreter,
        python_version: program.and_then(|p| p.python_version.clone()),
        mlx_version,
        driver: match driver {
            Driver::Metal => "Metal".to_string(),
            Driver::Simulated { dir, .. } => {
                format!("simulated Metal driver in {}", dir.display())
            }
        },
    }
}

/// `PRETTY_NAME` from `/etc/os-release`.
fn linux_os_name() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix("PRETTY_NAME=")
            .map(|v| v.trim_matches('"').to_string())
    })
}

/// `uname -srm`.
fn kernel_name() -> Option<String> {
    // SAFETY: `utsname` is plain data (arrays of c_char), so all-zero is a
    // valid value, and `uname` only writes into the struct we pass.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return None;
    }
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Some(format!(
        "{} {} {}",
        field(&uts.sysname),
        field(&uts.release),
        field(&uts.machine)
    ))
}
