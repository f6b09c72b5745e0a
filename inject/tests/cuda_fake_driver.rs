//! The CUDA backend end to end, on a machine without a GPU: the C stand-in
//! for `libcuda.so.1` in `tests/fake-cuda/` and a client that reaches it the
//! way MLX's statically linked CUDA runtime does, run as child processes
//! with and without `LD_PRELOAD` of the built library.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metal_guard_core::breadcrumbs::{parse_line, BreadcrumbLine};

struct Built {
    _dir: tempfile::TempDir,
    dir: PathBuf,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The cdylib cargo built for this test run: `target/<profile>/deps/`, beside
/// this test binary (cargo builds every crate type of the library there as
/// the test's dependency; the copy in `target/<profile>/` is refreshed only
/// by `cargo build`).
fn inject_library() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let lib = exe.parent().unwrap().join("libmetal_guard_inject.so");
    assert!(
        lib.exists(),
        "{} is missing: run `cargo build -p metal-guard-inject` first",
        lib.display()
    );
    lib
}

fn gcc(args: &[&str]) {
    let out = Command::new("gcc")
        .args(args)
        .output()
        .expect("gcc is needed to build the fake CUDA driver (apt-get install gcc)");
    assert!(
        out.status.success(),
        "gcc {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let src = repo_root().join("tests/fake-cuda");
        let s = |name: &str| src.join(name).to_string_lossy().into_owned();
        let o = |name: &str| dir.join(name).to_string_lossy().into_owned();
        gcc(&[
            "-O2",
            "-Wall",
            "-Werror",
            "-shared",
            "-fPIC",
            "-o",
            &o("libcuda.so.1"),
            &s("fake_cuda.c"),
            "-lpthread",
        ]);
        gcc(&[
            "-O2",
            "-Wall",
            "-Werror",
            "-o",
            &o("client"),
            &s("client.c"),
            "-ldl",
        ]);
        gcc(&[
            "-shared",
            "-fPIC",
            "-DPART_NEXT",
            "-o",
            &o("libnext.so"),
            &s("rtld_next.c"),
            "-ldl",
        ]);
        gcc(&[
            "-shared",
            "-fPIC",
            "-DPART_AFTER",
            "-o",
            &o("libafter.so"),
            &s("rtld_next.c"),
        ]);
        gcc(&[
            "-o",
            &o("rtld_next"),
            &s("rtld_next.c"),
            &format!("-L{}", dir.display()),
            "-Wl,--no-as-needed",
            "-lnext",
            "-lafter",
            "-ldl",
        ]);
        Built { _dir: tmp, dir }
    })
}

struct Run {
    output: Output,
    stdout: HashMap<String, Vec<String>>,
    crumbs: Vec<BreadcrumbLine>,
    elapsed: Duration,
}

impl Run {
    fn value(&self, key: &str) -> &str {
        self.stdout
            .get(key)
            .and_then(|v| v.last())
            .map(String::as_str)
            .unwrap_or_else(|| panic!("client printed no {key}=...; stdout:\n{}", self.text()))
    }
    fn values(&self, key: &str) -> Vec<String> {
        self.stdout.get(key).cloned().unwrap_or_default()
    }
    fn text(&self) -> String {
        format!(
            "{}\n--- stderr ---\n{}",
            String::from_utf8_lossy(&self.output.stdout),
            String::from_utf8_lossy(&self.output.stderr)
        )
    }
    fn crumb(&self, tag: &str) -> &BreadcrumbLine {
        self.crumbs
            .iter()
            .find(|c| c.tag == tag)
            .unwrap_or_else(|| panic!("no {tag} breadcrumb in {:#?}", self.crumbs))
    }
    /// The first line tagged `tag` whose payload is `payload`.
    fn section(&self, tag: &str, payload: &str) -> &BreadcrumbLine {
        self.crumbs
            .iter()
            .find(|c| c.tag == tag && c.payload == payload)
            .unwrap_or_else(|| panic!("no {tag}: {payload} breadcrumb in {:#?}", self.crumbs))
    }
    fn count(&self, tag: &str, payload: &str) -> usize {
        self.crumbs
            .iter()
            .filter(|c| c.tag == tag && c.payload == payload)
            .count()
    }
    /// A field of the guard's shared summary (`GUARD_SUMMARY`).
    fn summary(&self, field: &str) -> String {
        self.crumb("GUARD_SUMMARY")
            .field(field)
            .unwrap_or_else(|| panic!("GUARD_SUMMARY has no {field}"))
            .to_string()
    }
    /// A field of the CUDA-only summary (`CUDA_SUMMARY`).
    fn cuda(&self, field: &str) -> String {
        self.crumb("CUDA_SUMMARY")
            .field(field)
            .unwrap_or_else(|| panic!("CUDA_SUMMARY has no {field}"))
            .to_string()
    }
}

fn run(guarded: bool, args: &[&str], env: &[(&str, &str)]) -> Run {
    let b = built();
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("breadcrumbs.log");
    let mut cmd = Command::new(b.dir.join("client"));
    cmd.args(args)
        .env("LD_LIBRARY_PATH", &b.dir)
        .env("METALGUARD_BREADCRUMB_PATH", &log)
        .env("HOME", log_dir.path())
        .env_remove("METALGUARD_MODE")
        .env_remove("METALGUARD_MAX_SINGLE_ALLOC_GB")
        .env_remove("METALGUARD_MAX_SINGLE_ALLOC_PCT")
        .env_remove("METALGUARD_MAX_LIVE_GB")
        .env_remove("METALGUARD_DISABLED")
        .env_remove("METALGUARD_MODEL_ID")
        .env_remove("METALGUARD_CUDA");
    if guarded {
        cmd.env("LD_PRELOAD", inject_library());
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let output = cmd.output().unwrap();
    let elapsed = start.elapsed();
    let mut stdout: HashMap<String, Vec<String>> = HashMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        if let Some((k, v)) = line.split_once('=') {
            stdout.entry(k.to_string()).or_default().push(v.to_string());
        }
    }
    let crumbs = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter_map(parse_line)
        .collect();
    let r = Run {
        output,
        stdout,
        crumbs,
        elapsed,
    };
    assert!(r.output.status.success(), "client failed:\n{}", r.text());
    r
}

const RC_KEYS: [&str; 15] = [
    "alloc_rc",
    "alloc_async_rc",
    "alloc_pool_rc",
    "alloc_managed_rc",
    "alloc_host_rc",
    "host_alloc_rc",
    "graph_rc",
    "launch_rc",
    "sync_rc",
    "free_rc",
    "free_async_rc",
    "free_managed_rc",
    "free_host_rc",
    "free_host2_rc",
    "host_fns_ran_after_sync",
];

fn assert_basic_results(r: &Run) {
    for key in RC_KEYS {
        let want = if key == "host_fns_ran_after_sync" {
            "1"
        } else {
            "0"
        };
        assert_eq!(r.value(key), want, "{key}\n{}", r.text());
    }
    assert_eq!(
        r.value("double_free_rc"),
        "1",
        "the driver's own error comes back"
    );
    assert_eq!(r.value("driver_live_bytes"), (2u64 << 20).to_string());
}

#[test]
fn every_wrapped_entry_point_is_seen_and_forwarded() {
    let plain = run(false, &["basic"], &[]);
    let guarded = run(true, &["basic"], &[]);
    assert_basic_results(&plain);
    assert_basic_results(&guarded);
    // The driver saw exactly the same calls: the guard forwards, never doubles.
    for (k, v) in &plain.stdout {
        if k.starts_with("driver_calls.") && k != "driver_calls.cuDeviceTotalMem_v2" {
            assert_eq!(guarded.stdout.get(k), Some(v), "{k}");
        }
    }
    assert!(
        plain.crumbs.is_empty(),
        "no breadcrumbs without the library"
    );
    // Both links of the chain: the getter from dlsym and the one the driver hands back.
    assert_eq!(
        guarded.count("GUARD_HOOKED", "dlsym(cuGetProcAddress_v2) wrapped"),
        1
    );
    assert_eq!(
        guarded.count("GUARD_HOOKED", "the driver's own cuGetProcAddress wrapped"),
        1
    );
    let ceiling = guarded.crumb("GUARD_CEILING");
    assert_eq!(
        ceiling.field("working_set"),
        Some("8589934592"),
        "device memory"
    );
    assert_eq!(
        ceiling.field("max_single"),
        Some("4294967296"),
        "default: half of it"
    );
    assert_eq!(ceiling.field("budget"), Some("8589934592"));
    // 1 + 2 + 4 MiB device and 1 MiB managed in the shared ledger; 2 x 64 KiB pinned host apart.
    assert_eq!(guarded.summary("allocations"), "4");
    assert_eq!(guarded.summary("live_bytes"), (2u64 << 20).to_string());
    assert_eq!(guarded.summary("peak_bytes"), (8u64 << 20).to_string());
    assert_eq!(guarded.summary("largest"), (4u64 << 20).to_string());
    assert_eq!(guarded.summary("refusals"), "0");
    assert_eq!(guarded.summary("commits"), "1");
    assert_eq!(guarded.summary("completions"), "1");
    assert_eq!(guarded.cuda("host_allocations"), "2");
    assert_eq!(guarded.cuda("live_host_bytes"), "0");
    assert_eq!(guarded.cuda("untracked_frees"), "0");
    assert_eq!(guarded.cuda("graph_launches"), "1");
    assert_eq!(guarded.cuda("host_fns"), "1");
    assert_eq!(guarded.cuda("stream_syncs"), "1");
}

#[test]
fn per_thread_stream_variants_reach_their_own_originals() {
    let r = run(true, &["ptds"], &[]);
    assert_basic_results(&r);
    for f in [
        "cuMemAllocAsync_ptsz",
        "cuMemFreeAsync_ptsz",
        "cuLaunchHostFunc_ptsz",
        "cuGraphLaunch_ptsz",
        "cuStreamSynchronize_ptsz",
    ] {
        assert_eq!(r.value(&format!("driver_calls.{f}")), "1", "{f}");
    }
    for f in [
        "cuMemAllocAsync",
        "cuMemFreeAsync",
        "cuLaunchHostFunc",
        "cuGraphLaunch",
        "cuStreamSynchronize",
    ] {
        assert_eq!(r.value(&format!("driver_calls.{f}")), "0", "{f}");
    }
    assert_eq!(r.cuda("host_fns"), "1");
    assert_eq!(r.summary("live_bytes"), (2u64 << 20).to_string());
}

#[test]
fn functions_looked_up_by_dlsym_are_wrapped_too() {
    let r = run(true, &["direct"], &[]);
    assert_basic_results(&r);
    assert_eq!(
        r.count(
            "GUARD_HOOKED",
            "a driver memory/stream function looked up by dlsym wrapped"
        ),
        1
    );
    assert_eq!(r.summary("allocations"), "4");
    assert_eq!(r.summary("live_bytes"), (2u64 << 20).to_string());
}

#[test]
fn default_ceiling_comes_from_device_memory_and_refuses_with_out_of_memory() {
    // 8 GiB fake device: the default single-allocation ceiling is half of it.
    let request = "5000000000";
    let plain = run(false, &["oversize", request], &[]);
    assert_eq!(
        plain.value("oversize_rc"),
        "0",
        "the driver itself would allow it"
    );
    let r = run(true, &["oversize", request], &[]);
    assert_eq!(
        r.value("oversize_rc"),
        "2",
        "CUDA_ERROR_OUT_OF_MEMORY\n{}",
        r.text()
    );
    assert_eq!(r.value("after_rc"), "0", "the process goes on");
    assert_eq!(
        r.value("driver_calls.cuMemAllocAsync"),
        "1",
        "the refused request never reached the driver"
    );
    let pre = r.section("SUBPROC_PRE", "allocation_refusal");
    assert_eq!(pre.field("bytes"), Some(request));
    assert_eq!(pre.field("limit"), Some("4294967296"));
    assert_eq!(pre.field("rule"), Some("single_allocation"));
    assert_eq!(pre.field("selector"), Some("cuMemAllocAsync"));
    assert_eq!(
        r.section("SUBPROC_POST", "allocation_refusal")
            .field("action"),
        Some("returned_nil")
    );
    assert_eq!(r.summary("refusals"), "1");
    assert!(String::from_utf8_lossy(&r.output.stderr)
        .contains("refused a 5000000000 byte GPU allocation"));
}

#[test]
fn explicit_ceiling_live_budget_and_observer_mode() {
    let r = run(
        true,
        &["oversize", "2000000000"],
        &[("METALGUARD_MAX_SINGLE_ALLOC_GB", "1")],
    );
    assert_eq!(r.value("oversize_rc"), "2");
    assert_eq!(
        r.crumb("GUARD_CEILING").field("max_single"),
        Some("1073741824")
    );

    // Live budget of 6 MiB: 1 + 2 MiB fit, the 4 MiB pool allocation does not.
    let r = run(
        true,
        &["basic"],
        &[("METALGUARD_MAX_LIVE_GB", "0.005859375")],
    );
    assert_eq!(r.value("alloc_rc"), "0");
    assert_eq!(r.value("alloc_async_rc"), "0");
    assert_eq!(r.value("alloc_pool_rc"), "2", "{}", r.text());
    assert_eq!(
        r.section("SUBPROC_PRE", "allocation_refusal").field("rule"),
        Some("live_budget")
    );

    let env = [
        ("METALGUARD_MAX_SINGLE_ALLOC_GB", "1"),
        ("METALGUARD_MODE", "observer"),
    ];
    let r = run(true, &["oversize", "2000000000"], &env);
    assert_eq!(r.value("oversize_rc"), "0", "observer changes nothing");
    assert_eq!(
        r.section("SUBPROC_PRE", "allocation_refusal").field("mode"),
        Some("observer")
    );
    assert_eq!(
        r.section("SUBPROC_POST", "allocation_refusal")
            .field("action"),
        Some("observed_only")
    );
}

#[test]
fn load_unload_cadence_stalls_the_next_load() {
    let env = [
        // Wide margins: a loaded CI machine (fsync'd breadcrumbs, parallel
        // builds) must not split one load's burst in two.
        ("METALGUARD_BURST_QUIET_MS", "400"),
        ("METALGUARD_CADENCE_UNLOAD_INTERVAL_S", "2.0"),
        ("METALGUARD_CADENCE_INTERVAL_S", "0.3"),
    ];
    let r = run(true, &["cycles", "3", "1000"], &env);
    assert_eq!(r.values("cycle_done"), ["0", "1", "2"]);
    assert_eq!(r.count("SUBPROC_PRE", "model_load"), 3, "{:#?}", r.crumbs);
    assert!(r.count("SUBPROC_PRE", "release_burst") >= 1);
    let stall = r.section("GUARD_CADENCE", "too_soon");
    assert_eq!(stall.field("reason"), Some("after_unload"));
    assert_eq!(stall.field("action"), Some("stalled"));
    assert_eq!(r.summary("loads"), "3");
    assert_eq!(r.summary("cadence_stalls"), "2");
    // Two stalls of about 1 s each on top of 3 x 1 s of sleeping.
    assert!(r.elapsed >= Duration::from_millis(4500), "{:?}", r.elapsed);

    let mut warn = env.to_vec();
    warn.push(("METALGUARD_CADENCE", "warn"));
    let r = run(true, &["cycles", "3", "200"], &warn);
    assert_eq!(
        r.section("GUARD_CADENCE", "too_soon").field("action"),
        Some("warned")
    );
    assert_eq!(r.summary("cadence_stalls"), "0");
}

#[test]
fn exit_drain_waits_for_host_functions_in_flight() {
    let r = run(
        true,
        &["inflight", "3"],
        &[("FAKE_CUDA_HOSTFN_DELAY_MS", "150")],
    );
    assert_eq!(r.value("exiting_with_in_flight"), "3");
    assert_eq!(
        r.values("host_fn_ran"),
        ["1", "2", "3"],
        "every queued function ran before exit"
    );
    assert_eq!(
        r.section("SUBPROC_PRE", "exit_drain").field("in_flight"),
        Some("3")
    );
    let post = r.section("SUBPROC_POST", "exit_drain");
    assert_eq!(post.field("in_flight_left"), Some("0"));
    assert_eq!(post.field("outcome"), Some("drained"));
    assert_eq!(r.cuda("in_flight_at_exit"), "3");
    assert_eq!(r.summary("completions"), "3");

    // Unguarded, the process exits under its host functions.
    let plain = run(
        false,
        &["inflight", "3"],
        &[("FAKE_CUDA_HOSTFN_DELAY_MS", "150")],
    );
    assert!(plain.values("host_fn_ran").len() < 3);
}

#[test]
fn exit_drain_is_bounded() {
    let env = [
        ("FAKE_CUDA_HOSTFN_DELAY_MS", "5000"),
        ("METALGUARD_EXIT_DRAIN_S", "0.3"),
    ];
    let r = run(true, &["inflight", "2"], &env);
    let post = r.section("SUBPROC_POST", "exit_drain");
    assert_eq!(post.field("outcome"), Some("timed_out"), "{post:?}");
    assert_eq!(post.field("in_flight_left"), Some("2"));
    assert!(
        r.elapsed < Duration::from_secs(4),
        "exit took {:?}",
        r.elapsed
    );
}

#[test]
fn a_panicking_hook_fails_open() {
    let r = run(true, &["basic"], &[("METALGUARD_TEST_FAULT", "hook_panic")]);
    assert_basic_results(&r);
    assert_eq!(
        r.crumb("GUARD_FAULT").field("action"),
        Some("fell_back_to_original")
    );
    assert_eq!(r.summary("hook_faults"), "6", "one per allocation");
    assert_eq!(r.summary("allocations"), "4", "bookkeeping still ran");
}

#[test]
fn switched_off_hands_back_the_driver_untouched() {
    let r = run(true, &["basic"], &[("METALGUARD_CUDA", "off")]);
    assert_basic_results(&r);
    assert!(
        r.crumbs.iter().all(|c| c.tag != "GUARD_HOOKED"),
        "{:#?}",
        r.crumbs
    );
    let r = run(true, &["basic"], &[("METALGUARD_DISABLED", "1")]);
    assert_basic_results(&r);
    assert!(r.crumbs.is_empty(), "{:#?}", r.crumbs);
}
#[test]
fn the_hot_path_allocates_nothing() {
    // The client counts malloc/calloc/realloc/memalign on its main thread
    // while it churns (its own definitions win over libc's, for the
    // preloaded library too).
    let plain = run(false, &["churn", "20000"], &[]);
    let r = run(true, &["churn", "20000"], &[]);
    assert_eq!(plain.value("churn_heap_allocations"), "0");
    assert_eq!(r.value("churn_heap_allocations"), "0", "{}", r.text());
    assert_eq!(r.summary("allocations"), "21000");
    assert_eq!(r.summary("live_bytes"), "0");
    assert_eq!(r.cuda("untracked_allocations"), "0");
    assert_eq!(r.cuda("untracked_frees"), "0");
}

#[test]
fn dlsym_rtld_next_stays_relative_to_its_real_caller() {
    let b = built();
    for preload in [None, Some(inject_library())] {
        let mut cmd = Command::new(b.dir.join("rtld_next"));
        cmd.env("LD_LIBRARY_PATH", &b.dir);
        if let Some(p) = &preload {
            cmd.env("LD_PRELOAD", p);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "rtld_next_marker=2",
            "preload: {preload:?}"
        );
    }
}

/// A preloaded shim that counts `fsync`/`fdatasync` calls in the process
/// and prints `fsync_calls=N` at the very end (after the guard's drain).
fn fsync_counter() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = &built().dir;
            let src = dir.join("fsync_counter.c");
            std::fs::write(
                &src,
                r#"#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdatomic.h>
static atomic_long calls;
int fsync(int fd) {
    atomic_fetch_add(&calls, 1);
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}
int fdatasync(int fd) {
    atomic_fetch_add(&calls, 1);
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}
__attribute__((destructor)) static void report(void) {
    dprintf(1, "\nfsync_calls=%ld\n", (long)atomic_load(&calls));
}
"#,
            )
            .unwrap();
            let lib = dir.join("libfsync_counter.so");
            gcc(&[
                "-shared",
                "-fPIC",
                "-o",
                lib.to_str().unwrap(),
                src.to_str().unwrap(),
                "-ldl",
            ]);
            lib
        })
        .clone()
}

#[test]
fn a_normal_exit_closes_the_sections_still_open() {
    // One load and its unload, then exit at once: both bursts are still
    // open (they go quiet only after 10 s).
    let r = run(
        true,
        &["cycles", "1", "0"],
        &[("METALGUARD_BURST_QUIET_MS", "10000")],
    );
    for payload in ["model_load", "release_burst"] {
        assert_eq!(
            r.count("SUBPROC_PRE", payload),
            1,
            "{payload}: {:#?}",
            r.crumbs
        );
        assert_eq!(
            r.count("SUBPROC_POST", payload),
            1,
            "{payload} left open for orphan-scan: {:#?}",
            r.crumbs
        );
        assert_eq!(
            r.section("SUBPROC_POST", payload).field("outcome"),
            Some("process_exit")
        );
    }
}

#[test]
fn the_exit_drain_syncs_nothing_in_observer_mode() {
    let counter = fsync_counter();
    let preload = format!("{}:{}", counter.display(), inject_library().display());
    let env = |mode: &'static str| {
        [
            ("FAKE_CUDA_HOSTFN_DELAY_MS", "100"),
            ("METALGUARD_MODE", mode),
            ("LD_PRELOAD", preload.as_str()),
        ]
    };
    let defensive = run(true, &["inflight", "2"], &env("defensive"));
    assert_eq!(
        defensive
            .section("SUBPROC_POST", "exit_drain")
            .field("outcome"),
        Some("drained")
    );
    let synced: u64 = defensive.value("fsync_calls").parse().unwrap();
    assert!(
        synced >= 4,
        "PRE, POST and the summaries are synced: {synced}"
    );

    let observer = run(true, &["inflight", "2"], &env("observer"));
    assert_eq!(
        observer
            .section("SUBPROC_POST", "exit_drain")
            .field("outcome"),
        Some("observed_only")
    );
    let synced: u64 = observer.value("fsync_calls").parse().unwrap();
    // Only the new log's directory entry (made durable when the file is
    // created); no line is synced.
    assert!(synced <= 1, "observer mode synced {synced} times");
}
