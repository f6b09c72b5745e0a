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
}

pub fn run(args: Args, output: JsonOutput) -> CommandResult {
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
    // Ours and the Python tool's logs: a section an app embedding it left
    // open counts too.
    let now = time::OffsetDateTime::now_utc();
    let mut found = Vec::new();
    let mut read = Vec::new();
    for path in breadcrumbs::breadcrumb_logs() {
        let lines = orphans::read_log(&path).map_err(|e| {
            CommandError::failed(format!(
                "cannot read the breadcrumb log {} ({e})",
                path.display()
            ))
            .hint("set METALGUARD_BREADCRUMB_PATH to the right file")
        })?;
        let open = orphans::find_orphans(&lines, time::Duration::seconds_f64(threshold), now);
        found.extend(open.into_iter().map(|o| (path.clone(), o)));
        read.push(path);
    }
    let shown = read
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if output.json {
        let orphans: Vec<serde_json::Value> = found
            .iter()
            .map(|(log, o)| {
                let mut v = serde_json::to_value(o).expect("an orphan serializes");
                v["log"] = serde_json::json!(log.to_string_lossy());
                v
            })
            .collect();
        let body = serde_json::json!({
            "threshold_sec": threshold,
            "orphans": orphans,
            "logs": read.iter().map(|p| p.to_string_lossy()).collect::<Vec<_>>(),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&body).expect("JSON serializes")
        );
    } else if found.is_empty() {
        println!("No orphaned GPU sections in {shown} (threshold {threshold} s).");
    } else {
        println!("Orphaned GPU sections (started, never finished):");
        for (log, o) in &found {
            println!(
                "  {}  {}  pid {}  open for {} s  ({})",
                timefmt::human(o.pre_ts),
                o.model_id,
                o.pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
                o.age_sec,
                log.display()
            );
        }
        println!("A section that never finished means the process hung or died inside it, or the Mac panicked; `metal-guard diagnose` looks for the panic report.");
    }
    Ok(Outcome::finding_if(!found.is_empty()))
}
