//! `metal-guard cadence MODEL_ID`: atomic check-and-mark of a model load
//! across processes (0 clear and marked, 2 too soon).

use super::exit;
use metal_guard_core::cadence::load_file;
use metal_guard_core::cadence::rule::{CadenceDecision, CadencePolicy, TooSoonReason};
use metal_guard_core::engine::config::defaults;
use metal_guard_core::env_vars;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model about to be loaded (e.g. mlx-community/gemma-4-26b-a4b-it-4bit).
    pub model_id: String,
    /// Seconds between two loads of the same model.
    #[arg(long, value_name = "S", default_value_t = defaults::SAME_MODEL_INTERVAL_S)]
    pub min_interval: f64,
    /// Seconds between loads of different models (default: METALGUARD_CROSS_MODEL_INTERVAL, else off).
    #[arg(long, value_name = "S")]
    pub cross_model_interval: Option<f64>,
    /// Print the decision as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Seconds as nanoseconds.
fn seconds(flag: &str, v: f64) -> Result<u64, String> {
    if v.is_finite() && (0.0..=3.2e8).contains(&v) {
        Ok((v * 1e9) as u64)
    } else {
        Err(format!(
            "metal-guard: {flag} must be a number of seconds between 0 and 3.2e8, got {v}"
        ))
    }
}

pub fn run(args: Args) -> ExitCode {
    // The guard's own reading of the cadence settings; the flags override.
    let (mut policy, warnings) = CadencePolicy::from_lookup(&env_vars::process_env);
    match seconds("--min-interval", args.min_interval) {
        Ok(ns) => policy.same_model_interval_ns = ns,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(exit::USAGE);
        }
    }
    if let Some(c) = args.cross_model_interval {
        match seconds("--cross-model-interval", c) {
            Ok(0) => policy.cross_model_interval_ns = None,
            Ok(ns) => policy.cross_model_interval_ns = Some(ns),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(exit::USAGE);
            }
        }
    }
    for w in warnings {
        eprintln!("metal-guard: warning: {w}");
    }
    if args.model_id.trim().is_empty() {
        eprintln!("metal-guard: MODEL_ID is empty; pass the model you are about to load");
        return ExitCode::from(exit::USAGE);
    }
    let now = time::OffsetDateTime::now_utc();
    match load_file::check_and_mark(&args.model_id, &policy, now) {
        Ok(check) => {
            let code = match check.decision {
                CadenceDecision::Clear => exit::OK,
                CadenceDecision::TooSoon { .. } => exit::BLOCKED,
            };
            if args.json {
                let mut v = check.to_json();
                v["model_id"] = serde_json::json!(args.model_id);
                v["exit_code"] = serde_json::json!(code);
                println!(
                    "{}",
                    serde_json::to_string_pretty(&v).expect("JSON serializes")
                );
            } else {
                match (check.decision, &check.blocking) {
                    (CadenceDecision::TooSoon { reason, .. }, Some((blocking_model, _))) => {
                        let what = if reason == TooSoonReason::AfterLoadOfSameModel {
                            format!(
                                "{blocking_model} was loaded less than {} s ago",
                                policy.same_model_interval_ns / 1_000_000_000
                            )
                        } else {
                            format!("another model ({blocking_model}) was loaded moments ago")
                        };
                        println!(
                            "too soon: {what}; wait {} s before loading {}",
                            check.wait_sec(),
                            args.model_id
                        );
                    }
                    _ => println!("clear: {} marked as loading now", args.model_id),
                }
            }
            ExitCode::from(code)
        }
        Err(e) => {
            eprintln!("metal-guard: {e}");
            ExitCode::from(exit::GATE_FAILED)
        }
    }
}
