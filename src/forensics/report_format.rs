//! The two layouts a macOS panic report comes in, decoded to one shape.
//!
//! - Legacy text (`.panic`, and what people paste): the panic text itself.
//! - JSON (`.ips`, and `panic-base-*` files under a `.panic` name): line 1 is
//!   a JSON header (`"bug_type":"210"` for a kernel panic; the header line
//!   may repeat), then a JSON body whose `panicString` holds the panic text
//!   (`macOSPanicString` on T2 Macs). Inside JSON `/` arrives escaped as `\/`.
//!
//! Broken or truncated JSON falls back to the raw text with the common JSON
//! escapes undone, so a damaged report still classifies.

use serde::Deserialize;
use serde_json::Value;

/// Apple's `bug_type` for a kernel panic report.
pub const PANIC_BUG_TYPE: &str = "210";

/// How a report was laid out on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportLayout {
    /// Plain panic text.
    PanicText,
    /// JSON header and body that parsed.
    IpsJson,
    /// Started as JSON but did not parse; the raw text was scanned instead.
    IpsJsonBroken,
}

/// The `.ips` first-line header fields we use.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct IpsHeader {
    /// `"210"` for kernel panics, `"309"` for app crashes, and so on.
    #[serde(default, deserialize_with = "string_or_number")]
    pub bug_type: Option<String>,
    /// `2025-07-04 08:44:14.00 -0500`.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// `macOS 15.5 (24F74)`.
    #[serde(default)]
    pub os_version: Option<String>,
}

/// The `.ips` body fields we use.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpsBody {
    #[serde(default)]
    pub panic_string: Option<String>,
    #[serde(default, rename = "macOSPanicString")]
    pub macos_panic_string: Option<String>,
    /// `2025-07-04 08:44:14.97 -0500`.
    #[serde(default)]
    pub date: Option<String>,
    /// `Darwin Kernel Version 24.5.0: ...`.
    #[serde(default)]
    pub kernel: Option<String>,
    /// `macOS 15.5 (24F74)`.
    #[serde(default)]
    pub build: Option<String>,
    /// `Mac14,9`.
    #[serde(default)]
    pub product: Option<String>,
}

/// A report reduced to its panic text plus the structured fields the JSON
/// layout carries.
#[derive(Debug, Clone)]
pub struct DecodedReport {
    pub layout: ReportLayout,
    pub header: Option<IpsHeader>,
    pub body: Option<IpsBody>,
    /// The panic text with line endings normalised to `\n`.
    pub panic_text: String,
}

impl DecodedReport {
    /// The header's `bug_type`, if the report has a JSON header.
    pub fn bug_type(&self) -> Option<&str> {
        self.header.as_ref()?.bug_type.as_deref()
    }

    /// False only for a JSON report whose header says it is something other
    /// than a kernel panic (an app crash, a hang, a jetsam event).
    pub fn is_kernel_panic(&self) -> bool {
        !matches!(self.bug_type(), Some(t) if t != PANIC_BUG_TYPE)
    }
}

/// Decodes a report's text, whichever layout it uses.
pub fn decode(text: &str) -> DecodedReport {
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if !trimmed.starts_with('{') {
        return DecodedReport {
            layout: ReportLayout::PanicText,
            header: None,
            body: None,
            panic_text: normalize_line_endings(text),
        };
    }

    let mut header: Option<IpsHeader> = None;
    let mut body: Option<IpsBody> = None;
    let mut broken = false;
    for value in serde_json::Deserializer::from_str(trimmed).into_iter::<Value>() {
        let Ok(Value::Object(map)) = value else {
            broken = true;
            break;
        };
        let has_panic_text =
            map.contains_key("panicString") || map.contains_key("macOSPanicString");
        let value = Value::Object(map);
        if has_panic_text {
            if body.is_none() {
                body = IpsBody::deserialize(&value).ok();
            }
        } else if header.is_none() && value.get("bug_type").is_some() {
            header = IpsHeader::deserialize(&value).ok();
        }
    }

    let body_text = body.as_ref().and_then(|b| {
        [&b.panic_string, &b.macos_panic_string]
            .into_iter()
            .flatten()
            .find(|s| !s.trim().is_empty())
            .cloned()
    });
    match body_text {
        Some(panic_text) if !broken || body.is_some() => DecodedReport {
            layout: ReportLayout::IpsJson,
            header,
            body,
            panic_text: normalize_line_endings(&panic_text),
        },
        _ if !broken => DecodedReport {
            // Well-formed JSON without a panic string (an app crash report,
            // or a panic body we do not know): nothing to classify.
            layout: ReportLayout::IpsJson,
            header,
            body,
            panic_text: String::new(),
        },
        _ => DecodedReport {
            layout: ReportLayout::IpsJsonBroken,
            header,
            body,
            panic_text: normalize_line_endings(&undo_json_escapes(trimmed)),
        },
    }
}

/// `\r\n` and lone `\r` become `\n`.
fn normalize_line_endings(text: &str) -> String {
    if !text.contains('\r') {
        return text.to_string();
    }
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// Undoes `\n`, `\r`, `\t`, `\"`, `\/` and `\\` in raw JSON text so a broken
/// report's panic string reads like the text layout. Not a JSON parser: it
/// only makes the damaged text scannable.
fn undo_json_escapes(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some(other @ ('"' | '/' | '\\')) => out.push(other),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Apple writes `bug_type` as a string; accept a number too.
fn string_or_number<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(de)? {
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const IPS: &str = concat!(
        r#"{"bug_type":"210","timestamp":"2026-04-24 00:00:00.00 +0000","os_version":"macOS 26.4.1 (25E253)"}"#,
        "\n",
        r#"{"bug_type":"210","timestamp":"2026-04-24 00:00:00.00 +0000","os_version":"macOS 26.4.1 (25E253)"}"#,
        "\n",
        r#"{"kernel":"Darwin Kernel Version 25.4.0; root:xnu-12377.101.15~1\/RELEASE_ARM64_T8132","product":"Mac16,5","panicString":"panic(cpu 8 caller 0x1): \"completeMemory() prepare count underflow\" @IOGPUMemory.cpp:550\n"}"#,
    );

    #[test]
    fn ips_with_repeated_header_decodes() {
        let d = decode(IPS);
        assert_eq!(d.layout, ReportLayout::IpsJson);
        assert_eq!(d.bug_type(), Some("210"));
        assert!(d.panic_text.starts_with("panic(cpu 8"));
        let body = d.body.unwrap();
        assert!(body.kernel.unwrap().contains("/RELEASE_ARM64_T8132"));
        assert_eq!(body.product.as_deref(), Some("Mac16,5"));
    }

    #[test]
    fn macos_panic_string_is_the_fallback() {
        let text = "{\"bug_type\":\"210\"}\n{\"panicString\":\"\",\"macOSPanicString\":\"panic(cpu 0): x @IOGPUMemory.cpp:550\"}";
        let d = decode(text);
        assert_eq!(d.panic_text, "panic(cpu 0): x @IOGPUMemory.cpp:550");
    }

    #[test]
    fn truncated_json_falls_back_to_unescaped_raw_text() {
        let cut = &IPS[..IPS.len() - 2];
        let d = decode(cut);
        assert_eq!(d.layout, ReportLayout::IpsJsonBroken);
        assert!(d
            .panic_text
            .contains("\"completeMemory() prepare count underflow\" @IOGPUMemory.cpp:550"));
        assert!(d.panic_text.contains("/RELEASE_ARM64_T8132"));
        assert_eq!(d.bug_type(), Some("210"));
    }

    #[test]
    fn crash_report_is_not_a_kernel_panic() {
        let d = decode("{\"bug_type\":\"309\",\"name\":\"Python\"}\n{\"procName\":\"Python\"}");
        assert!(!d.is_kernel_panic());
        assert!(d.panic_text.is_empty());
        let numeric = decode("{\"bug_type\":210}\n{\"panicString\":\"panic(cpu 1): x\"}");
        assert!(numeric.is_kernel_panic());
    }

    #[test]
    fn text_layout_normalizes_crlf() {
        let d = decode("panic(cpu 1): a\r\nDebugger message: panic\r\n");
        assert_eq!(d.layout, ReportLayout::PanicText);
        assert_eq!(d.panic_text, "panic(cpu 1): a\nDebugger message: panic\n");
    }
}
