//! Reading environment variables: the one flag rule and the number rules
//! every setting uses (names shared with the Python tool). Values are read through a lookup function so tests never touch the
//! process environment. A bad value is a one-line warning and the default,
//! never a silent hole: a threshold of 0 or a negative cooldown would let
//! panics through, so those are refused too.

use crate::warnings::Warnings;

/// Reads one variable; `std::env::var` in production, a map in tests.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment as a [`Lookup`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// THE flag rule of every part of metal-guard (the CLI, the launcher, the
/// injected library, both GPU backends): `1`, `true`, `yes`, `on` switch a
/// flag on and `0`, `false`, `no`, `off` switch it off, in any case and with
/// surrounding blanks; anything else (an empty value included) is neither.
pub fn parse_switch(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Whether a flag is on: only a value [`parse_switch`] reads as on.
pub fn is_truthy(value: Option<&str>) -> bool {
    value.and_then(parse_switch) == Some(true)
}

/// Whether a switch is explicitly off (`METALGUARD_CUDA=OFF`, say); unset,
/// empty or unreadable leaves it on.
pub fn is_switched_off(value: Option<&str>) -> bool {
    value.and_then(parse_switch) == Some(false)
}

/// A flag variable.
pub fn flag(get: Lookup<'_>, name: &str) -> bool {
    is_truthy(get(name).as_deref())
}

/// A positive number of hours (fractions allowed). Unset: the default.
/// Unparsable, zero, negative or absurd (over ten years): a warning and the default.
pub fn positive_hours(get: Lookup<'_>, name: &str, default: f64, warnings: &mut Warnings) -> f64 {
    positive_number(get, name, default, 24.0 * 3653.0, "hours", warnings)
}

/// A positive number of seconds; same rules as [`positive_hours`].
pub fn positive_seconds(get: Lookup<'_>, name: &str, default: f64, warnings: &mut Warnings) -> f64 {
    positive_number(get, name, default, 3.2e8, "seconds", warnings)
}

/// A finite number in `(0, max]` of `unit`; anything else warns and gives the default.
fn positive_number(
    get: Lookup<'_>,
    name: &str,
    default: f64,
    max: f64,
    unit: &str,
    warnings: &mut Warnings,
) -> f64 {
    match get(name) {
        None => default,
        Some(raw) if raw.trim().is_empty() => default,
        Some(raw) => match raw.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && v > 0.0 && v <= max => v,
            _ => {
                warnings.push(format!(
                    "metal-guard: warning: {name}={raw:?} is not a positive number of {unit}; using {default}"
                ));
                default
            }
        },
    }
}

/// A count of at least 1. Unset: the default. Anything else: a warning and the default.
pub fn positive_count(
    get: Lookup<'_>,
    name: &str,
    default: usize,
    warnings: &mut Warnings,
) -> usize {
    match get(name) {
        None => default,
        Some(raw) if raw.trim().is_empty() => default,
        Some(raw) => match raw.trim().parse::<usize>() {
            Ok(v) if v >= 1 => v,
            _ => {
                warnings.push(format!(
                    "metal-guard: warning: {name}={raw:?} is not a whole number of at least 1; using {default}"
                ));
                default
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn bad_values_warn_and_keep_the_default() {
        let get = env(&[("H", "-1"), ("N", "0"), ("S", "soon"), ("OK", "1.5")]);
        let mut w = Warnings::new();
        assert_eq!(positive_hours(&get, "H", 2.0, &mut w), 2.0);
        assert_eq!(positive_count(&get, "N", 2, &mut w), 2);
        assert_eq!(positive_seconds(&get, "S", 180.0, &mut w), 180.0);
        assert_eq!(positive_hours(&get, "OK", 2.0, &mut w), 1.5);
        assert_eq!(positive_hours(&get, "UNSET", 2.0, &mut w), 2.0);
        assert_eq!(w.len(), 3);
        assert!(w.iter().all(|l| !l.contains('\n')));
    }

    #[test]
    fn truthy_values() {
        for v in ["1", "true", "YES", " on "] {
            assert!(is_truthy(Some(v)), "{v}");
        }
        for v in ["", "0", "false", "no", "off", "2"] {
            assert!(!is_truthy(Some(v)), "{v}");
        }
        assert!(!is_truthy(None));
    }
}
