//! Hook mechanics, in real processes: `libmetal_guard_inject.so` preloaded
//! into a client of the probe driver (`tests/probe/`, GCC's libobjc, built
//! here with clang). Each test runs one scenario and checks what the client
//! saw and what the guard wrote to its breadcrumb log.
//!
//! Needs clang, libobjc-12-dev and libblocksruntime-dev (`.ci/run` installs them).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const GCC_OBJC: &str = "/usr/lib/gcc/x86_64-linux-gnu/12";

struct Probe {
    client: PathBuf,
    dir: PathBuf,
}

fn target_debug() -> PathBuf {
    // .../target/debug/deps/hook_mechanics-HASH
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// The freshly built interposer.
fn library() -> PathBuf {
    let debug = target_debug();
    for p in [
        debug.join("deps/libmetal_guard_inject.so"),
        debug.join("libmetal_guard_inject.so"),
    ] {
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "libmetal_guard_inject.so not built under {}",
        debug.display()
    );
}

fn clang(args: &[&str]) {
    let out = Command::new("clang")
        .args([
            "-fobjc-runtime=gcc",
            "-fblocks",
            "-g",
            "-O1",
            "-Wall",
            "-Werror",
        ])
        .args(["-Wno-unused-parameter", "-idirafter"])
        .arg(format!("{GCC_OBJC}/include"))
        .args(args)
        .output()
        .expect("clang runs (apt-get install clang libobjc-12-dev libblocksruntime-dev)");
    assert!(
        out.status.success(),
        "clang {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn probe() -> &'static Probe {
    static PROBE: OnceLock<Probe> = OnceLock::new();
    PROBE.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/probe");
        let dir = target_debug().join(format!("probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let lib = dir.join("libprobe_metal.so");
        let client = dir.join("probe_client");
        let s = |p: &Path| p.to_str().unwrap().to_string();
        clang(&[
            "-fPIC",
            "-shared",
            "-o",
            &s(&lib),
            &s(&src.join("probe_driver.m")),
            &format!("-L{GCC_OBJC}"),
            "-lobjc",
            "-lBlocksRuntime",
            "-lpthread",
        ]);
        clang(&[
            "-o",
            &s(&client),
            &s(&src.join("probe_client.m")),
            &format!("-L{}", s(&dir)),
            "-lprobe_metal",
            &format!("-Wl,-rpath,{}", s(&dir)),
            &format!("-L{GCC_OBJC}"),
            "-lobjc",
            "-lBlocksRuntime",
        ]);
        Probe { client, dir }
    })
}

struct Run {
    code: Option<i32>,
    values: HashMap<String, String>,
    stderr: String,
    breadcrumbs: Vec<metal_guard_core::breadcrumbs::BreadcrumbLine>,
}

impl Run {
    fn get(&self, key: &str) -> &str {
        self.values
            .get(key)
            .unwrap_or_else(|| panic!("client printed no {key}; stderr:\n{}", self.stderr))
    }

    fn lines(
        &self,
        tag: &str,
        payload: &str,
    ) -> Vec<&metal_guard_core::breadcrumbs::BreadcrumbLine> {
        self.breadcrumbs
            .iter()
            .filter(|l| l.tag == tag && l.payload == payload)
            .collect()
    }

    fn summary(&self, key: &str) -> u64 {
        let s = self
            .breadcrumbs
            .iter()
            .rfind(|l| l.tag == "GUARD_SUMMARY")
            .unwrap_or_else(|| panic!("no GUARD_SUMMARY in {:#?}", self.breadcrumbs));
        s.field(key).unwrap().parse().unwrap()
    }
}

fn run(scenario: &str, guarded: bool, env: &[(&str, &str)]) -> Run {
    run_with_home(scenario, guarded, env, &|_| {})
}

/// `run` with `setup` preparing the child's HOME first.
fn run_with_home(
    scenario: &str,
    guarded: bool,
    env: &[(&str, &str)],
    setup: &dyn Fn(&Path),
) -> Run {
    let probe = probe();
    let dir = tempfile::tempdir_in(&probe.dir).unwrap();
    setup(dir.path());
    let log = dir.path().join("breadcrumbs.log");
    let mut cmd = Command::new(&probe.client);
    cmd.arg(scenario)
        .env_remove("LD_PRELOAD")
        .env("HOME", dir.path())
        .env("METALGUARD_BREADCRUMB_PATH", &log)
        .env(
            "METALGUARD_PANIC_REPORT_DIRS",
            dir.path().join("no-reports"),
        );
    if guarded {
        cmd.env("LD_PRELOAD", library());
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let values = stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let breadcrumbs = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter_map(metal_guard_core::breadcrumbs::parse_line)
        .collect();
    Run {
        code: out.status.code(),
        values,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        breadcrumbs,
    }
}

#[test]
fn refusal_returns_nil_and_leaves_sibling_classes_alone() {
    let r = run("refuse", true, &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.get("big"), "nil");
    assert_eq!(r.get("big_bytes"), "nil");
    assert_eq!(r.get("small"), "ok");
    // ProbeDeviceB inherits the same base-class IMP we hooked on
    // ProbeDeviceA: the override was added to ProbeDeviceA only.
    assert_eq!(r.get("sibling_big"), "ok");
    let pre = r.lines("SUBPROC_PRE", "allocation_refusal");
    assert_eq!(pre.len(), 2);
    assert_eq!(pre[0].field("rule"), Some("single_allocation"));
    assert_eq!(pre[0].field("bytes"), Some("2147483648"));
    let post = r.lines("SUBPROC_POST", "allocation_refusal");
    assert_eq!(post.len(), 2);
    assert_eq!(post[0].field("action"), Some("returned_nil"));
    assert!(r
        .stderr
        .contains("refused a 2147483648 byte GPU allocation"));
    assert_eq!(
        r.get("live_buffers"),
        "0",
        "refused buffers were never made"
    );
}

#[test]
fn unguarded_baseline_allocates_everything() {
    let r = run("refuse", false, &[]);
    assert_eq!(r.get("big"), "ok");
    assert!(r.breadcrumbs.is_empty());
}

#[test]
fn each_class_is_hooked_once() {
    let r = run("once", true, &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let device_hooks: Vec<_> = r
        .breadcrumbs
        .iter()
        .filter(|l| l.tag == "GUARD_HOOKED" && l.payload == "device")
        .collect();
    assert_eq!(device_hooks.len(), 1, "{device_hooks:#?}");
    assert_eq!(device_hooks[0].field("class"), Some("ProbeDeviceA"));
    // Hooked once means one hook layer: each call reaches the driver once
    // and is counted once.
    assert_eq!(r.get("base_allocations"), "5");
    assert_eq!(r.summary("allocations"), 5);
    assert_eq!(r.lines("GUARD_ACTIVE", "defensive").len(), 1);
}

#[test]
fn nested_forwarding_acts_once() {
    let r = run("nested", true, &[("PROBE_WRAPPED", "1")]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let classes: Vec<_> = r
        .lines("GUARD_HOOKED", "device")
        .iter()
        .filter_map(|l| l.field("class"))
        .collect();
    assert!(classes.contains(&"ProbeWrapperDevice") && classes.contains(&"ProbeDeviceA"));
    // The wrapper forwards to the hooked inner device: both hooks run,
    // only the outer one counts.
    assert_eq!(r.get("base_allocations"), "10");
    assert_eq!(r.summary("allocations"), 10);
}

#[test]
fn unretained_command_buffers_become_retained() {
    let r = run("commit", true, &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.values.get("retained").map(String::as_str), Some("1"));
    assert_eq!(r.summary("commits"), 3);
    assert_eq!(r.summary("completions"), 3);
    assert_eq!(r.summary("in_flight"), 0);

    let off = run("commit", true, &[("METALGUARD_RETAIN_REFERENCES", "off")]);
    assert_eq!(off.get("retained"), "0");
    assert_eq!(off.summary("completions"), 3);
}

#[test]
fn observer_mode_logs_and_changes_nothing() {
    let r = run("refuse", true, &[("METALGUARD_MODE", "observer")]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.get("big"), "ok");
    assert_eq!(r.get("big_bytes"), "ok");
    // The observed 2 GiB buffer really exists, so later requests also go
    // over the live budget: each is logged, none refused.
    let post = r.lines("SUBPROC_POST", "allocation_refusal");
    assert!(post.len() >= 2);
    assert!(post
        .iter()
        .all(|l| l.field("action") == Some("observed_only")));
    // big, small and big_bytes on the hooked device (the sibling is not hooked).
    assert_eq!(
        r.summary("allocations"),
        3,
        "every request reached the driver"
    );
    assert!(r.stderr.contains("would refuse"));

    let c = run("commit", true, &[("METALGUARD_MODE", "observer")]);
    assert_eq!(c.get("retained"), "0");
    assert_eq!(
        c.lines("GUARD_RETAIN", "would_retain_unretained_command_buffers")
            .len(),
        1
    );

    let res = run("residency", true, &[("METALGUARD_MODE", "observer")]);
    assert_eq!(res.get("count_after_remove"), "0", "not deferred");
    assert_eq!(res.summary("deferred_removals"), 0);
}

#[test]
fn a_panicking_hook_falls_back_and_the_host_survives() {
    for scenario in ["refuse", "commit", "residency"] {
        let r = run(scenario, true, &[("METALGUARD_TEST_FAULT", "hook_panic")]);
        assert_eq!(r.code, Some(0), "{scenario}: {}", r.stderr);
        assert_eq!(r.get("done"), "1");
        let faults: Vec<_> = r
            .breadcrumbs
            .iter()
            .filter(|l| l.tag == "GUARD_FAULT")
            .collect();
        assert!(!faults.is_empty(), "{scenario}: no GUARD_FAULT breadcrumb");
        assert_eq!(faults[0].field("action"), Some("fell_back_to_original"));
        assert!(r.summary("hook_faults") > 0);
        assert!(r.stderr.contains("internal error inside a hook"));
        assert_eq!(
            r.stderr.matches("internal error inside a hook").count(),
            1,
            "later faults are counted, not printed"
        );
    }
    let r = run("refuse", true, &[("METALGUARD_TEST_FAULT", "hook_panic")]);
    assert_eq!(r.get("big"), "ok", "the policy never ran: the original did");
}

#[test]
fn residency_removals_wait_for_in_flight_work() {
    let r = run("residency", true, &[("PROBE_GPU_MS", "100")]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.get("count_after_add"), "1");
    assert_eq!(r.get("count_after_remove"), "1", "deferred while in flight");
    assert_eq!(r.get("count_later"), "0", "performed after completion");
    let pre = r.lines("SUBPROC_PRE", "residency_removal_batch");
    let post = r.lines("SUBPROC_POST", "residency_removal_batch");
    assert!(!pre.is_empty());
    assert_eq!(post.last().unwrap().field("outcome"), Some("done"));
    assert_eq!(r.summary("deferred_removals"), 1);

    let keep = run("residency", true, &[("METALGUARD_RESIDENCY", "keep")]);
    assert_eq!(keep.get("count_after_remove"), "0");

    let off = run("residency", true, &[("METALGUARD_RESIDENCY", "off")]);
    assert_eq!(off.get("count_after_add"), "0", "addAllocation: is a no-op");
    assert_eq!(off.summary("residency_noops"), 2);
}

#[test]
fn exit_waits_for_in_flight_command_buffers() {
    let env = [("PROBE_GPU_MS", "300"), ("PROBE_REPORT_TEARDOWN", "1")];
    let bare = run("exit_in_flight", false, &env);
    assert!(
        bare.stderr.contains("in_flight_at_teardown=1"),
        "{}",
        bare.stderr
    );

    let r = run("exit_in_flight", true, &env);
    assert_eq!(r.code, Some(0));
    assert!(r.stderr.contains("in_flight_at_teardown=0"), "{}", r.stderr);
    let pre = r.lines("SUBPROC_PRE", "exit_drain");
    assert_eq!(pre.len(), 1);
    assert_eq!(pre[0].field("in_flight"), Some("1"));
    let post = r.lines("SUBPROC_POST", "exit_drain");
    assert_eq!(post[0].field("outcome"), Some("drained"));

    let off = run(
        "exit_in_flight",
        true,
        &[env[0], env[1], ("METALGUARD_EXIT_DRAIN_S", "0")],
    );
    assert!(
        off.stderr.contains("in_flight_at_teardown=1"),
        "{}",
        off.stderr
    );
}

#[test]
fn a_reload_right_after_an_unload_is_stalled() {
    let env = [
        ("METALGUARD_BURST_N", "3"),
        ("METALGUARD_BURST_QUIET_MS", "100"),
        ("METALGUARD_CADENCE_UNLOAD_INTERVAL_S", "0.4"),
        ("METALGUARD_CADENCE_INTERVAL_S", "0.3"),
    ];
    let r = run("reload", true, &env);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.get("reloaded"), "1");
    assert_eq!(r.summary("loads"), 2);
    assert!(r.summary("unloads") >= 1);
    assert_eq!(r.summary("cadence_stalls"), 1);
    let cadence = r.lines("GUARD_CADENCE", "too_soon");
    assert_eq!(cadence.len(), 1);
    assert_eq!(cadence[0].field("action"), Some("stalled"));
    assert_eq!(cadence[0].field("reason"), Some("after_unload"));
    assert!(!r.lines("SUBPROC_PRE", "model_load").is_empty());
    assert!(!r.lines("SUBPROC_PRE", "release_burst").is_empty());
    // The last unload is still open when the process exits: closed at exit,
    // so orphan-scan sees no section left in flight.
    for payload in ["model_load", "release_burst"] {
        assert_eq!(
            r.lines("SUBPROC_PRE", payload).len(),
            r.lines("SUBPROC_POST", payload).len(),
            "{payload}: {:#?}",
            r.breadcrumbs
        );
    }
    assert_eq!(
        r.lines("SUBPROC_POST", "release_burst")
            .last()
            .unwrap()
            .field("outcome"),
        Some("process_exit")
    );

    let warn = run(
        "reload",
        true,
        &[
            env[0],
            env[1],
            env[2],
            env[3],
            ("METALGUARD_CADENCE", "warn"),
        ],
    );
    assert_eq!(warn.summary("cadence_stalls"), 0);
    assert_eq!(
        warn.lines("GUARD_CADENCE", "too_soon")[0].field("action"),
        Some("warned")
    );
}

#[test]
fn disabled_library_is_inert() {
    let r = run("refuse", true, &[("METALGUARD_DISABLED", "1")]);
    assert_eq!(r.get("big"), "ok");
    assert!(r.breadcrumbs.is_empty());
}

#[test]
fn bad_settings_warn_and_fall_back() {
    let r = run("refuse", true, &[("METALGUARD_MODE", "paranoid")]);
    assert_eq!(r.code, Some(0));
    assert!(
        r.stderr.contains("METALGUARD_MODE=paranoid"),
        "{}",
        r.stderr
    );
    assert_eq!(r.get("big"), "nil", "default (defensive) applies");
}

#[test]
fn handshake_and_inertness_in_a_process_without_objc() {
    let dir = tempfile::tempdir().unwrap();
    let hs = dir.path().join("handshake.json");
    let out = Command::new("/bin/sh")
        .args(["-c", "echo $$"])
        .env("LD_PRELOAD", library())
        .env("METALGUARD_HANDSHAKE_PATH", &hs)
        .env("METALGUARD_BREADCRUMB_PATH", dir.path().join("bc.log"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let pid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let text = std::fs::read_to_string(&hs).unwrap();
    let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(v["pid"], pid);
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["library"], "metal_guard_inject");
    // Every process that inherits the variable appends its own line.
    let out = Command::new("/bin/sh")
        .args(["-c", "/bin/true; /bin/true"])
        .env("LD_PRELOAD", library())
        .env("METALGUARD_HANDSHAKE_PATH", &hs)
        .env("METALGUARD_BREADCRUMB_PATH", dir.path().join("bc.log"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let records = std::fs::read_to_string(&hs).unwrap();
    let pids: Vec<u64> = records
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["pid"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(pids.len(), 4, "two shells and two children: {pids:?}");
    assert!(
        !dir.path().join("bc.log").exists(),
        "no device, no breadcrumbs"
    );
}

/// A postmortem sentinel one hour into the future: the gate's cooldown.
fn cooldown_home(home: &Path) {
    use time::format_description::well_known::Rfc3339;
    let now = time::OffsetDateTime::now_utc();
    let state = home.join(".cache/metal-guard");
    std::fs::create_dir_all(&state).unwrap();
    let sentinel = serde_json::json!({
        "cooldown_until": (now + time::Duration::hours(1)).format(&Rfc3339).unwrap(),
        "created_at": now.format(&Rfc3339).unwrap(),
        "reason": "test cooldown",
    });
    std::fs::write(state.join("panic-sentinel.json"), sentinel.to_string()).unwrap();
}

#[test]
fn a_cooldown_stops_the_process_before_any_gpu_work() {
    let r = run_with_home("refuse", true, &[], &cooldown_home);
    assert_eq!(r.code, Some(10), "{}", r.stderr);
    assert!(!r.values.contains_key("big"), "no allocation ran");
    assert!(
        r.stderr
            .contains("exiting before any GPU work (exit code 10)"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("MLX_SAFE_PYTHON_FORCE=1"));
    assert_eq!(r.lines("GUARD_GATE", "blocked_exit_10").len(), 1);

    let forced = run_with_home(
        "refuse",
        true,
        &[("MLX_SAFE_PYTHON_FORCE", "1")],
        &cooldown_home,
    );
    assert_eq!(forced.code, Some(0), "{}", forced.stderr);
    assert_eq!(forced.lines("GUARD_GATE", "overridden").len(), 1);

    let disabled = run_with_home(
        "refuse",
        true,
        &[("METALGUARD_PANIC_GATE_DISABLED", "1")],
        &cooldown_home,
    );
    assert_eq!(disabled.code, Some(0), "{}", disabled.stderr);

    let observer = run_with_home(
        "refuse",
        true,
        &[("METALGUARD_MODE", "observer")],
        &cooldown_home,
    );
    assert_eq!(observer.code, Some(0), "{}", observer.stderr);
    assert_eq!(observer.lines("GUARD_GATE", "would_block").len(), 1);

    let off = run_with_home(
        "refuse",
        true,
        &[("METALGUARD_GATE", "off")],
        &cooldown_home,
    );
    assert_eq!(off.code, Some(0), "{}", off.stderr);
    assert!(off.lines("GUARD_GATE", "checked").is_empty());
}

#[test]
fn a_reload_of_the_same_model_in_another_process_waits() {
    let env = [
        ("METALGUARD_BURST_N", "3"),
        ("METALGUARD_BURST_QUIET_MS", "100"),
        ("METALGUARD_CADENCE_INTERVAL_S", "30"),
        ("METALGUARD_CADENCE_MAX_STALL_S", "0.2"),
        ("METALGUARD_MODEL_ID", "org/model-a"),
    ];
    // A load of the same model, recorded by another process just now.
    let recent = |home: &Path| {
        let state = home.join(".cache/metal-guard");
        std::fs::create_dir_all(&state).unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
        std::fs::write(
            state.join("cadence.json"),
            serde_json::json!({ "org/model-a": now }).to_string(),
        )
        .unwrap();
    };
    let r = run_with_home("reload", true, &env, &recent);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let first = &r.lines("GUARD_CADENCE", "too_soon")[0];
    assert_eq!(first.field("reason"), Some("after_same_model_load"));
    assert_eq!(first.field("action"), Some("stalled"));
    assert_eq!(
        first.field("wait_ms"),
        Some("200"),
        "bounded by the max stall"
    );
}

#[test]
fn a_cache_trim_and_the_next_prefill_are_not_a_reload() {
    let env = [
        ("METALGUARD_BURST_N", "3"),
        ("METALGUARD_BURST_QUIET_MS", "100"),
        ("METALGUARD_CADENCE_UNLOAD_INTERVAL_S", "5"),
        ("METALGUARD_CADENCE_INTERVAL_S", "5"),
    ];
    let r = run("trim", true, &env);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.get("served"), "1");
    assert_eq!(r.summary("loads"), 1, "only the weights were a load");
    assert_eq!(r.summary("unloads"), 0);
    assert!(r.summary("release_bursts") >= 1);
    assert_eq!(r.summary("cadence_stalls"), 0);
    assert!(r.lines("GUARD_CADENCE", "too_soon").is_empty());
    assert_eq!(
        r.lines("GUARD_CADENCE", "release_was_not_an_unload").len(),
        1
    );
}

#[test]
fn overdue_removals_run_while_the_gpu_never_idles() {
    // Each command buffer runs 40 ms and a new one is committed every 10 ms:
    // there is never a moment with nothing in flight.
    let env = [
        ("PROBE_GPU_MS", "40"),
        ("METALGUARD_RESIDENCY_MAX_DEFER_MS", "200"),
    ];
    let r = run("residency_busy", true, &env);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.get("removed_while_busy"), "1");
    let pre = r.lines("SUBPROC_PRE", "residency_removal_batch");
    assert!(
        pre.iter().any(|l| l.field("forced") == Some("true")),
        "{pre:#?}"
    );
    let done: Vec<_> = r
        .lines("SUBPROC_POST", "residency_removal_batch")
        .into_iter()
        .filter(|l| l.field("outcome") == Some("done"))
        .collect();
    assert_eq!(done.len(), 1);
    assert_eq!(
        done[0].field("in_flight"),
        Some("0"),
        "performed with nothing in flight"
    );
}

/// Runs `scenario` guarded, killing it after `limit` (a deadlocked child or
/// parent fails the test instead of hanging it).
fn run_bounded(scenario: &str, limit: std::time::Duration) -> Run {
    let probe = probe();
    let dir = tempfile::tempdir_in(&probe.dir).unwrap();
    let log = dir.path().join("breadcrumbs.log");
    let mut child = Command::new(&probe.client)
        .arg(scenario)
        .env("HOME", dir.path())
        .env("METALGUARD_BREADCRUMB_PATH", &log)
        .env(
            "METALGUARD_PANIC_REPORT_DIRS",
            dir.path().join("no-reports"),
        )
        .env("PROBE_GPU_MS", "2")
        .env("LD_PRELOAD", library())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read both pipes while waiting, so a chatty child never blocks on them.
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out_pipe, &mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err_pipe, &mut v);
        v
    });
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{scenario} hung for {limit:?}; stdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out_reader.join().unwrap()),
                String::from_utf8_lossy(&err_reader.join().unwrap())
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let out = std::process::Output {
        status,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let values = stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let breadcrumbs = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter_map(metal_guard_core::breadcrumbs::parse_line)
        .collect();
    Run {
        code: status.code(),
        values,
        stderr: format!(
            "{}\nstdout:\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        ),
        breadcrumbs,
    }
}

fn pids_with(r: &Run, tag: &str, payload: &str) -> std::collections::BTreeSet<String> {
    r.lines(tag, payload)
        .iter()
        .filter_map(|l| l.field("pid").map(str::to_string))
        .collect()
}

#[test]
fn a_forked_child_keeps_working_and_exits_cleanly() {
    let r = run_bounded("fork", std::time::Duration::from_secs(60));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.get("children_ok"), "6", "{}", r.stderr);
    // The child's lines reach the disk while it runs: it has a writer of its
    // own (the parent's stayed in the parent).
    assert_eq!(r.get("child_saw_own_pre"), "1", "{}", r.stderr);
    assert!(
        !r.stderr.contains("child_saw_own_pre=0"),
        "a child's durable line was late: {}",
        r.stderr
    );
    let parent = r.get("parent_pid").to_string();
    // The parent's command buffer in flight at each fork never completes in
    // the child: the child forgets it instead of waiting for it at exit.
    for pre in r.lines("SUBPROC_PRE", "exit_drain") {
        if pre.field("pid") != Some(parent.as_str()) {
            assert_eq!(
                pre.field("in_flight"),
                Some("0"),
                "a child waits at exit for the parent's work: {pre:?}"
            );
        }
    }
    for post in r.lines("SUBPROC_POST", "exit_drain") {
        assert_eq!(post.field("outcome"), Some("drained"), "{post:?}");
    }
    // Every child's own lines: a refusal it made after the fork (its writer
    // restarted) and the summary of its exit drain, with its pid.
    let refusals = pids_with(&r, "SUBPROC_PRE", "allocation_refusal");
    let summaries = pids_with(&r, "GUARD_SUMMARY", "defensive");
    assert!(refusals.contains(&parent) && summaries.contains(&parent));
    assert_eq!(refusals.len(), 7, "parent and 6 children: {refusals:?}");
    assert_eq!(summaries.len(), 7, "parent and 6 children: {summaries:?}");
    for pid in &summaries {
        let pre = r
            .breadcrumbs
            .iter()
            .filter(|l| l.tag == "SUBPROC_PRE" && l.field("pid") == Some(pid))
            .count();
        let post = r
            .breadcrumbs
            .iter()
            .filter(|l| l.tag == "SUBPROC_POST" && l.field("pid") == Some(pid))
            .count();
        assert_eq!(pre, post, "pid {pid} left a section open");
    }
}

#[test]
fn a_forked_child_that_execs_is_guarded_afresh() {
    let r = run_bounded("fork_exec", std::time::Duration::from_secs(60));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.get("children_ok"), "6", "{}", r.stderr);
    let active = pids_with(&r, "GUARD_ACTIVE", "defensive");
    assert_eq!(
        active.len(),
        7,
        "each exec'd child hooked afresh: {active:?}"
    );
    let summaries = pids_with(&r, "GUARD_SUMMARY", "defensive");
    assert_eq!(summaries.len(), 7, "{summaries:?}");
}
