//! `metal-guard models [MODEL_ID] [--json]`: the known-panic-model registry
//! and the version advisories for the interpreter that runs MLX.

use super::outcome::{CommandResult, Outcome};
use super::shared_args::JsonOutput;
use metal_guard_core::registry::{self, installed, AdvisoryMatch};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A model id to look up (exact, e.g. mlx-community/gemma-4-31b-it-8bit).
    /// Exit 2 when it is in the `panic` tier, 1 in another tier.
    pub model_id: Option<String>,
    /// The Python interpreter whose packages to check (default:
    /// MLX_SAFE_PYTHON_BIN, else python3 on PATH). It is not run.
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
}

pub fn run(args: Args, output: JsonOutput) -> CommandResult {
    let reg = registry::registry();
    let pkgs = installed::installed_packages(args.python.as_deref(), &registry::WATCHED_PACKAGES);
    let advisories = registry::check_advisories(&reg, &pkgs.versions);
    let entry = args.model_id.as_deref().map(|m| (m, reg.model(m)));
    let outcome = match entry {
        Some((_, Some(m))) if m.tier == "panic" => Outcome::Blocked(None),
        Some((_, Some(_))) => Outcome::Finding,
        _ => Outcome::Proceed,
    };
    if output.json {
        let body = serde_json::json!({
            "model": entry.map(|(id, m)| serde_json::json!({"id": id, "known": m})),
            "models": if args.model_id.is_none() { serde_json::to_value(&reg.models).ok() } else { None },
            "failure_modes": reg.failure_modes,
            "installed": pkgs,
            "advisories": advisories,
            "registry_updated": reg.updated,
            "exit_code": outcome.status(),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&body).expect("JSON serializes")
        );
        return Ok(outcome);
    }
    match entry {
        Some((id, Some(m))) => {
            println!(
                "{id}: KNOWN {} model\n  {}\n  advice: {}",
                m.tier.to_uppercase(),
                m.summary,
                m.advice
            );
        }
        Some((id, None)) => {
            println!("{id}: not in the registry (no known panic reports for this exact id).")
        }
        None => {
            println!("Known models (registry {}):", reg.updated);
            for m in &reg.models {
                println!(
                    "  [{}] {}\n      {}\n      advice: {}",
                    m.tier, m.id, m.summary, m.advice
                );
            }
            println!("Known failure modes:");
            for f in &reg.failure_modes {
                println!("  [{}] {}\n      advice: {}", f.tier, f.summary, f.advice);
            }
        }
    }
    match &pkgs.interpreter {
        Some(p) => println!("Version advisories for {}:", p.display()),
        None => println!("Version advisories:"),
    }
    if let Some(note) = &pkgs.note {
        println!("  note: {note}");
    }
    for r in &advisories {
        let a = &r.advisory;
        let status = match &r.matched {
            AdvisoryMatch::Affected { installed } => {
                format!("AFFECTED ({} {installed})", a.package)
            }
            AdvisoryMatch::NotAffected { installed } => format!("ok ({} {installed})", a.package),
            AdvisoryMatch::NotInstalled => format!("{} not installed here", a.package),
            AdvisoryMatch::Unknown { installed, why } => {
                format!("cannot tell ({} {installed}: {why})", a.package)
            }
        };
        println!(
            "  {} {} [{}]: {status}\n      {}",
            a.package, a.affected, a.issue, a.summary
        );
        if matches!(r.matched, AdvisoryMatch::Affected { .. }) {
            println!("      advice: {}", a.advice);
        }
    }
    Ok(outcome)
}
