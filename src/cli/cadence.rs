//! `metal-guard cadence MODEL_ID`: atomic check-and-mark of a model load
//! across processes (0 clear and marked, 2 too soon).

use super::exit;
use metal_guard_core::env_vars;
use metal_guard_core::gates::cadence::{self, CadenceDecision, CadencePolicy};
use std::process::ExitCode;
use time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model about to be loaded (e.g. mlx-community/gemma-4-26b-a4b-it-4bit).
    pub model_id: String,
    /// Seconds between two loads of the same model.
    #[arg(long, value_name = "S", default_value_t = cadence::DEFAULT_MIN_INTERVAL_SEC)]
    pub min_interval: f64,
    /// Seconds between loads of different models (default: METALGUARD_CROSS_MODEL_INTERVAL, else off).
    #[arg(long, value_name = "S")]
    pub cross_model_interval: Option<f64>,
    /// Print the decision as JSON.
    #[arg(long)]
    pub json: bool,
}

fn seconds(flag: &str, v: f64) -> Result<Duration, String> {
    if v.is_finite() && (0.0..=3.2e8).contains(&v) {
        Ok(Duration::seconds_f64(v))
    } else {
        Err(format!(
            "metal-guard: {flag} must be a number of seconds between 0 and 3.2e8, got {v}"
        ))
    }
}

pub fn run(args: Args) -> ExitCode {
    let mut warnings = Vec::new();
    let mut policy = CadencePolicy::from_env(&env_vars::process_env, &mut warnings);
    match seconds("--min-interval", args.min_interval) {
        Ok(d) => policy.min_interval = d,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(exit::USAGE);
        }
    }
    if let Some(c) = args.cross_model_interval {
        match seconds("--cross-model-interval", c) {
            Ok(d) if d.is_zero() => policy.cross_model_interval = None,
            Ok(d) => policy.cross_model_interval = Some(d),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(exit::USAGE);
            }
        }
    }
    for w in warnings {
        eprintln!("{w}");
    }
    if args.model_id.trim().is_empty() {
        eprintln!("metal-guard: MODEL_ID is empty; pass the model you are about to load");
        return ExitCode::from(exit::USAGE);
    }
    let now = time::OffsetDateTime::now_utc();
    match cadence::check_and_mark(&args.model_id, &policy, now) {
        Ok(d) => {
            if args.json {
                let mut v = serde_json::to_value(&d).expect("decision serializes");
                v["model_id"] = serde_json::json!(args.model_id);
                v["exit_code"] = serde_json::json!(match d {
                    CadenceDecision::Clear { .. } => exit::OK,
                    CadenceDecision::TooSoon { .. } => exit::BLOCKED,
                });
                println!(
                    "{}",
                    serde_json::to_string_pretty(&v).expect("JSON serializes")
                );
            }
            match d {
                CadenceDecision::Clear { .. } => {
                    if !args.json {
                        println!("clear: {} marked as loading now", args.model_id);
                    }
                    ExitCode::from(exit::OK)
                }
                CadenceDecision::TooSoon {
                    wait_sec,
                    blocking_model,
                    rule,
                    ..
                } => {
                    if !args.json {
                        let what = if rule == "same_model" {
                            format!(
                                "{blocking_model} was loaded less than {} s ago",
                                policy.min_interval.whole_seconds()
                            )
                        } else {
                            format!("another model ({blocking_model}) was loaded moments ago")
                        };
                        println!(
                            "too soon: {what}; wait {wait_sec} s before loading {}",
                            args.model_id
                        );
                    }
                    ExitCode::from(exit::BLOCKED)
                }
            }
        }
        Err(e) => {
            eprintln!("metal-guard: {e}");
            ExitCode::from(exit::GATE_FAILED)
        }
    }
}
