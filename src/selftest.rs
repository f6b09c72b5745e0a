//! `metal-guard selftest`: the report model and the checks, kept apart from
//! the command (`cli/selftest.rs`) so they can be tested on crafted inputs.
//!
//! The self-test runs a tiny program through the launcher and then judges
//! three sources: what the program printed about itself (one JSON line,
//! [`ProgramReport`]), the handshake the guard library wrote as it loaded,
//! and the guard's breadcrumbs (`GUARD_ACTIVE`, `GUARD_HOOKED`,
//! `allocation_refusal`, `GUARD_SUMMARY`) for the program's pid.

use metal_guard_core::breadcrumbs::{parse_line, BreadcrumbLine, TAG_POST, TAG_PRE};
use serde::{Deserialize, Serialize};

/// The prefix of the one line the self-test program prints about itself.
pub const RESULT_PREFIX: &str = "METALGUARD_SELFTEST_RESULT ";

/// The single-allocation ceiling the self-test gives the guard, in GiB
/// (`METALGUARD_MAX_SINGLE_ALLOC_GB`).
pub const CEILING_GIB: u64 = 1;
/// The allocation the program asks for, above that ceiling.
pub const OVERSIZE_BYTES: u64 = 2 << 30;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CheckStatus {
    Pass,
    Fail,
    Skip,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Pass => "PASS",
            CheckStatus::Fail => "FAIL",
            CheckStatus::Skip => "SKIP",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub status: CheckStatus,
    pub detail: String,
}

impl Check {
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: CheckStatus::Pass,
            detail: detail.into(),
        }
    }
    pub fn fail(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: CheckStatus::Fail,
            detail: detail.into(),
        }
    }
    pub fn skip(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: CheckStatus::Skip,
            detail: detail.into(),
        }
    }
}

/// The hooks the guard installs on one kind of driver object (mirrors
/// `inject/src/hooks/*.rs`; `GUARD_HOOKED` carries the role as its payload
/// and the counts `selectors=` (installed) and `inherited=` (covered by a
/// hooked superclass)).
#[derive(Debug, Clone, Copy)]
pub struct HookRole {
    /// The `GUARD_HOOKED` payload.
    pub role: &'static str,
    /// The tiny program always creates this kind of object, so its class
    /// must have been hooked.
    pub always_created: bool,
    /// Selectors every driver implements.
    pub selectors: &'static [&'static str],
    /// Selectors only newer drivers implement, and why they may be absent.
    pub optional: &'static [&'static str],
    pub optional_note: &'static str,
}

/// Every role the guard hooks.
pub const HOOK_ROLES: [HookRole; 6] = [
    HookRole {
        role: "device",
        always_created: true,
        selectors: &[
            "newBufferWithLength:options:",
            "newBufferWithBytes:length:options:",
            "newBufferWithBytesNoCopy:length:options:deallocator:",
            "newHeapWithDescriptor:",
            "newCommandQueue",
            "newCommandQueueWithMaxCommandBufferCount:",
        ],
        optional: &["newResidencySetWithDescriptor:error:"],
        optional_note: "residency sets exist from macOS 15",
    },
    HookRole {
        role: "heap",
        always_created: false,
        selectors: &["newBufferWithLength:options:"],
        optional: &[],
        optional_note: "",
    },
    HookRole {
        role: "queue",
        always_created: true,
        selectors: &[
            "commandBuffer",
            "commandBufferWithUnretainedReferences",
            "commandBufferWithDescriptor:",
        ],
        optional: &[],
        optional_note: "",
    },
    HookRole {
        role: "command_buffer",
        always_created: true,
        selectors: &["commit", "waitUntilCompleted"],
        optional: &[],
        optional_note: "",
    },
    HookRole {
        role: "residency_set",
        always_created: false,
        selectors: &["addAllocation:", "removeAllocation:", "commit"],
        optional: &[],
        optional_note: "",
    },
    HookRole {
        role: "buffer",
        always_created: true,
        selectors: &["dealloc"],
        optional: &[],
        optional_note: "",
    },
];

/// The breadcrumb lines written by `pid` (lines without a pid are skipped:
/// they are not the guard's).
pub fn breadcrumbs_for_pid(text: &str, pid: u32) -> Vec<BreadcrumbLine> {
    let pid = pid.to_string();
    text.lines()
        .filter_map(parse_line)
        .filter(|l| l.field("pid") == Some(pid.as_str()))
        .collect()
}

fn lines_with<'a>(
    lines: &'a [BreadcrumbLine],
    tag: &'a str,
    payload: Option<&'a str>,
) -> impl Iterator<Item = &'a BreadcrumbLine> + 'a {
    lines
        .iter()
        .filter(move |l| l.tag == tag && payload.is_none_or(|p| l.payload == p))
}

/// Apple's GPU driver classes are `AGX…` (`AGXG15XFamilyDevice`); the
/// simulated driver's are `SimAGX…`.
fn looks_like_driver_class(class: &str, simulated: bool) -> bool {
    if simulated {
        class.starts_with("SimAGX")
    } else {
        class.starts_with("AGX")
    }
}

/// The guard found the device and its concrete driver class.
pub fn check_device_class(lines: &[BreadcrumbLine], simulated: bool) -> Check {
    const NAME: &str = "device class found";
    let active = lines_with(lines, "GUARD_ACTIVE", None).next();
    let hooked = lines_with(lines, "GUARD_HOOKED", Some("device")).next();
    let class = hooked
        .and_then(|l| l.field("class"))
        .or_else(|| active.and_then(|l| l.field("device_class")));
    match (active, class) {
        (None, None) => Check::fail(
            NAME,
            "no GUARD_ACTIVE or GUARD_HOOKED device breadcrumb from the program: the guard never saw a Metal device",
        ),
        (_, None) => Check::fail(NAME, "GUARD_ACTIVE names no device class"),
        (_, Some(class)) if looks_like_driver_class(class, simulated) => Check::pass(
            NAME,
            format!(
                "{class}{}",
                active
                    .map(|a| format!(" (guard mode {})", a.payload))
                    .unwrap_or_default()
            ),
        ),
        (_, Some(class)) => Check::pass(
            NAME,
            format!(
                "{class}: hooked, but not {} driver class (a validation layer or a capture tool in between?)",
                if simulated { "the simulated" } else { "an AGX (Apple GPU)" }
            ),
        ),
    }
}

/// One check per hook role: each class of that role that the guard hooked
/// got every selector. `simulated`: the simulated driver implements the
/// optional selectors too, and the Linux program makes every kind of object
/// (a heap and a residency set included), so nothing may be missing.
pub fn check_hooks(lines: &[BreadcrumbLine], simulated: bool) -> Vec<Check> {
    HOOK_ROLES
        .iter()
        .map(|role| check_hook_role(lines, role, simulated))
        .collect()
}

fn count(line: &BreadcrumbLine, key: &str) -> Option<usize> {
    line.field(key).and_then(|v| v.parse().ok())
}

fn check_hook_role(lines: &[BreadcrumbLine], role: &HookRole, simulated: bool) -> Check {
    let name = format!("hooks: {}", role.role);
    let hooked: Vec<&BreadcrumbLine> = lines_with(lines, "GUARD_HOOKED", Some(role.role)).collect();
    let expected_list = role
        .selectors
        .iter()
        .chain(role.optional.iter())
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if hooked.is_empty() {
        return if role.always_created || simulated {
            Check::fail(
                name,
                format!(
                    "no {} class was hooked (expected {expected_list})",
                    role.role
                ),
            )
        } else {
            Check::skip(
                name,
                format!(
                    "the program made no {} the guard saw (MLX makes one only in some setups)",
                    role.role.replace('_', " ")
                ),
            )
        };
    }
    let minimum = role.selectors.len() + if simulated { role.optional.len() } else { 0 };
    let maximum = role.selectors.len() + role.optional.len();
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for line in hooked {
        let class = line.field("class").unwrap_or("?");
        let installed = count(line, "selectors").unwrap_or(0);
        let inherited = count(line, "inherited").unwrap_or(0);
        let total = installed + inherited;
        if total >= minimum {
            let note = if total < maximum {
                format!(
                    " (without {}: {})",
                    role.optional.join(", "),
                    role.optional_note
                )
            } else {
                String::new()
            };
            good.push(format!("{class} {total}/{maximum}{note}"));
        } else {
            bad.push(format!(
                "{class}: {total} of {minimum} hooks installed; expected {expected_list}"
            ));
        }
    }
    if bad.is_empty() {
        Check::pass(name, good.join("; "))
    } else {
        Check::fail(name, format!("missing hook on {}", bad.join("; ")))
    }
}

/// What the program saw when it asked for the oversize allocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OversizeOutcome {
    pub requested_bytes: u64,
    /// `runtime_error`, `allocated`, `other_error` or `not_run`.
    pub outcome: String,
    #[serde(default)]
    pub error_type: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// The JSON line the self-test program prints about itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProgramReport {
    pub pid: u32,
    #[serde(default)]
    pub executable: Option<String>,
    #[serde(default)]
    pub python_version: Option<String>,
    /// `METALGUARD_HANDSHAKE_PATH` as the program saw it.
    #[serde(default)]
    pub handshake_path: Option<String>,
    /// That file's text, read by the program while it ran.
    #[serde(default)]
    pub handshake_text: Option<String>,
    /// `metal_guard_inject_version()` through `ctypes.CDLL(None)`.
    #[serde(default)]
    pub library_version: Option<String>,
    #[serde(default)]
    pub mlx_version: Option<String>,
    /// The tiny program's steps that finished, in order.
    #[serde(default)]
    pub steps: Vec<String>,
    /// Set when the tiny program failed: `Type: message`.
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub oversize: Option<OversizeOutcome>,
}

/// The steps of the tiny program, in order.
pub const TINY_STEPS: [&str; 4] = ["allocate", "compute", "free", "clear_cache"];

/// The program's JSON line from its standard output (the last one wins).
pub fn parse_program_report(stdout: &str) -> Result<ProgramReport, String> {
    let line = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(RESULT_PREFIX))
        .ok_or_else(|| "the program printed no result line".to_string())?;
    serde_json::from_str(line).map_err(|e| format!("the program's result line is malformed: {e}"))
}

/// The library loaded into the program: its handshake names the program's pid.
pub fn check_library_loaded(program: &ProgramReport, expected_version: &str) -> Check {
    const NAME: &str = "library loaded";
    let Some(text) = program.handshake_text.as_deref() else {
        return Check::fail(
            NAME,
            match &program.handshake_path {
                None => "METALGUARD_HANDSHAKE_PATH was not set in the program (the launcher did not inject)".to_string(),
                Some(path) => format!("the handshake file {path} was never written: the library did not load"),
            },
        );
    };
    let records = metal_guard_shim::handshake::parse_handshake(text);
    let Some(record) = records.iter().find(|r| r.pid == program.pid) else {
        return Check::fail(
            NAME,
            format!(
                "the handshake names pid(s) {:?} but the program is pid {}",
                records.iter().map(|r| r.pid).collect::<Vec<_>>(),
                program.pid
            ),
        );
    };
    let version = record
        .version
        .clone()
        .or_else(|| program.library_version.clone());
    let symbol = match &program.library_version {
        Some(v) => format!("; metal_guard_inject_version() = {v}"),
        None => "; metal_guard_inject_version not visible through ctypes".to_string(),
    };
    match version.as_deref() {
        Some(v) if v != expected_version => Check::fail(
            NAME,
            format!(
                "pid {}: library version {v}, but this metal-guard is {expected_version}: the launcher found an old library (check METALGUARD_DYLIB and the install)",
                program.pid
            ),
        ),
        Some(v) => Check::pass(NAME, format!("pid {}, version {v}{symbol}", program.pid)),
        None => Check::pass(NAME, format!("pid {} (no version given){symbol}", program.pid)),
    }
}

/// The tiny program ran every step.
pub fn check_tiny_program(program: &ProgramReport) -> Check {
    const NAME: &str = "tiny program ran";
    let done = TINY_STEPS
        .iter()
        .all(|step| program.steps.iter().any(|s| s == step));
    match (&program.error, done) {
        (None, true) => Check::pass(NAME, program.steps.join(", ")),
        (Some(error), _) => Check::fail(
            NAME,
            format!("stopped after [{}]: {error}", program.steps.join(", ")),
        ),
        (None, false) => Check::fail(
            NAME,
            format!("only [{}] finished", program.steps.join(", ")),
        ),
    }
}

/// The oversize allocation was refused by the guard and came back to Python
/// as `RuntimeError`.
pub fn check_refusal(lines: &[BreadcrumbLine], program: &ProgramReport) -> Check {
    const NAME: &str = "oversize allocation refused";
    let Some(over) = &program.oversize else {
        return Check::fail(NAME, "the program did not get to the oversize allocation");
    };
    let requested = over.requested_bytes.to_string();
    // MLX may round a size up (to a page); never down.
    let pre = lines_with(lines, TAG_PRE, Some("allocation_refusal")).find(|l| {
        l.field("bytes")
            .and_then(|b| b.parse::<u64>().ok())
            .is_some_and(|b| b >= over.requested_bytes)
    });
    let post = lines_with(lines, TAG_POST, Some("allocation_refusal")).next();
    let guard_part = match (pre, post.and_then(|p| p.field("action"))) {
        (Some(pre), Some("returned_nil")) => Ok(format!(
            "guard refused {} bytes ({} limit {})",
            pre.field("bytes").unwrap_or("?"),
            pre.field("rule").unwrap_or("?"),
            pre.field("limit").unwrap_or("?")
        )),
        (Some(_), Some(action)) => Err(format!(
            "the guard only logged the refusal (action={action}; observer mode?)"
        )),
        (Some(_), None) => Err("the guard began a refusal but never finished it".to_string()),
        (None, _) => Err(format!(
            "no allocation_refusal breadcrumb for {requested} bytes or more: the ceiling did not act"
        )),
    };
    let python_part = match over.outcome.as_str() {
        "runtime_error" => Ok(format!(
            "Python got RuntimeError: {}",
            over.message.as_deref().unwrap_or("")
        )),
        "allocated" => Err("the allocation succeeded".to_string()),
        "other_error" => Err(format!(
            "Python got {} instead of RuntimeError: {}",
            over.error_type.as_deref().unwrap_or("an exception"),
            over.message.as_deref().unwrap_or("")
        )),
        other => Err(format!("the program reports `{other}`")),
    };
    match (guard_part, python_part) {
        (Ok(g), Ok(p)) => Check::pass(NAME, format!("{g}; {p}")),
        (g, p) => Check::fail(
            NAME,
            [g, p]
                .into_iter()
                .filter_map(Result::err)
                .collect::<Vec<_>>()
                .join("; "),
        ),
    }
}

/// The guard wrote its exit summary.
pub fn check_summary(lines: &[BreadcrumbLine]) -> Check {
    const NAME: &str = "exit summary written";
    match lines_with(lines, "GUARD_SUMMARY", None).last() {
        Some(s) => Check::pass(
            NAME,
            format!(
                "allocations={} frees={} refusals={} hook_faults={}",
                s.field("allocations").unwrap_or("?"),
                s.field("frees").unwrap_or("?"),
                s.field("refusals").unwrap_or("?"),
                s.field("hook_faults").unwrap_or("?")
            ),
        ),
        None => Check::fail(
            NAME,
            "no GUARD_SUMMARY breadcrumb: the guard's exit handler did not run",
        ),
    }
}

/// Facts for the "paste this into an issue" block.
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    pub metal_guard_version: String,
    pub os: String,
    pub kernel: Option<String>,
    pub hardware: metal_guard_core::hardware::HardwareInfo,
    pub interpreter: Option<String>,
    pub python_version: Option<String>,
    pub mlx_version: Option<String>,
    /// `simulated driver at DIR` on Linux, `Metal` on macOS.
    pub driver: String,
}

/// The whole self-test.
#[derive(Debug, Clone, Serialize)]
pub struct SelftestReport {
    pub environment: Environment,
    pub checks: Vec<Check>,
    /// Things the reader should know that are not checks (a forced cooldown).
    pub notes: Vec<String>,
    /// Where the program's files are, when kept (`--keep`).
    pub kept_folder: Option<String>,
}

impl SelftestReport {
    /// 0 when nothing failed, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        if self.checks.iter().any(|c| c.status == CheckStatus::Fail) {
            1
        } else {
            0
        }
    }

    /// The human report: one line per check, then the block to paste.
    pub fn render(&self) -> String {
        let mut out = String::from("metal-guard selftest\n");
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for c in &self.checks {
            out.push_str(&format!(
                "  {} {:width$}  {}\n",
                c.status.as_str(),
                c.name,
                c.detail
            ));
        }
        for note in &self.notes {
            out.push_str(&format!("  note: {note}\n"));
        }
        let failed = self
            .checks
            .iter()
            .filter(|c| c.status == CheckStatus::Fail)
            .count();
        out.push_str(&if failed == 0 {
            "result: every check passed\n".to_string()
        } else {
            format!("result: {failed} check(s) FAILED\n")
        });
        if let Some(dir) = &self.kept_folder {
            out.push_str(&format!("files kept in {dir}\n"));
        }
        out.push_str("\n--- paste this into an issue ---\n");
        out.push_str(&self.issue_block());
        out.push_str("--- end ---\n");
        out
    }

    /// A Markdown block for a bug report.
    pub fn issue_block(&self) -> String {
        let e = &self.environment;
        let h = &e.hardware;
        let or = |v: &Option<String>| v.clone().unwrap_or_else(|| "unknown".into());
        let mut out = String::from("```\n");
        out.push_str(&format!("metal-guard {}\n", e.metal_guard_version));
        out.push_str(&format!("os: {} / kernel: {}\n", e.os, or(&e.kernel)));
        if h.platform == "macos" {
            out.push_str(&format!(
                "hardware: {} / {} / memory {} / GPU {} / IOGPUFamily {} / wired limit {} MB\n",
                or(&h.chip),
                or(&h.gpu_family),
                h.memory_bytes
                    .map_or("unknown".into(), |m| format!("{} GiB", m >> 30)),
                or(&h.gpu_generation),
                or(&h.iogpu_family_version),
                h.wired_limit_mb.map_or("unknown".into(), |m| m.to_string())
            ));
        } else {
            out.push_str(&format!("hardware: {} (not a Mac)\n", h.platform));
        }
        out.push_str(&format!("driver: {}\n", e.driver));
        out.push_str(&format!(
            "python: {} ({})\n",
            or(&e.interpreter),
            or(&e.python_version).replace('\n', " ")
        ));
        out.push_str(&format!(
            "mlx: {}\n",
            e.mlx_version
                .clone()
                .unwrap_or_else(|| if h.platform == "macos" {
                    "not found".into()
                } else {
                    "none (simulated driver)".into()
                })
        ));
        for c in &self.checks {
            out.push_str(&format!("{} {}: {}\n", c.status.as_str(), c.name, c.detail));
        }
        for note in &self.notes {
            out.push_str(&format!("note: {note}\n"));
        }
        out.push_str("```\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PID: u32 = 4242;

    fn crumb(tag: &str, payload: &str, fields: &str) -> String {
        format!("[2026-11-26T01:00:00.000Z] {tag}: {payload} | pid={PID} {fields}\n")
    }

    fn full_log() -> String {
        [
            crumb("GUARD_CEILING", "defensive", "working_set=4294967296 max_single=1073741824 budget=4294967296"),
            crumb("GUARD_ACTIVE", "defensive", "version=0.1.0 device_class=SimAGXG16XFamilyDevice"),
            crumb("GUARD_HOOKED", "device", "class=SimAGXG16XFamilyDevice selectors=7 inherited=0"),
            crumb("GUARD_HOOKED", "heap", "class=SimAGXG16XFamilyHeap selectors=1 inherited=0"),
            crumb("GUARD_HOOKED", "queue", "class=SimAGXG16XFamilyCommandQueue selectors=3 inherited=0"),
            crumb("GUARD_HOOKED", "residency_set", "class=SimIOGPUMetalResidencySet selectors=3 inherited=0"),
            crumb("GUARD_HOOKED", "buffer", "class=SimAGXG16XFamilyBuffer selectors=1 inherited=0"),
            crumb("GUARD_HOOKED", "command_buffer", "class=SimAGXG16XFamilyCommandBuffer selectors=2 inherited=0"),
            crumb("SUBPROC_PRE", "allocation_refusal", "bytes=2147483648 limit=1073741824 live=0 rule=single_allocation"),
            crumb("SUBPROC_POST", "allocation_refusal", "action=returned_nil"),
            crumb("GUARD_SUMMARY", "defensive", "allocations=3 frees=3 refusals=1 hook_faults=0"),
            // Another process's line must not count.
            "[2026-11-26T01:00:00.000Z] GUARD_HOOKED: device | pid=1 class=Other selectors=0 inherited=0\n".into(),
        ]
        .concat()
    }

    fn program() -> ProgramReport {
        ProgramReport {
            pid: PID,
            handshake_path: Some("/tmp/h/handshake".into()),
            handshake_text: Some(format!(
                "{{\"library\":\"x\",\"version\":\"0.1.0\",\"pid\":{PID},\"mode\":\"defensive\"}}\n"
            )),
            library_version: Some("0.1.0".into()),
            steps: TINY_STEPS.iter().map(|s| s.to_string()).collect(),
            oversize: Some(OversizeOutcome {
                requested_bytes: OVERSIZE_BYTES,
                outcome: "runtime_error".into(),
                error_type: Some("RuntimeError".into()),
                message: Some("[malloc] Unable to allocate 2147483648 bytes.".into()),
            }),
            ..ProgramReport::default()
        }
    }

    #[test]
    fn a_complete_log_passes_every_check() {
        let lines = breadcrumbs_for_pid(&full_log(), PID);
        assert_eq!(check_device_class(&lines, true).status, CheckStatus::Pass);
        for c in check_hooks(&lines, true) {
            assert_eq!(c.status, CheckStatus::Pass, "{c:?}");
        }
        assert_eq!(check_refusal(&lines, &program()).status, CheckStatus::Pass);
        assert_eq!(check_summary(&lines).status, CheckStatus::Pass);
        assert_eq!(
            check_library_loaded(&program(), "0.1.0").status,
            CheckStatus::Pass
        );
        assert_eq!(check_tiny_program(&program()).status, CheckStatus::Pass);
    }

    #[test]
    fn a_missing_hook_fails_naming_the_role_and_class() {
        let log = full_log().replace(
            "class=SimAGXG16XFamilyCommandQueue selectors=3",
            "class=SimAGXG16XFamilyCommandQueue selectors=2",
        );
        let lines = breadcrumbs_for_pid(&log, PID);
        let queue = check_hooks(&lines, true)
            .into_iter()
            .find(|c| c.name == "hooks: queue")
            .unwrap();
        assert_eq!(queue.status, CheckStatus::Fail);
        assert!(
            queue.detail.contains("SimAGXG16XFamilyCommandQueue"),
            "{}",
            queue.detail
        );
        assert!(queue.detail.contains("2 of 3"), "{}", queue.detail);
        assert!(queue
            .detail
            .contains("commandBufferWithUnretainedReferences"));
    }

    #[test]
    fn an_unhooked_role_fails_when_always_created_and_skips_otherwise() {
        let log: String = full_log()
            .lines()
            .filter(|l| !l.contains("GUARD_HOOKED: buffer") && !l.contains("GUARD_HOOKED: heap"))
            .map(|l| format!("{l}\n"))
            .collect();
        let lines = breadcrumbs_for_pid(&log, PID);
        let status = |simulated: bool, name: &str| {
            check_hooks(&lines, simulated)
                .into_iter()
                .find(|c| c.name == name)
                .unwrap()
        };
        let buffer = status(false, "hooks: buffer");
        assert_eq!(buffer.status, CheckStatus::Fail);
        assert!(buffer.detail.contains("no buffer class was hooked"));
        // MLX may make no heap on a Mac; the simulated program always does.
        assert_eq!(status(false, "hooks: heap").status, CheckStatus::Skip);
        assert_eq!(status(true, "hooks: heap").status, CheckStatus::Fail);
    }

    #[test]
    fn the_optional_residency_selector_is_forgiven_only_on_a_mac() {
        let log = full_log().replace(
            "class=SimAGXG16XFamilyDevice selectors=7",
            "class=SimAGXG16XFamilyDevice selectors=6",
        );
        let lines = breadcrumbs_for_pid(&log, PID);
        let device = |all| check_hooks(&lines, all).into_iter().next().unwrap();
        assert_eq!(device(true).status, CheckStatus::Fail);
        let mac = device(false);
        assert_eq!(mac.status, CheckStatus::Pass);
        assert!(mac.detail.contains("macOS 15"), "{}", mac.detail);
    }

    #[test]
    fn inherited_hooks_count() {
        let log = full_log().replace(
            "class=SimAGXG16XFamilyCommandBuffer selectors=2 inherited=0",
            "class=SimAGXG16XFamilyCommandBuffer selectors=0 inherited=2",
        );
        let lines = breadcrumbs_for_pid(&log, PID);
        assert!(check_hooks(&lines, true)
            .iter()
            .all(|c| c.status == CheckStatus::Pass));
    }

    #[test]
    fn a_refusal_without_the_guard_or_without_runtime_error_fails() {
        let no_guard: String = full_log()
            .lines()
            .filter(|l| !l.contains("allocation_refusal"))
            .map(|l| format!("{l}\n"))
            .collect();
        let c = check_refusal(&breadcrumbs_for_pid(&no_guard, PID), &program());
        assert_eq!(c.status, CheckStatus::Fail);
        assert!(c.detail.contains("ceiling did not act"), "{}", c.detail);

        let lines = breadcrumbs_for_pid(&full_log(), PID);
        let mut p = program();
        p.oversize.as_mut().unwrap().outcome = "other_error".into();
        p.oversize.as_mut().unwrap().error_type = Some("MemoryError".into());
        let c = check_refusal(&lines, &p);
        assert_eq!(c.status, CheckStatus::Fail);
        assert!(c.detail.contains("MemoryError"), "{}", c.detail);

        let observer = full_log().replace("action=returned_nil", "action=observed_only");
        let c = check_refusal(&breadcrumbs_for_pid(&observer, PID), &program());
        assert_eq!(c.status, CheckStatus::Fail);
        assert!(c.detail.contains("observer"), "{}", c.detail);
    }

    #[test]
    fn handshake_for_another_pid_or_version_fails() {
        let mut p = program();
        p.handshake_text = Some("{\"pid\":7,\"version\":\"0.1.0\"}\n".into());
        assert_eq!(check_library_loaded(&p, "0.1.0").status, CheckStatus::Fail);
        assert_eq!(
            check_library_loaded(&program(), "9.9.9").status,
            CheckStatus::Fail
        );
        let mut none = program();
        none.handshake_text = None;
        let c = check_library_loaded(&none, "0.1.0");
        assert_eq!(c.status, CheckStatus::Fail);
        assert!(c.detail.contains("never written"));
    }

    #[test]
    fn missing_summary_and_program_errors_fail() {
        let log: String = full_log()
            .lines()
            .filter(|l| !l.contains("GUARD_SUMMARY"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            check_summary(&breadcrumbs_for_pid(&log, PID)).status,
            CheckStatus::Fail
        );
        let mut p = program();
        p.steps.truncate(1);
        p.error = Some("ModuleNotFoundError: No module named 'mlx'".into());
        let c = check_tiny_program(&p);
        assert_eq!(c.status, CheckStatus::Fail);
        assert!(c.detail.contains("No module named"));
    }

    #[test]
    fn the_result_line_is_found_and_malformed_lines_are_reported() {
        let text = format!(
            "noise\n{RESULT_PREFIX}{}\n",
            serde_json::to_string(&program()).unwrap()
        );
        assert_eq!(parse_program_report(&text).unwrap(), program());
        assert!(parse_program_report("nothing").is_err());
        assert!(parse_program_report(&format!("{RESULT_PREFIX}{{"))
            .unwrap_err()
            .contains("malformed"));
    }

    #[test]
    fn exit_code_follows_failures() {
        let env = Environment {
            metal_guard_version: "0.1.0".into(),
            os: "linux".into(),
            kernel: None,
            hardware: metal_guard_core::hardware::HardwareInfo::default(),
            interpreter: None,
            python_version: None,
            mlx_version: None,
            driver: "simulated".into(),
        };
        let mut r = SelftestReport {
            environment: env,
            checks: vec![Check::pass("a", "ok"), Check::skip("b", "n/a")],
            notes: vec!["forced".into()],
            kept_folder: None,
        };
        assert_eq!(r.exit_code(), 0);
        assert!(r.render().contains("every check passed"));
        assert!(r.render().contains("note: forced"));
        r.checks.push(Check::fail("c", "broken"));
        assert_eq!(r.exit_code(), 1);
        let text = r.render();
        assert!(text.contains("FAIL c"), "{text}");
        assert!(text.contains("paste this into an issue"));
    }
}
