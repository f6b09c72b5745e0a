//! What machine this is: chip, memory, GPU family, recommended working set,
//! the `iogpu.wired_limit_mb` audit, IOGPUFamily version and macOS build.
//! Every fact is read without spawning a tool or touching Metal (sysctl and
//! the kext's `Info.plist`). Facts the platform cannot give are `null`, with
//! the reason in `unavailable`.

use serde::Serialize;
use std::collections::BTreeMap;

/// A wired limit above this share of installed memory is flagged (panics
/// correlate with raised wired limits: mlx-lm#1047 discussion).
pub const WIRED_LIMIT_FLAG_FRACTION: f64 = 0.85;

/// The machine, as far as it can be told.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HardwareInfo {
    pub platform: String,
    /// "Apple M3 Max".
    pub chip: Option<String>,
    pub memory_bytes: Option<u64>,
    /// "applegpu_g15".
    pub gpu_family: Option<String>,
    /// "M3".
    pub gpu_generation: Option<String>,
    /// What Metal would recommend as the GPU working set. Without touching
    /// Metal this is the wired limit when one is set, else macOS's default
    /// share of memory (see `recommended_working_set_source`).
    pub recommended_working_set_bytes: Option<u64>,
    pub recommended_working_set_source: Option<String>,
    /// `iogpu.wired_limit_mb`; 0 means the system default.
    pub wired_limit_mb: Option<u64>,
    pub wired_limit_audit: Option<WiredLimitAudit>,
    pub iogpu_family_version: Option<String>,
    /// "15.5".
    pub macos_version: Option<String>,
    /// "24F74".
    pub macos_build: Option<String>,
    /// Field name -> why it is null.
    pub unavailable: BTreeMap<String, String>,
}

/// The wired-limit audit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WiredLimitAudit {
    pub flagged: bool,
    pub percent_of_memory: Option<f64>,
    pub message: String,
}

/// `applegpu_g13*` -> M1 ... `applegpu_g17*` -> M5.
pub fn generation_from_architecture(arch: &str) -> Option<&'static str> {
    let rest = arch.trim().to_ascii_lowercase();
    let rest = rest.strip_prefix("applegpu_g")?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    match digits.as_str() {
        "13" => Some("M1"),
        "14" => Some("M2"),
        "15" => Some("M3"),
        "16" => Some("M4"),
        "17" => Some("M5"),
        _ => None,
    }
}

/// "Apple M3 Max" -> ("M3", "applegpu_g15").
pub fn family_from_chip(chip: &str) -> Option<(&'static str, &'static str)> {
    let gen = chip
        .split_whitespace()
        .find(|w| w.len() == 2 && w.starts_with('M') && w.as_bytes()[1].is_ascii_digit())?;
    Some(match gen {
        "M1" => ("M1", "applegpu_g13"),
        "M2" => ("M2", "applegpu_g14"),
        "M3" => ("M3", "applegpu_g15"),
        "M4" => ("M4", "applegpu_g16"),
        "M5" => ("M5", "applegpu_g17"),
        _ => return None,
    })
}

/// macOS's default GPU working set share: about two thirds of memory up to
/// 36 GiB, three quarters above (what Metal reports on Apple Silicon when
/// the wired limit was not raised).
pub fn default_working_set(memory_bytes: u64) -> u64 {
    const GIB: u64 = 1 << 30;
    if memory_bytes <= 36 * GIB {
        memory_bytes / 3 * 2
    } else {
        memory_bytes / 4 * 3
    }
}

/// The audit of `iogpu.wired_limit_mb` against installed memory.
pub fn audit_wired_limit(wired_limit_mb: u64, memory_bytes: Option<u64>) -> WiredLimitAudit {
    if wired_limit_mb == 0 {
        return WiredLimitAudit {
            flagged: false,
            percent_of_memory: None,
            message: "iogpu.wired_limit_mb is at the system default".to_string(),
        };
    }
    let Some(mem) = memory_bytes.filter(|m| *m > 0) else {
        return WiredLimitAudit {
            flagged: false,
            percent_of_memory: None,
            message: format!(
                "iogpu.wired_limit_mb={wired_limit_mb}; installed memory unknown, cannot judge it"
            ),
        };
    };
    let pct = (wired_limit_mb as f64 * 1024.0 * 1024.0) / mem as f64 * 100.0;
    let flagged = pct > WIRED_LIMIT_FLAG_FRACTION * 100.0;
    WiredLimitAudit {
        flagged,
        percent_of_memory: Some((pct * 10.0).round() / 10.0),
        message: if flagged {
            format!(
                "iogpu.wired_limit_mb={wired_limit_mb} is {pct:.0}% of memory, above {:.0}%: IOGPU panics correlate with raised wired limits; lower it (sudo sysctl iogpu.wired_limit_mb=0 restores the default)",
                WIRED_LIMIT_FLAG_FRACTION * 100.0
            )
        } else {
            format!("iogpu.wired_limit_mb={wired_limit_mb} is {pct:.0}% of memory")
        },
    }
}

/// Fills the derived facts from the raw ones.
fn derive(info: &mut HardwareInfo) {
    if let Some((gen, family)) = info.chip.as_deref().and_then(family_from_chip) {
        info.gpu_generation = Some(gen.to_string());
        info.gpu_family = Some(family.to_string());
    } else if info.chip.is_some() {
        info.unavailable.insert(
            "gpu_family".into(),
            "the chip name does not name an Apple M-series GPU".into(),
        );
    }
    if let Some(limit) = info.wired_limit_mb {
        info.wired_limit_audit = Some(audit_wired_limit(limit, info.memory_bytes));
        if limit > 0 {
            info.recommended_working_set_bytes = Some(limit * 1024 * 1024);
            info.recommended_working_set_source =
                Some("iogpu.wired_limit_mb (raised by the user)".into());
        }
    }
    if info.recommended_working_set_bytes.is_none() {
        if let Some(mem) = info.memory_bytes {
            info.recommended_working_set_bytes = Some(default_working_set(mem));
            info.recommended_working_set_source = Some(
                "estimate: macOS default share of memory (Metal is not queried, so the GPU stays untouched)".into(),
            );
        }
    }
}

/// This machine's facts.
#[cfg(target_os = "macos")]
pub fn detect() -> HardwareInfo {
    use crate::sysctl_macos as sys;
    let mut info = HardwareInfo {
        platform: "macos".into(),
        ..Default::default()
    };
    let note = |field: &str, why: String, info: &mut HardwareInfo| {
        info.unavailable.insert(field.to_string(), why);
    };
    match sys::cpu_brand() {
        Ok(c) => info.chip = Some(c),
        Err(e) => note("chip", e.to_string(), &mut info),
    }
    match sys::memory_bytes() {
        Ok(m) => info.memory_bytes = Some(m),
        Err(e) => note("memory_bytes", e.to_string(), &mut info),
    }
    match sys::iogpu_wired_limit_mb() {
        Ok(m) => info.wired_limit_mb = Some(m),
        Err(e) => note("wired_limit_mb", e.to_string(), &mut info),
    }
    match sys::read_string("kern.osproductversion") {
        Ok(v) => info.macos_version = Some(v),
        Err(e) => note("macos_version", e.to_string(), &mut info),
    }
    match sys::read_string("kern.osversion") {
        Ok(v) => info.macos_build = Some(v),
        Err(e) => note("macos_build", e.to_string(), &mut info),
    }
    match crate::iogpu_kext::installed_version() {
        Some(v) => info.iogpu_family_version = Some(v),
        None => note(
            "iogpu_family_version",
            format!(
                "no CFBundleVersion in {}",
                crate::iogpu_kext::IOGPU_FAMILY_INFO_PLIST
            ),
            &mut info,
        ),
    }
    derive(&mut info);
    info
}

/// This machine's facts: on anything but macOS, every Mac fact is null.
#[cfg(not(target_os = "macos"))]
pub fn detect() -> HardwareInfo {
    let mut info = HardwareInfo {
        platform: std::env::consts::OS.to_string(),
        ..Default::default()
    };
    for field in [
        "chip",
        "memory_bytes",
        "gpu_family",
        "gpu_generation",
        "recommended_working_set_bytes",
        "wired_limit_mb",
        "iogpu_family_version",
        "macos_version",
        "macos_build",
    ] {
        info.unavailable.insert(
            field.to_string(),
            format!(
                "not macOS ({}): no Apple GPU or IOGPUFamily here",
                std::env::consts::OS
            ),
        );
    }
    derive(&mut info);
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families() {
        assert_eq!(generation_from_architecture("applegpu_g13g"), Some("M1"));
        assert_eq!(generation_from_architecture("applegpu_g15s"), Some("M3"));
        assert_eq!(generation_from_architecture("applegpu_g17"), Some("M5"));
        assert_eq!(generation_from_architecture("applegpu_g12"), None);
        assert_eq!(
            family_from_chip("Apple M4 Max"),
            Some(("M4", "applegpu_g16"))
        );
        assert_eq!(family_from_chip("Intel(R) Core(TM) i9"), None);
    }

    #[test]
    fn wired_limit_audit() {
        let gib = 1u64 << 30;
        assert!(!audit_wired_limit(0, Some(64 * gib)).flagged);
        let a = audit_wired_limit(58_000, Some(64 * gib));
        assert!(a.flagged, "{a:?}");
        assert!(a.message.contains("sysctl"));
        assert!(!audit_wired_limit(48_000, Some(64 * gib)).flagged);
        assert!(!audit_wired_limit(48_000, None).flagged);
    }

    #[test]
    fn derived_facts() {
        let gib = 1u64 << 30;
        let mut info = HardwareInfo {
            chip: Some("Apple M3 Max".into()),
            memory_bytes: Some(64 * gib),
            wired_limit_mb: Some(0),
            ..Default::default()
        };
        derive(&mut info);
        assert_eq!(info.gpu_family.as_deref(), Some("applegpu_g15"));
        assert_eq!(info.recommended_working_set_bytes, Some(48 * gib));
        info.wired_limit_mb = Some(60_000);
        info.recommended_working_set_bytes = None;
        derive(&mut info);
        assert_eq!(
            info.recommended_working_set_bytes,
            Some(60_000 * 1024 * 1024)
        );
        assert!(info.wired_limit_audit.unwrap().flagged);
    }

    #[cfg(not(target_os = "macos"))]
    #[test]
    fn non_mac_fields_are_null_with_reasons() {
        let info = detect();
        assert!(info.chip.is_none() && info.memory_bytes.is_none());
        assert!(info.unavailable["chip"].contains("not macOS"));
    }
}
