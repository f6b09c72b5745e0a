//! What each signature means, in plain words for someone whose Mac just
//! rebooted: what the driver did, what in the workload likely triggered it,
//! what to do now, and where the bug is tracked upstream.

use super::signature::PanicSignature;
use serde::Serialize;

/// `ml-explore/mlx#3186`: the canonical IOGPUFamily panic report.
pub const MLX_3186: &str = "https://github.com/ml-explore/mlx/issues/3186";
/// `ml-explore/mlx#3346`: the `fPendingMemorySet` signature.
pub const MLX_3346: &str = "https://github.com/ml-explore/mlx/issues/3346";
/// `ml-explore/mlx#3390`: the completion-handler abort no signal handler can catch.
pub const MLX_3390: &str = "https://github.com/ml-explore/mlx/issues/3390";
/// `ml-explore/mlx-lm#883`: panics from KV-cache growth.
pub const MLX_LM_883: &str = "https://github.com/ml-explore/mlx-lm/issues/883";
/// `ml-explore/mlx-lm#854`: server out-of-memory crashes under concurrent requests.
pub const MLX_LM_854: &str = "https://github.com/ml-explore/mlx-lm/issues/854";
/// `ml-explore/mlx-lm#1047`: panics correlate with a raised wired-memory limit.
pub const MLX_LM_1047: &str = "https://github.com/ml-explore/mlx-lm/issues/1047";

/// A plain-words explanation of one signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub signature: PanicSignature,
    /// One line: what happened.
    pub headline: &'static str,
    /// What the driver did, without jargon.
    pub what_happened: &'static str,
    /// Which workloads trigger it.
    pub likely_triggers: &'static str,
    /// What to do now, in order.
    pub what_to_do: &'static [&'static str],
    /// Upstream issues tracking the bug.
    pub upstream: &'static [&'static str],
}

impl Explanation {
    /// The explanation as one paragraph (the `explanation` field of
    /// `diagnose --json` and of `panics.jsonl`).
    pub fn plain_text(&self) -> String {
        format!(
            "{} {} Likely trigger: {} What to do: {} Upstream: {}.",
            self.headline,
            self.what_happened,
            self.likely_triggers,
            self.what_to_do.join(" "),
            self.upstream.join(", ")
        )
    }
}

const COMMON_STEPS: [&str; 3] = [
    "Wait before starting MLX again: right after a reboot, services that restart by themselves can trip the same bug within minutes (`metal-guard panic-gate` tells you when it is safe).",
    "Install the shell guard (`metal-guard guard install`) so MLX runs pause during the cooldown instead of rebooting the Mac again.",
    "Run MLX under `metal-guard run -- <command>` so risky buffer patterns are refused with a Python error instead of reaching the driver.",
];

/// The explanation for `sig`.
pub fn explain(sig: PanicSignature) -> Explanation {
    match sig {
        PanicSignature::PrepareCountUnderflow => Explanation {
            signature: sig,
            headline: "Your Mac restarted because Apple's GPU driver (IOGPUFamily) hit an internal bookkeeping error, not because of anything you did wrong.",
            what_happened: "The driver counts how many pieces of GPU work still use each block of GPU memory. A block was marked finished one time more than it was started, the count went below zero, and the driver chose to stop the whole machine rather than continue (\"completeMemory() prepare count underflow\").",
            likely_triggers: "loading and unloading MLX models in quick succession, several request streams at once while the KV cache evicts memory, or memory being freed while the GPU is still finishing work that uses it; a raised GPU wired-memory limit and very large single allocations make it more likely.",
            what_to_do: &[
                COMMON_STEPS[0],
                COMMON_STEPS[1],
                COMMON_STEPS[2],
                "Bound the KV cache (for mlx_lm, --max-kv-size) and avoid back-to-back model swaps; leave iogpu.wired_limit_mb at its default.",
                "If it keeps happening on the same model, a Mixture-of-Experts variant or a backend with a persistent worker (llama.cpp, Ollama) avoids the pattern.",
            ],
            upstream: &[MLX_3186, MLX_LM_883, MLX_LM_854, MLX_LM_1047, MLX_3390],
        },
        PanicSignature::PendingMemorySet => Explanation {
            signature: sig,
            headline: "Your Mac restarted because Apple's GPU driver (IOGPUFamily) lost track of a block of GPU memory, not because of anything you did wrong.",
            what_happened: "The driver keeps a list of memory blocks waiting to be handed to the GPU. When it went to take a block off that list, the block was not there (\"fPendingMemorySet\"), and the driver stopped the whole machine.",
            likely_triggers: "memory being added to and removed from the GPU's working set quickly (residency-set churn), typically while models are loaded and unloaded or the KV cache grows and shrinks, more often with a raised wired-memory limit.",
            what_to_do: &[
                COMMON_STEPS[0],
                COMMON_STEPS[1],
                COMMON_STEPS[2],
                "Leave iogpu.wired_limit_mb at its default and bound the KV cache so memory is not constantly added and removed.",
            ],
            upstream: &[MLX_3346, MLX_3186, MLX_LM_1047],
        },
        PanicSignature::RemoveMemoryObject => Explanation {
            signature: sig,
            headline: "Your Mac restarted because Apple's GPU driver (IOGPUFamily) tried to release GPU memory it had no record of, not because of anything you did wrong.",
            what_happened: "A program asked the driver to remove a block of memory from a group the GPU uses, but the driver could not find it there (\"remove_memory_object() memory object not found\"), and it stopped the whole machine.",
            likely_triggers: "memory released twice or released while the GPU still used it, typically during model unloads, cache clearing, or many short-lived buffers under load.",
            what_to_do: &[
                COMMON_STEPS[0],
                COMMON_STEPS[1],
                COMMON_STEPS[2],
                "Avoid clearing the MLX cache while generation threads are still running, and space out model unloads.",
            ],
            upstream: &[MLX_3186, MLX_3346],
        },
        PanicSignature::NonPendingHash => Explanation {
            signature: sig,
            headline: "Your Mac restarted because Apple's GPU driver (IOGPUFamily) found a block of GPU memory in the wrong internal list, not because of anything you did wrong.",
            what_happened: "A block the driver believed was still waiting to be handed to the GPU was already in its list of active blocks (\"pending memory object unexpectedly found in non pending hash\"); its bookkeeping disagreed with itself, so it stopped the whole machine.",
            likely_triggers: "the same residency churn behind the other IOGPU panics: memory added to and removed from the GPU's working set quickly, concurrent request streams, repeated model loads.",
            what_to_do: &[
                COMMON_STEPS[0],
                COMMON_STEPS[1],
                COMMON_STEPS[2],
                "Keep the wired-memory limit at its default and bound the KV cache.",
            ],
            upstream: &[MLX_3346, MLX_3186],
        },
        PanicSignature::IogpuOther => Explanation {
            signature: sig,
            headline: "Your Mac restarted while Apple's GPU driver (IOGPUFamily) was running, with a message metal-guard does not know yet.",
            what_happened: "The panic happened inside the GPU driver itself (it is the first driver in the crash's backtrace or named in the panic message), so it is very likely the same family of driver bugs MLX workloads trip, in a form not catalogued yet.",
            likely_triggers: "the same patterns as the known IOGPU panics: model load/unload churn, concurrent request streams with cache eviction, residency churn with a raised wired limit, or one huge allocation.",
            what_to_do: &[
                COMMON_STEPS[0],
                COMMON_STEPS[1],
                COMMON_STEPS[2],
                "Please report the panic text (metal-guard diagnose --json shows it) on the upstream issue so the signature can be added.",
            ],
            upstream: &[MLX_3186, MLX_LM_854, MLX_LM_1047],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_signature_explains_itself_and_cites_upstream() {
        let mut cited = std::collections::BTreeSet::new();
        for sig in PanicSignature::ALL {
            let e = explain(sig);
            assert_eq!(e.signature, sig);
            assert!(!e.upstream.is_empty());
            assert!(e.what_to_do.len() >= 3);
            let text = e.plain_text();
            assert!(text.contains("metal-guard guard install"), "{text}");
            cited.extend(e.upstream.iter().copied());
        }
        for issue in [
            MLX_3186,
            MLX_3346,
            MLX_3390,
            MLX_LM_883,
            MLX_LM_854,
            MLX_LM_1047,
        ] {
            assert!(cited.contains(issue), "{issue} never cited");
        }
    }
}
