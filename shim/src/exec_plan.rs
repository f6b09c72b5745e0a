//! From "what the user asked to run" to the exact `execve` the launcher makes:
//! choose the Python interpreter, see through version-manager shims, follow
//! `#!` lines and pip trampolines to the real interpreter, and name the
//! binaries whose facts decide whether the injection survives.

use crate::launch_env::{find_on_path, is_executable_file, LaunchEnv, Platform};
use crate::script::{read_script_launch, ScriptLaunch};
use crate::version_manager;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// The variable that picks the interpreter for `mlx-safe-python`.
pub const PYTHON_BIN_VAR: &str = "MLX_SAFE_PYTHON_BIN";
/// Shims and `#!` chains longer than this are refused (a loop, most likely).
const MAX_INDIRECTIONS: usize = 8;

/// The exec the launcher will make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecPlan {
    /// The file handed to `execve`.
    pub program: PathBuf,
    /// The full argument vector, `argv[0]` included.
    pub argv: Vec<OsString>,
    /// Variables to set on top of the inherited environment.
    pub env_sets: Vec<(OsString, OsString)>,
    /// Files whose facts decide whether the injection survives (the program
    /// itself, plus `Python.app` for framework builds).
    pub checked_binaries: Vec<PathBuf>,
    /// How the plan was reached, one step a line (shown by `--check`).
    pub trail: Vec<String>,
}

impl ExecPlan {
    /// True when the program is a Python interpreter (by file name).
    pub fn runs_python(&self) -> bool {
        self.program
            .file_name()
            .and_then(OsStr::to_str)
            .is_some_and(|n| n.starts_with("python") || n == "Python")
    }
}

/// Why no plan could be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// Nothing to run (exit 127).
    NotFound(String),
    /// Found, but it cannot be run as asked (exit 126).
    CannotRun(String),
}

impl PlanError {
    /// The exit status the launcher uses for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            PlanError::NotFound(_) => 127,
            PlanError::CannotRun(_) => 126,
        }
    }

    /// The one-line message.
    pub fn message(&self) -> &str {
        match self {
            PlanError::NotFound(m) | PlanError::CannotRun(m) => m,
        }
    }
}

const INSTALL_HINT: &str =
    "install Python with uv (`uv python install`), Homebrew or pyenv, or set MLX_SAFE_PYTHON_BIN to an interpreter";

/// Pick the interpreter for `mlx-safe-python`: `MLX_SAFE_PYTHON_BIN`, else the
/// active virtual environment, else `python3` on `PATH`. Returns the path and where it came from.
pub fn choose_python(env: &LaunchEnv) -> Result<(PathBuf, String), PlanError> {
    if let Some(bin) = env.var(PYTHON_BIN_VAR) {
        let as_path = Path::new(bin);
        let found = if as_path.components().count() > 1 || bin.to_string_lossy().contains('/') {
            Some(env.absolute(as_path)).filter(|p| is_executable_file(p))
        } else {
            find_on_path(env, bin, &[])
        };
        return found
            .map(|p| (p, format!("{PYTHON_BIN_VAR}={}", bin.to_string_lossy())))
            .ok_or_else(|| {
                PlanError::NotFound(format!(
                    "{PYTHON_BIN_VAR}={} is not an executable file; point it at a Python interpreter or unset it",
                    bin.to_string_lossy()
                ))
            });
    }
    let mut notes = Vec::new();
    if let Some(venv) = env.var_path("VIRTUAL_ENV") {
        let venv = env.absolute(&venv);
        for name in ["python3", "python"] {
            let candidate = venv.join("bin").join(name);
            if is_executable_file(&candidate) {
                return Ok((
                    candidate,
                    format!(
                        "the active virtual environment (VIRTUAL_ENV={})",
                        venv.display()
                    ),
                ));
            }
        }
        notes.push(format!(
            "VIRTUAL_ENV={} has no bin/python3, ",
            venv.display()
        ));
    }
    match find_on_path(env, OsStr::new("python3"), &[]) {
        Some(found) => Ok((found, format!("{}python3 on PATH", notes.concat()))),
        None => Err(PlanError::NotFound(format!(
            "no python3 on PATH; {INSTALL_HINT}"
        ))),
    }
}

/// Find a command the way `execvp` would: a name with a slash is a path, others are looked up on `PATH`.
pub fn find_command(env: &LaunchEnv, command: &OsStr) -> Result<PathBuf, PlanError> {
    if command.to_string_lossy().contains('/') {
        let path = env.absolute(Path::new(command));
        if path.exists() {
            return Ok(path);
        }
        return Err(PlanError::NotFound(format!(
            "{} does not exist",
            path.display()
        )));
    }
    find_on_path(env, command, &[]).ok_or_else(|| {
        PlanError::NotFound(format!(
            "`{}` was not found on PATH",
            command.to_string_lossy()
        ))
    })
}

/// Follow `start` through shims, `#!` lines and trampolines to the program to exec.
///
/// `argv0` is what the program sees as `argv[0]` when no rewriting happens
/// (what the user typed); `args` are the user's arguments.
pub fn plan_exec(
    env: &LaunchEnv,
    start: PathBuf,
    argv0: OsString,
    args: &[OsString],
) -> Result<ExecPlan, PlanError> {
    let mut program = start;
    let mut inserted: Vec<OsString> = Vec::new();
    let mut env_sets: Vec<(OsString, OsString)> = Vec::new();
    let mut trail = vec![format!("start: {}", program.display())];
    let mut path_prepend: Option<PathBuf> = None;
    let mut rewritten = false;

    for _ in 0..MAX_INDIRECTIONS {
        if let Some(manager) = version_manager::detect(&program, env) {
            let resolved = version_manager::resolve(&manager, &program, env)
                .map_err(|e| PlanError::NotFound(format!("{e}; {INSTALL_HINT}")))?;
            trail.push(format!(
                "{} is a {} shim: {} -> {}",
                program.display(),
                manager.name(),
                resolved.explanation,
                resolved.target.display()
            ));
            if path_prepend.is_none() {
                path_prepend = resolved.path_prepend;
            }
            program = resolved.target;
            rewritten = true;
            continue;
        }
        let launch =
            read_script_launch(&program, env.platform).map_err(|e| PlanError::CannotRun(e.0))?;
        match launch {
            ScriptLaunch::NotAScript => {
                let plan = finish(
                    env,
                    program,
                    if rewritten { None } else { Some(argv0) },
                    inserted,
                    args,
                    env_sets,
                    path_prepend,
                    trail,
                );
                return Ok(plan);
            }
            ScriptLaunch::Direct {
                interpreter,
                args: shebang_args,
            } => {
                if is_shell(&interpreter) {
                    // A real shell script: the shell cannot be taken out of the chain.
                    if env.platform == Platform::MacOs {
                        if let Some(dir) = crate::injection_rules::macos_protected_dir(&interpreter)
                        {
                            return Err(PlanError::CannotRun(format!(
                                "{} is a shell script run by {}, which sits under {dir} (protected by SIP) and strips DYLD_INSERT_LIBRARIES; run the Python command it starts through the launcher instead",
                                program.display(),
                                interpreter.display()
                            )));
                        }
                    }
                    trail.push(format!(
                        "{} is a shell script ({}); LD_PRELOAD passes through the shell",
                        program.display(),
                        interpreter.display()
                    ));
                    let plan = finish(
                        env,
                        program,
                        if rewritten { None } else { Some(argv0) },
                        inserted,
                        args,
                        env_sets,
                        path_prepend,
                        trail,
                    );
                    return Ok(plan);
                }
                trail.push(format!(
                    "{} starts with #!{}: exec the interpreter directly",
                    program.display(),
                    interpreter.display()
                ));
                let mut front = shebang_args;
                front.push(program.clone().into_os_string());
                front.append(&mut inserted);
                inserted = front;
                program = interpreter;
            }
            ScriptLaunch::Env {
                program: name,
                args: env_args,
                assignments,
            } => {
                let found = find_on_path(env, &name, &[]).ok_or_else(|| {
                    PlanError::NotFound(format!(
                        "{} runs `{}` through /usr/bin/env, and `{}` is not on PATH",
                        program.display(),
                        name.to_string_lossy(),
                        name.to_string_lossy()
                    ))
                })?;
                trail.push(format!(
                    "{} starts with #!/usr/bin/env {}: {} found on PATH, exec it directly",
                    program.display(),
                    name.to_string_lossy(),
                    found.display()
                ));
                env_sets.extend(assignments);
                let mut front = env_args;
                front.push(program.clone().into_os_string());
                front.append(&mut inserted);
                inserted = front;
                program = found;
            }
            ScriptLaunch::ShTrampoline {
                interpreter,
                args: tramp_args,
            } => {
                trail.push(format!(
                    "{} is a /bin/sh trampoline for {}: exec the interpreter directly",
                    program.display(),
                    interpreter.display()
                ));
                let mut front = tramp_args;
                front.push(program.clone().into_os_string());
                front.append(&mut inserted);
                inserted = front;
                program = interpreter;
            }
        }
        rewritten = true;
    }
    Err(PlanError::CannotRun(format!(
        "{} goes through more than {MAX_INDIRECTIONS} shims or #! interpreters; run the real program directly",
        program.display()
    )))
}

#[allow(clippy::too_many_arguments)]
fn finish(
    env: &LaunchEnv,
    program: PathBuf,
    argv0: Option<OsString>,
    inserted: Vec<OsString>,
    args: &[OsString],
    mut env_sets: Vec<(OsString, OsString)>,
    path_prepend: Option<PathBuf>,
    mut trail: Vec<String>,
) -> ExecPlan {
    let mut argv = Vec::with_capacity(1 + inserted.len() + args.len());
    argv.push(argv0.unwrap_or_else(|| program.clone().into_os_string()));
    argv.extend(inserted);
    argv.extend(args.iter().cloned());
    if let Some(dir) = path_prepend {
        let mut path = dir.clone().into_os_string();
        if let Some(old) = env.var("PATH") {
            path.push(":");
            path.push(old);
        }
        trail.push(format!(
            "PATH starts with {} (as the version manager would)",
            dir.display()
        ));
        env_sets.push(("PATH".into(), path));
    }
    let real = std::fs::canonicalize(&program).unwrap_or_else(|_| program.clone());
    if real != program {
        trail.push(format!(
            "{} resolves to {}",
            program.display(),
            real.display()
        ));
    }
    let mut checked_binaries = vec![real.clone()];
    if let Some(app) = framework_app(&real) {
        trail.push(format!(
            "framework build: {} re-execs {} (the library loads in both)",
            real.display(),
            app.display()
        ));
        checked_binaries.push(app);
    }
    ExecPlan {
        program,
        argv,
        env_sets,
        checked_binaries,
        trail,
    }
}

/// For a framework build's `bin/python3.X` stub, the `Python.app` interpreter it re-execs.
pub fn framework_app(real: &Path) -> Option<PathBuf> {
    let bin = real.parent()?;
    if bin.file_name()? != "bin" {
        return None;
    }
    let version_dir = bin.parent()?;
    let versions = version_dir.parent()?;
    if versions.file_name()? != "Versions" || versions.parent()?.file_name()? != "Python.framework"
    {
        return None;
    }
    let app = version_dir.join("Resources/Python.app/Contents/MacOS/Python");
    app.is_file().then_some(app)
}

fn is_shell(interpreter: &Path) -> bool {
    matches!(
        interpreter.file_name().and_then(OsStr::to_str),
        Some("sh" | "bash" | "zsh" | "dash" | "ksh" | "fish" | "csh" | "tcsh")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write_exec(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn env(tmp: &Path, vars: Vec<(&str, String)>, platform: Platform) -> LaunchEnv {
        LaunchEnv::new(
            vars,
            tmp.to_path_buf(),
            tmp.join("mg/bin/mlx-safe-python"),
            platform,
        )
    }

    const ELF: &[u8] = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0";

    fn fake_binary(path: &Path) {
        write_exec(path, "");
        std::fs::write(path, ELF).unwrap();
    }

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn python_choice_order_is_variable_then_venv_then_path() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        fake_binary(&t.join("bin/python3"));
        fake_binary(&t.join("venv/bin/python"));
        fake_binary(&t.join("custom/py"));
        let path = t.join("bin").display().to_string();
        let e = env(t, vec![("PATH", path.clone())], Platform::Elf);
        assert_eq!(choose_python(&e).unwrap().0, t.join("bin/python3"));
        let e = env(
            t,
            vec![
                ("PATH", path.clone()),
                ("VIRTUAL_ENV", t.join("venv").display().to_string()),
            ],
            Platform::Elf,
        );
        assert_eq!(choose_python(&e).unwrap().0, t.join("venv/bin/python"));
        let e = env(
            t,
            vec![
                ("PATH", path.clone()),
                ("VIRTUAL_ENV", t.join("venv").display().to_string()),
                (PYTHON_BIN_VAR, "custom/py".into()),
            ],
            Platform::Elf,
        );
        assert_eq!(choose_python(&e).unwrap().0, t.join("custom/py"));
        let e = env(
            t,
            vec![("PATH", path), (PYTHON_BIN_VAR, "nope".into())],
            Platform::Elf,
        );
        let err = choose_python(&e).unwrap_err();
        assert_eq!(err.exit_code(), 127);
        assert!(err.message().contains(PYTHON_BIN_VAR));
        let e = env(
            t,
            vec![("PATH", t.join("empty").display().to_string())],
            Platform::Elf,
        );
        let err = choose_python(&e).unwrap_err();
        assert!(err.message().contains("uv"), "{}", err.message());
    }

    #[test]
    fn a_stale_virtualenv_falls_back_to_path() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        fake_binary(&t.join("bin/python3"));
        let e = env(
            t,
            vec![
                ("PATH", t.join("bin").display().to_string()),
                ("VIRTUAL_ENV", t.join("gone").display().to_string()),
            ],
            Platform::Elf,
        );
        let (path, origin) = choose_python(&e).unwrap();
        assert_eq!(path, t.join("bin/python3"));
        assert!(origin.contains("no bin/python3"));
    }

    #[test]
    fn a_binary_keeps_what_the_user_typed_as_argv0() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        fake_binary(&t.join("bin/tool"));
        let e = env(t, vec![], Platform::Elf);
        let plan = plan_exec(&e, t.join("bin/tool"), "tool".into(), &os(&["-x", "y"])).unwrap();
        assert_eq!(plan.program, t.join("bin/tool"));
        assert_eq!(plan.argv, os(&["tool", "-x", "y"]));
        assert!(plan.env_sets.is_empty());
    }

    #[test]
    fn env_shebang_and_trampoline_exec_the_interpreter_with_the_script() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        fake_binary(&t.join("py/bin/python3.12"));
        write_exec(
            &t.join("bin/gen"),
            "#!/usr/bin/env -S PYTHONUNBUFFERED=1 python3.12 -u\nprint()\n",
        );
        let e = env(
            t,
            vec![(
                "PATH",
                format!("{}:{}", t.join("bin").display(), t.join("py/bin").display()),
            )],
            Platform::MacOs,
        );
        let plan = plan_exec(&e, t.join("bin/gen"), "gen".into(), &os(&["--model", "m"])).unwrap();
        assert_eq!(plan.program, t.join("py/bin/python3.12"));
        assert_eq!(
            plan.argv,
            vec![
                t.join("py/bin/python3.12").into_os_string(),
                "-u".into(),
                t.join("bin/gen").into_os_string(),
                "--model".into(),
                "m".into()
            ]
        );
        assert_eq!(plan.env_sets, vec![("PYTHONUNBUFFERED".into(), "1".into())]);

        let spaced = t.join("Application Support/venv/bin/python");
        fake_binary(&spaced);
        write_exec(
            &t.join("bin/server"),
            &format!(
                "#!/bin/sh\n'''exec' \"{}\" \"$0\" \"$@\"\n' '''\nimport x\n",
                spaced.display()
            ),
        );
        let plan = plan_exec(&e, t.join("bin/server"), "server".into(), &os(&["a"])).unwrap();
        assert_eq!(plan.program, spaced);
        assert_eq!(
            plan.argv,
            vec![
                spaced.clone().into_os_string(),
                t.join("bin/server").into_os_string(),
                "a".into()
            ]
        );
    }

    #[test]
    fn shell_scripts_are_refused_on_macos_only() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        write_exec(&t.join("run.sh"), "#!/bin/sh\nexec python3 \"$@\"\n");
        let mac = env(t, vec![], Platform::MacOs);
        let err = plan_exec(&mac, t.join("run.sh"), "run.sh".into(), &[]).unwrap_err();
        assert_eq!(err.exit_code(), 126);
        assert!(err.message().contains("SIP"), "{}", err.message());
        let linux = env(t, vec![], Platform::Elf);
        let plan = plan_exec(&linux, t.join("run.sh"), "./run.sh".into(), &os(&["x"])).unwrap();
        assert_eq!(plan.program, t.join("run.sh"));
        assert_eq!(plan.argv, os(&["./run.sh", "x"]));
    }

    #[test]
    fn pyenv_shims_resolve_and_prepend_the_version_bin() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        let root = t.join("pyenv");
        fake_binary(&root.join("versions/3.12.1/bin/python3.12"));
        std::os::unix::fs::symlink("python3.12", root.join("versions/3.12.1/bin/python3")).unwrap();
        write_exec(
            &root.join("shims/python3"),
            &format!("#!/usr/bin/env bash\nexport PYENV_ROOT=\"{}\"\nexec \"{}/libexec/pyenv\" exec \"$program\" \"$@\"\n", root.display(), root.display()),
        );
        let e = env(
            t,
            vec![
                ("PYENV_VERSION", "3.12".into()),
                ("PATH", "/usr/bin".into()),
            ],
            Platform::MacOs,
        );
        let plan = plan_exec(
            &e,
            root.join("shims/python3"),
            "python3".into(),
            &os(&["x.py"]),
        )
        .unwrap();
        assert_eq!(plan.program, root.join("versions/3.12.1/bin/python3"));
        assert_eq!(
            plan.argv[0],
            root.join("versions/3.12.1/bin/python3").into_os_string()
        );
        assert_eq!(
            plan.env_sets,
            vec![(
                "PATH".into(),
                format!("{}:/usr/bin", root.join("versions/3.12.1/bin").display()).into()
            )]
        );
        assert_eq!(
            plan.checked_binaries,
            vec![std::fs::canonicalize(root.join("versions/3.12.1/bin/python3.12")).unwrap()]
        );
    }

    #[test]
    fn loops_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        write_exec(&t.join("a"), &format!("#!{}\n", t.join("b").display()));
        write_exec(&t.join("b"), &format!("#!{}\n", t.join("a").display()));
        let err =
            plan_exec(&env(t, vec![], Platform::Elf), t.join("a"), "a".into(), &[]).unwrap_err();
        assert_eq!(err.exit_code(), 126);
    }

    #[test]
    fn framework_stub_names_python_app() {
        let tmp = tempfile::tempdir().unwrap();
        let v = tmp.path().join("Python.framework/Versions/3.12");
        fake_binary(&v.join("bin/python3.12"));
        assert_eq!(framework_app(&v.join("bin/python3.12")), None);
        fake_binary(&v.join("Resources/Python.app/Contents/MacOS/Python"));
        assert_eq!(
            framework_app(&v.join("bin/python3.12")),
            Some(v.join("Resources/Python.app/Contents/MacOS/Python"))
        );
        assert_eq!(framework_app(&tmp.path().join("bin/python3")), None);
    }
}
