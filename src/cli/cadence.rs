//! `metal-guard cadence MODEL_ID`: atomic check-and-mark of a model load
//! across processes (0 clear and marked, 2 too soon).

use super::outcome::{CommandError, CommandResult, Outcome};
use super::shared_args::JsonOutput;
use metal_guard_core::cadence::load_file;
use metal_guard_core::cadence::rule::{CadenceDecision, CadencePolicy, TooSoonReason};
use metal_guard_core::engine::config::defaults;
use metal_guard_core::env_vars;

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
}

/// Seconds as nanoseconds.
fn seconds(flag: &str, v: f64) -> Result<u64, CommandError> {
    if v.is_finite() && (0.0..=3.2e8).contains(&v) {
        Ok((v * 1e9) as u64)
    } else {
        Err(CommandError::usage(format!(
            "{flag} must be a number of seconds between 0 and 3.2e8, got {v}"
        )))
    }
}

pub fn run(args: Args, output: JsonOutput) -> CommandResult {
    // The guard's own reading of the cadence settings; the flags override.
    let (mut policy, warnings) = CadencePolicy::from_lookup(&env_vars::process_env);
    policy.same_model_interval_ns = seconds("--min-interval", args.min_interval)?;
    if let Some(c) = args.cross_model_interval {
        policy.cross_model_interval_ns =
            Some(seconds("--cross-model-interval", c)?).filter(|ns| *ns > 0);
    }
    for w in &warnings {
        eprintln!("metal-guard: warning: {w}");
    }
    if args.model_id.trim().is_empty() {
        return Err(
            CommandError::usage("MODEL_ID is empty").hint("pass the model you are about to load")
        );
    }
    let now = time::OffsetDateTime::now_utc();
    let check = load_file::check_and_mark(&args.model_id, &policy, now)
        .map_err(|e| CommandError::failed(e.to_string()))?;
    let outcome = match check.decision {
        CadenceDecision::Clear => Outcome::Proceed,
        CadenceDecision::TooSoon { .. } => Outcome::Blocked(None),
    };
    if output.json {
        let mut v = check.to_json();
        v["model_id"] = serde_json::json!(args.model_id);
        v["exit_code"] = serde_json::json!(outcome.status());
        println!(
            "{}",
            serde_json::to_string_pretty(&v).expect("JSON serializes")
        );
        return Ok(outcome);
    }
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
    Ok(outcome)
}
