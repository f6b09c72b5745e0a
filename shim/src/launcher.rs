//! The launch sequence shared by `mlx-safe-python` and `metal-guard run`:
//! plan the exec, consult the gate, check that the injection will survive,
//! find the library, compose the environment, leave the handshake watcher,
//! and exec. `--check` walks the same steps, prints them, and runs a probe
//! instead of the program.

use crate::binary_inspection::inspect_binary;
use crate::exec_plan::{choose_python, find_command, plan_exec, ExecPlan, PlanError};
use crate::gate_exemption::gate_exempt_module;
use crate::handshake::{probe, spawn_watcher, HandshakeDir, ProbeOutcome, HANDSHAKE_PATH_VAR};
use crate::injection_rules::{injection_blockers, BinaryFormat};
use crate::launch_env::LaunchEnv;
use crate::library_locator::{library_file_name, locate_library};
use crate::preload_env::{compose_preload, preload_variable, without_library};
use crate::process_exec::{compose_environment, exec_replace};
use metal_guard_core::exit_status;
use metal_guard_core::gates::start_gate::{
    self, Handoff, StartOutcome, VerdictSource, EXIT_BLOCKED, FORCE_VAR, HANDOFF_VAR,
};
use std::ffi::{OsStr, OsString};
use std::path::Path;

/// The launcher itself failed (the library is missing, say); like `env`'s 125.
pub const EXIT_LAUNCHER_FAILED: u8 = exit_status::LAUNCHER_FAILED;
/// The program was found but cannot be run as asked (it would drop the guard).
pub const EXIT_CANNOT_RUN: u8 = exit_status::CANNOT_RUN;
/// Nothing to run was found.
pub const EXIT_NOT_FOUND: u8 = exit_status::NOT_FOUND;
/// `--check` found that the guard would not be there.
pub const EXIT_CHECK_FAILED: u8 = exit_status::FINDING;

const PYTHON_REFUSAL_HINT: &str = "install Python with uv (`uv python install`), Homebrew or pyenv and run that, or set MLX_SAFE_PYTHON_BIN to it; `--no-inject` runs with the cooldown gate only";
const COMMAND_REFUSAL_HINT: &str = "run the program from a location outside the protected paths (or its Python script with an interpreter from uv, Homebrew or pyenv); `--no-inject` runs with the cooldown gate only";

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `mlx-safe-python ARGS...`: the chosen interpreter with these arguments.
    Python(Vec<OsString>),
    /// `metal-guard run CMD ARGS...`.
    Command {
        command: OsString,
        args: Vec<OsString>,
    },
}

/// How to run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchOptions {
    /// Prefix of every message (`mlx-safe-python`, `metal-guard run`).
    pub tool: String,
    /// Load the guard library (false: `--no-inject`, gate only).
    pub inject: bool,
    /// Print the plan and probe instead of running (`--check`).
    pub check: bool,
    /// Run through a cooldown (also `MLX_SAFE_PYTHON_FORCE=1`).
    pub force: bool,
}

/// `mlx-safe-python ARGS...`: leading `--check` / `--no-inject` are the
/// launcher's own (Python has no such options); everything else is Python's,
/// passed through byte for byte. Returns the exit status when it does not exec.
pub fn mlx_safe_python_main(args: Vec<OsString>, gate: &dyn VerdictSource) -> u8 {
    let mut options = LaunchOptions {
        tool: "mlx-safe-python".to_owned(),
        inject: true,
        check: false,
        force: false,
    };
    let mut rest = args.into_iter().peekable();
    while let Some(first) = rest.peek() {
        match first.to_str() {
            Some("--check") => options.check = true,
            Some("--no-inject") => options.inject = false,
            _ => break,
        }
        rest.next();
    }
    launch(
        Target::Python(rest.collect()),
        &options,
        gate,
        &LaunchEnv::from_process(),
    )
}

/// Run the launch sequence. Execs the program on success (never returns);
/// returns the exit status on every refusal, and after `--check`.
pub fn launch(
    target: Target,
    options: &LaunchOptions,
    gate: &dyn VerdictSource,
    env: &LaunchEnv,
) -> u8 {
    if options.check {
        return check(&target, options, gate, env);
    }
    let tool = options.tool.as_str();
    let plan = match make_plan(&target, env) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("{tool}: {}", e.message());
            return e.exit_code();
        }
    };
    let force = options.force || env.flag(FORCE_VAR);
    let mut sets = plan.env_sets.clone();
    if exemption(&target, &plan).is_none() {
        let decision = start_gate::decide(gate.verdict(), force, tool);
        for line in decision.lines() {
            eprintln!("{line}");
        }
        if !decision.runs() {
            return EXIT_BLOCKED;
        }
        // The program keeps this pid across the exec: its guard library
        // takes this decision instead of asking the gate again.
        if let Some(value) = Handoff::value_for(std::process::id(), &decision) {
            sets.push((HANDOFF_VAR.into(), value.into()));
        }
    }
    let mut watcher_dir = None;
    if options.inject {
        for binary in &plan.checked_binaries {
            match blockers_for(env, &plan, binary) {
                Ok(reasons) if !reasons.is_empty() => {
                    let hint = match target {
                        Target::Python(_) => PYTHON_REFUSAL_HINT,
                        Target::Command { .. } => COMMAND_REFUSAL_HINT,
                    };
                    eprintln!(
                        "{tool}: refusing {}: {}; {hint}",
                        binary.display(),
                        reasons.join("; and ")
                    );
                    return EXIT_CANNOT_RUN;
                }
                Ok(_) => {}
                Err(unknown) => eprintln!(
                    "{tool}: note: {unknown}; the handshake will tell whether the guard loaded"
                ),
            }
        }
        let library = match locate_library(env) {
            Ok(library) => library,
            Err(missing) => {
                eprintln!("{tool}: {missing}");
                return EXIT_LAUNCHER_FAILED;
            }
        };
        let var = preload_variable(env.platform);
        sets.push((
            var.into(),
            compose_preload(env.platform, env.var(var), &library.path),
        ));
        match HandshakeDir::create(env.var_path("TMPDIR").as_deref()) {
            Ok(dir) => {
                sets.push((HANDSHAKE_PATH_VAR.into(), dir.file().into()));
                watcher_dir = Some(dir);
            }
            Err(e) => eprintln!(
                "{tool}: note: no handshake file ({e}); the guard is injected but its loading is not confirmed"
            ),
        }
    } else {
        eprintln!(
            "{tool}: --no-inject: running with the cooldown gate only; the GPU guard is not loaded"
        );
        // A guarded parent may have passed the library down: take it out.
        let var = preload_variable(env.platform);
        if let Some(existing) = env.var(var) {
            let name = library_file_name(env.platform);
            sets.push((var.into(), without_library(env.platform, existing, name)));
        }
        sets.push((HANDSHAKE_PATH_VAR.into(), OsString::new()));
    }
    let final_env: Vec<(OsString, OsString)> = compose_environment(env.vars(), &sets)
        .into_iter()
        .filter(|(k, v)| {
            // Variables emptied above are removed rather than set to "".
            !(v.is_empty() && (k == HANDSHAKE_PATH_VAR || k == preload_variable(env.platform)))
        })
        .collect();
    if let Some(dir) = watcher_dir {
        let failure_marker = dir.file().with_file_name("launch-failed");
        if let Err(e) = spawn_watcher(dir, &plan.program, tool) {
            eprintln!("{tool}: note: could not start the handshake watcher ({e}); the guard is injected but its loading is not confirmed");
        }
        let error = exec_replace(&plan.program, &plan.argv, &final_env);
        let _ = std::fs::write(&failure_marker, b"exec failed\n");
        return exec_failure(tool, &plan.program, &error);
    }
    let error = exec_replace(&plan.program, &plan.argv, &final_env);
    exec_failure(tool, &plan.program, &error)
}

fn exec_failure(tool: &str, program: &Path, error: &std::io::Error) -> u8 {
    eprintln!("{tool}: cannot run {}: {error}", program.display());
    if error.raw_os_error() == Some(libc::ENOENT) {
        EXIT_NOT_FOUND
    } else {
        EXIT_CANNOT_RUN
    }
}

fn make_plan(target: &Target, env: &LaunchEnv) -> Result<ExecPlan, PlanError> {
    match target {
        Target::Python(args) => {
            let (start, origin) = choose_python(env)?;
            let mut plan = plan_exec(env, start.clone(), start.into_os_string(), args)?;
            plan.trail
                .insert(0, format!("interpreter chosen from {origin}"));
            Ok(plan)
        }
        Target::Command { command, args } => {
            let start = find_command(env, command)?;
            plan_exec(env, start, command.clone(), args)
        }
    }
}

/// Which gate exemption applies (`-m pip` and friends; pip/virtualenv console scripts).
fn exemption(target: &Target, plan: &ExecPlan) -> Option<&'static str> {
    match target {
        Target::Python(args) => gate_exempt_module(args),
        Target::Command { command, args } => {
            let name = Path::new(command).file_name().and_then(OsStr::to_str);
            if let Some(script) = name.and_then(exempt_console_script) {
                return Some(script);
            }
            if plan.runs_python() && plan.argv.len() == args.len() + 1 {
                return gate_exempt_module(args);
            }
            None
        }
    }
}

fn exempt_console_script(name: &str) -> Option<&'static str> {
    match name {
        "pip" => Some("pip"),
        "pip3" => Some("pip3"),
        "virtualenv" => Some("virtualenv"),
        _ => name
            .strip_prefix("pip3.")
            .filter(|minor| !minor.is_empty() && minor.chars().all(|c| c.is_ascii_digit()))
            .map(|_| "pip3"),
    }
}

/// The reasons `binary` would drop the library, or why its facts could not be read.
fn blockers_for(env: &LaunchEnv, plan: &ExecPlan, binary: &Path) -> Result<Vec<String>, String> {
    let facts =
        inspect_binary(binary).map_err(|e| format!("cannot read {} ({e})", binary.display()))?;
    if let BinaryFormat::Unreadable { why } = &facts.format {
        return Err(format!(
            "cannot read the headers of {} ({why})",
            binary.display()
        ));
    }
    Ok(injection_blockers(env.platform, &plan.program, &facts)
        .iter()
        .map(ToString::to_string)
        .collect())
}

/// `--check`: print every step, probe the guard, exec nothing.
fn check(
    target: &Target,
    options: &LaunchOptions,
    gate: &dyn VerdictSource,
    env: &LaunchEnv,
) -> u8 {
    let tool = options.tool.as_str();
    let mut problems: Vec<String> = Vec::new();
    let mut blocked_now = false;
    println!("{tool} --check");
    let plan = match make_plan(target, env) {
        Ok(plan) => plan,
        Err(e) => {
            println!("  program:   NOT FOUND: {}", e.message());
            println!("result: NOT protected (nothing to run)");
            return EXIT_CHECK_FAILED;
        }
    };
    println!("  program:   {}", plan.program.display());
    for step in &plan.trail {
        println!("             - {step}");
    }

    let force = options.force || env.flag(FORCE_VAR);
    let gate_line = match exemption(target, &plan) {
        Some(module) => format!("skipped ({module} does not use the GPU)"),
        None => {
            let decision = start_gate::decide(gate.verdict(), force, tool);
            for notice in &decision.notices {
                println!("  {notice}");
            }
            let clear = |h: Option<String>| h.map(|h| format!("; {h}")).unwrap_or_default();
            match decision.outcome {
                StartOutcome::Proceed => "proceed".to_owned(),
                StartOutcome::Overridden {
                    reason,
                    how_to_clear,
                } => format!(
                    "BLOCKED, overridden by {FORCE_VAR}=1: {reason}{}",
                    clear(how_to_clear)
                ),
                StartOutcome::Blocked {
                    reason,
                    how_to_clear,
                } => {
                    blocked_now = true;
                    format!(
                        "BLOCKED (a run would exit {EXIT_BLOCKED}): {reason}{}",
                        clear(how_to_clear)
                    )
                }
                StartOutcome::FailedOpen { error } => {
                    format!("could not decide ({error}); a run would go ahead")
                }
            }
        }
    };
    println!("  gate:      {gate_line}");

    if !options.inject {
        println!("  guard:     not injected (--no-inject)");
        return check_result(
            &problems,
            blocked_now,
            "runs with the cooldown gate only, without the guard",
        );
    }

    let var = preload_variable(env.platform);
    let mut refused = false;
    for binary in &plan.checked_binaries {
        match blockers_for(env, &plan, binary) {
            Ok(reasons) if reasons.is_empty() => {
                println!("  injection: {} keeps {var}", binary.display());
            }
            Ok(reasons) => {
                refused = true;
                println!(
                    "  injection: REFUSED {}: {}",
                    binary.display(),
                    reasons.join("; and ")
                );
                problems.push(format!("{} would drop the guard", binary.display()));
            }
            Err(unknown) => println!("  injection: unknown ({unknown})"),
        }
    }
    let library = match locate_library(env) {
        Ok(library) => {
            println!(
                "  library:   {} (found {})",
                library.path.display(),
                library.found_by
            );
            Some(library)
        }
        Err(missing) => {
            println!("  library:   MISSING: {missing}");
            problems.push("the guard library is missing".to_owned());
            None
        }
    };

    match (&library, refused, plan.runs_python()) {
        (Some(library), false, true) => {
            let mut sets = plan.env_sets.clone();
            sets.push((var.into(), compose_preload(env.platform, env.var(var), &library.path)));
            let probe_env = compose_environment(env.vars(), &sets);
            let probe_argv: Vec<OsString> = vec![plan.argv[0].clone(), "-c".into(), "pass".into()];
            match probe(&plan.program, &probe_argv, &probe_env, env.var_path("TMPDIR").as_deref()) {
                ProbeOutcome::Confirmed { pid, version } => println!(
                    "  probe:     the guard announced itself from pid {pid}{}",
                    version.map(|v| format!(" (version {v})")).unwrap_or_default()
                ),
                ProbeOutcome::NoHandshake { exit, stderr_tail } => {
                    println!(
                        "  probe:     NO HANDSHAKE: `{} -c pass` ran ({exit}) but the guard never announced itself{}",
                        plan.program.display(),
                        if stderr_tail.is_empty() { String::new() } else { format!("; last error line: {stderr_tail}") }
                    );
                    problems.push("the guard does not reach the interpreter".to_owned());
                }
                ProbeOutcome::Failed(why) => {
                    println!("  probe:     FAILED: {why}");
                    problems.push("the probe could not run".to_owned());
                }
            }
        }
        (_, _, false) => println!("  probe:     skipped (not a Python interpreter; a run confirms the guard through the handshake watcher)"),
        _ => println!("  probe:     skipped (see above)"),
    }

    check_result(
        &problems,
        blocked_now,
        &format!("protected: the guard loads into {}", plan.program.display()),
    )
}

/// The last line of `--check` and its exit status: 1 when the guard would not
/// be there, else 10 when the gate blocks a run right now, else 0.
fn check_result(problems: &[String], blocked_now: bool, good: &str) -> u8 {
    if !problems.is_empty() {
        println!("result: NOT protected: {}", problems.join("; "));
        EXIT_CHECK_FAILED
    } else if blocked_now {
        println!(
            "result: {good}; but a run now would be blocked by the cooldown (exit {EXIT_BLOCKED})"
        );
        EXIT_BLOCKED
    } else {
        println!("result: {good}");
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pip_console_scripts_are_exempt_by_name() {
        for (name, want) in [
            ("pip", Some("pip")),
            ("pip3", Some("pip3")),
            ("pip3.12", Some("pip3")),
            ("virtualenv", Some("virtualenv")),
            ("pip3.", None),
            ("pipx", None),
            ("mlx_lm.generate", None),
        ] {
            assert_eq!(exempt_console_script(name), want, "{name}");
        }
    }

    #[test]
    fn python_targets_use_the_module_rule() {
        let plan = ExecPlan {
            program: "/venv/bin/python3".into(),
            argv: vec!["/venv/bin/python3".into(), "-m".into(), "pip".into()],
            env_sets: vec![],
            checked_binaries: vec![],
            trail: vec![],
        };
        let args: Vec<OsString> = vec!["-m".into(), "pip".into()];
        assert_eq!(exemption(&Target::Python(args.clone()), &plan), Some("pip"));
        assert_eq!(
            exemption(
                &Target::Command {
                    command: "python3".into(),
                    args: args.clone()
                },
                &plan
            ),
            Some("pip")
        );
        let script_plan = ExecPlan {
            argv: vec![
                "/venv/bin/python3".into(),
                "/venv/bin/tool".into(),
                "-m".into(),
                "pip".into(),
            ],
            ..plan
        };
        assert_eq!(
            exemption(
                &Target::Command {
                    command: "tool".into(),
                    args
                },
                &script_plan
            ),
            None
        );
    }
}
