//! `metal-guard orphan-scan [--threshold-sec N] [--json]`: PRE/POST pairing
//! over the breadcrumb log; exit 1 when an orphan is found.

use super::outcome::{CommandError, CommandResult, Outcome};
use super::shared_args::JsonOutput;
use metal_guard_core::orphans;
use metal_guard_core::warnings::Warnings;
use metal_guard_core::{breadcrumbs, timefmt};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seconds a SUBPROC_PRE may stay open (default:
    /// METALGUARD_SUBPROC_ORPHAN_THRESHOLD_SEC, else 90).
    #[arg(long, value_name = "N")]
    pub threshold_sec: Option<f64>,
    /// JSON keys: threshold_sec, orphans: [{model_id, pre_ts, age_sec, pid}].
    #[command(flatten)]
    pub output: JsonOutput,
}

pub fn run(args: Args) -> CommandResult {
    let mut warnings = Warnings::new();
    let threshold = match args.threshold_sec {
        // The same bound as every other number of seconds (ten years).
        Some(t) if t.is_finite() && (0.0..=3.2e8).contains(&t) => t,
        Some(t) => {
            return Err(CommandError::usage(format!(
                "--threshold-sec must be a number of seconds between 0 and 3.2e8, got {t}"
            )))
        }
        None => metal_guard_core::status::orphan_threshold(&mut warnings),
    };
    warnings.emit();
    let path = breadcrumbs::breadcrumb_path();
    let lines = match orphans::read_log(&path) {
        Ok(l) => l,
        Err(e) => {
            return Err(CommandError::failed(format!(
                "cannot read the breadcrumb log {} ({e})",
                path.display()
            ))
            .hint("set METALGUARD_BREADCRUMB_PATH to the right file"))
        }
    };
    let found = orphans::find_orphans(
        &lines,
        time::Duration::seconds_f64(threshold),
        time::OffsetDateTime::now_utc(),
    );
    if args.output.json {
        let body = serde_json::json!({ "threshold_sec": threshold, "orphans": found });
        println!(
            "{}",
            serde_json::to_string_pretty(&body).expect("JSON serializes")
        );
    } else if found.is_empty() {
        println!(
            "No orphaned GPU sections in {} (threshold {threshold} s).",
            path.display()
        );
    } else {
        println!(
            "Orphaned GPU sections in {} (started, never finished):",
            path.display()
        );
        for o in &found {
            println!(
                "  {}  {}  pid {}  open for {} s",
                timefmt::human(o.pre_ts),
                o.model_id,
                o.pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
                o.age_sec
            );
        }
        println!("A section that never finished means the process hung or died inside it, or the Mac panicked; `metal-guard diagnose` looks for the panic report.");
    }
    Ok(Outcome::finding_if(!found.is_empty()))
}
