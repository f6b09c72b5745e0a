//! The known-panic-model registry and the version advisories: a data file
//! compiled into the binary (`known_models.json`, in our own words), matched
//! by exact model id and by real PEP 440 ranges over the installed versions
//! of mlx, mlx-lm, mlx-vlm and transformers (read from `*.dist-info`
//! metadata, never by importing them: importing initialises Metal).

pub mod installed;
pub mod pep440;

use pep440::{SpecifierSet, Version};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The packages whose versions the advisories cover.
pub const WATCHED_PACKAGES: [&str; 4] = ["mlx", "mlx-lm", "mlx-vlm", "transformers"];

const DATA: &str = include_str!("known_models.json");

/// A model known to misbehave, by exact id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnownModel {
    pub id: String,
    /// `panic` (can reboot the Mac), `abort` (kills the process) or `degradation`.
    pub tier: String,
    pub summary: String,
    pub advice: String,
    #[serde(default)]
    pub alternatives: Vec<String>,
}

/// A failure mode not tied to one model id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureMode {
    pub tier: String,
    pub summary: String,
    pub advice: String,
}

/// A version advisory: `package` in `affected` (PEP 440).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advisory {
    pub package: String,
    pub affected: String,
    pub severity: String,
    pub issue: String,
    pub summary: String,
    pub advice: String,
}

/// The compiled-in registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registry {
    pub schema_version: u32,
    pub updated: String,
    pub models: Vec<KnownModel>,
    pub failure_modes: Vec<FailureMode>,
    pub advisories: Vec<Advisory>,
}

/// The registry compiled into this binary.
pub fn registry() -> Registry {
    serde_json::from_str(DATA).expect("known_models.json is checked by the tests")
}

impl Registry {
    /// The entry for exactly `model_id` (Hugging Face ids compare without case).
    pub fn model(&self, model_id: &str) -> Option<&KnownModel> {
        let want = model_id.trim();
        self.models.iter().find(|m| m.id.eq_ignore_ascii_case(want))
    }
}

/// How one advisory applies here.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum AdvisoryMatch {
    /// The installed version is in the affected range.
    Affected { installed: String },
    /// Installed, outside the range.
    NotAffected { installed: String },
    /// Not installed in the interpreter checked: nothing to match (said
    /// out loud, never a silent "no match").
    NotInstalled,
    /// Installed, but its version is not PEP 440: cannot tell.
    Unknown { installed: String, why: String },
}

/// An advisory with its verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdvisoryReport {
    #[serde(flatten)]
    pub advisory: Advisory,
    #[serde(rename = "match")]
    pub matched: AdvisoryMatch,
}

/// Evaluates every advisory against `installed` (normalised package name -> version).
pub fn check_advisories(
    reg: &Registry,
    installed: &BTreeMap<String, String>,
) -> Vec<AdvisoryReport> {
    reg.advisories
        .iter()
        .map(|a| {
            let name = installed::normalize_name(&a.package);
            let matched = match installed.get(&name) {
                None => AdvisoryMatch::NotInstalled,
                Some(ver) => match (Version::parse(ver), SpecifierSet::parse(&a.affected)) {
                    (Ok(v), Ok(range)) if range.contains(&v) => AdvisoryMatch::Affected {
                        installed: ver.clone(),
                    },
                    (Ok(_), Ok(_)) => AdvisoryMatch::NotAffected {
                        installed: ver.clone(),
                    },
                    (Err(e), _) | (_, Err(e)) => AdvisoryMatch::Unknown {
                        installed: ver.clone(),
                        why: e.0,
                    },
                },
            };
            AdvisoryReport {
                advisory: a.clone(),
                matched,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_data_is_valid() {
        let reg = registry();
        assert_eq!(reg.schema_version, 1);
        for a in &reg.advisories {
            SpecifierSet::parse(&a.affected).unwrap();
            assert!(
                WATCHED_PACKAGES.contains(&a.package.as_str()),
                "{}",
                a.package
            );
        }
        for m in &reg.models {
            assert!(["panic", "abort", "degradation"].contains(&m.tier.as_str()));
        }
        let m = reg.model("MLX-Community/gemma-4-31b-it-8bit").unwrap();
        assert_eq!(m.tier, "panic");
        assert!(reg
            .model("mlx-community/gemma-4-31b-it-8bit-extra")
            .is_none());
    }

    #[test]
    fn advisories_match_installed_versions() {
        let reg = registry();
        let mut installed = BTreeMap::new();
        installed.insert("mlx".to_string(), "0.31.2".to_string());
        let reports = check_advisories(&reg, &installed);
        assert!(reports
            .iter()
            .all(|r| matches!(r.matched, AdvisoryMatch::Affected { .. })));
        installed.insert("mlx".to_string(), "0.31.3".to_string());
        assert!(check_advisories(&reg, &installed)
            .iter()
            .all(|r| matches!(r.matched, AdvisoryMatch::NotAffected { .. })));
        installed.insert("mlx".to_string(), "0.30.0".to_string());
        let r = check_advisories(&reg, &installed);
        assert!(matches!(r[0].matched, AdvisoryMatch::Affected { .. }));
        assert!(matches!(r[1].matched, AdvisoryMatch::NotAffected { .. }));
        installed.insert("mlx".to_string(), "main-branch".to_string());
        assert!(matches!(
            check_advisories(&reg, &installed)[0].matched,
            AdvisoryMatch::Unknown { .. }
        ));
        assert!(check_advisories(&reg, &BTreeMap::new())
            .iter()
            .all(|r| r.matched == AdvisoryMatch::NotInstalled));
    }
}
