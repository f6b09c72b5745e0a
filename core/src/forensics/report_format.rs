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

use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, Visitor};
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
#[derive(Debug, Clone, Default)]
pub struct IpsHeader {
    /// `"210"` for kernel panics, `"309"` for app crashes, and so on.
    pub bug_type: Option<String>,
    /// `2025-07-04 08:44:14.00 -0500`.
    pub timestamp: Option<String>,
    /// `macOS 15.5 (24F74)`.
    pub os_version: Option<String>,
}

/// The `.ips` body fields we use.
#[derive(Debug, Clone, Default)]
pub struct IpsBody {
    pub panic_string: Option<String>,
    pub macos_panic_string: Option<String>,
    /// `2025-07-04 08:44:14.97 -0500`.
    pub date: Option<String>,
    /// `Darwin Kernel Version 24.5.0: ...`.
    pub kernel: Option<String>,
    /// `macOS 15.5 (24F74)`.
    pub build: Option<String>,
    /// `Mac14,9`.
    pub product: Option<String>,
}

/// Any top-level `.ips` object (header or body), reduced to the fields we
/// use. A field of an unexpected type reads as absent rather than failing.
#[derive(Debug, Default, Deserialize)]
struct IpsObject {
    #[serde(default, deserialize_with = "lenient_string")]
    bug_type: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    timestamp: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    os_version: Option<String>,
    #[serde(default, rename = "panicString", deserialize_with = "lenient_string")]
    panic_string: Option<String>,
    #[serde(
        default,
        rename = "macOSPanicString",
        deserialize_with = "lenient_string"
    )]
    macos_panic_string: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    date: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    kernel: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    build: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    product: Option<String>,
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
    // Header lines: a complete JSON object on one line (it may repeat).
    let mut rest = trimmed;
    while rest.starts_with('{') {
        let (line, after) = rest.split_once('\n').unwrap_or((rest, ""));
        match serde_json::from_str::<IpsObject>(line) {
            Ok(object) => {
                absorb(object, &mut header, &mut body);
                rest = after.trim_start();
            }
            // Not complete on one line: the (pretty-printed) body starts here.
            Err(_) => break,
        }
    }

    // The body: read field by field, keeping what was read even when the
    // JSON breaks later, and stopping once the panic text is in hand (the
    // stackshot and image lists after it are not needed).
    let mut broken = false;
    if !rest.is_empty() {
        let mut object = IpsObject::default();
        let outcome = FieldCapture { into: &mut object }
            .deserialize(&mut serde_json::Deserializer::from_str(rest));
        match outcome {
            Ok(()) => {}
            Err(e) if e.to_string().starts_with(STOP_AFTER_PANIC_TEXT) => {}
            Err(_) => broken = true,
        }
        if !object.has_panic_text() && object.has_body_fields() && body.is_none() {
            // Broken before (or inside) the panic text: keep the fields
            // read so far; the panic text comes from the raw-text fallback.
            body = Some(object.into_body());
        } else {
            absorb(object, &mut header, &mut body);
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
        Some(panic_text) => DecodedReport {
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
            panic_text: normalize_line_endings(&undo_json_escapes(broken_panic_text(rest))),
        },
    }
}

/// The part of a broken body worth scanning as text: from the value of its
/// `panicString` key when the key survived (so the header lines and the
/// fields before it do not pose as the panic message), else the whole body.
fn broken_panic_text(body: &str) -> &str {
    let Some(key) = body.find("\"panicString\"") else {
        return body;
    };
    let after_key = &body[key + "\"panicString\"".len()..];
    let value = after_key
        .trim_start()
        .strip_prefix(':')
        .map(str::trim_start)
        .and_then(|v| v.strip_prefix('"'));
    value.unwrap_or(body)
}

/// Files a complete top-level object as the body (it has a panic text) or
/// the header (it has a `bug_type`); the first of each wins.
fn absorb(object: IpsObject, header: &mut Option<IpsHeader>, body: &mut Option<IpsBody>) {
    if object.has_panic_text() {
        if body.is_none() {
            *body = Some(object.into_body());
        }
    } else if header.is_none() && object.bug_type.is_some() {
        *header = Some(object.into_header());
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

impl IpsObject {
    fn has_panic_text(&self) -> bool {
        self.panic_string.is_some() || self.macos_panic_string.is_some()
    }

    fn has_body_fields(&self) -> bool {
        self.date.is_some()
            || self.kernel.is_some()
            || self.build.is_some()
            || self.product.is_some()
    }

    fn into_body(self) -> IpsBody {
        IpsBody {
            panic_string: self.panic_string,
            macos_panic_string: self.macos_panic_string,
            date: self.date,
            kernel: self.kernel,
            build: self.build,
            product: self.product,
        }
    }

    fn into_header(self) -> IpsHeader {
        IpsHeader {
            bug_type: self.bug_type,
            timestamp: self.timestamp,
            os_version: self.os_version,
        }
    }
}

/// The error message that ends a body read on purpose.
const STOP_AFTER_PANIC_TEXT: &str = "metal-guard: panic text read";

/// Reads a JSON object into an [`IpsObject`] one field at a time, so every
/// field read before a parse error is kept, and stops (with
/// [`STOP_AFTER_PANIC_TEXT`]) once a non-empty `panicString` is read.
struct FieldCapture<'a> {
    into: &'a mut IpsObject,
}

impl<'de> DeserializeSeed<'de> for FieldCapture<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldCapture<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            let slot = match key.as_str() {
                "bug_type" => &mut self.into.bug_type,
                "timestamp" => &mut self.into.timestamp,
                "os_version" => &mut self.into.os_version,
                "panicString" => &mut self.into.panic_string,
                "macOSPanicString" => &mut self.into.macos_panic_string,
                "date" => &mut self.into.date,
                "kernel" => &mut self.into.kernel,
                "build" => &mut self.into.build,
                "product" => &mut self.into.product,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = map.next_value::<LenientString>()?.0;
            if key == "panicString" && slot.as_deref().is_some_and(|t| !t.trim().is_empty()) {
                return Err(A::Error::custom(STOP_AFTER_PANIC_TEXT));
            }
        }
        Ok(())
    }
}

/// [`lenient_string`] as a type, for field-by-field reads.
struct LenientString(Option<String>);

impl<'de> Deserialize<'de> for LenientString {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        lenient_string(de).map(LenientString)
    }
}

/// A string, or a number written as one (Apple writes `bug_type` as a
/// string; some tools write a number); anything else reads as absent.
fn lenient_string<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
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
        // The text starts at the panic string, not at the header line.
        assert!(d.panic_text.starts_with("panic(cpu 8"), "{}", d.panic_text);
        assert!(!d.panic_text.contains("bug_type"));
        assert_eq!(d.bug_type(), Some("210"));
    }

    #[test]
    fn body_fields_survive_damage_after_the_panic_text() {
        let text = "{\"bug_type\":\"210\"}\n{\n  \"product\" : \"Mac16,5\",\n  \"kernel\" : \"Darwin Kernel Version 25.4.0\",\n  \"panicString\" : \"panic(cpu 8 caller 0x1): \\\"completeMemory() prepare count underflow\\\" @IOGPUMemory.cpp:550\\n\",\n  \"otherString\" : \"** Stackshot Succ";
        let d = decode(text);
        assert_eq!(d.layout, ReportLayout::IpsJson);
        let body = d.body.unwrap();
        assert_eq!(body.product.as_deref(), Some("Mac16,5"));
        assert!(d.panic_text.contains("@IOGPUMemory.cpp:550"));
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
