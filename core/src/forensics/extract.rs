//! The facts a panic report carries, taken from whatever is present: time,
//! OS build, kernel version, machine, IOGPUFamily version, the panicked
//! process and pid, and the `file.cpp:line` of the panic.

use super::report_format::DecodedReport;
use super::signature::{
    collapse_whitespace, panic_message, scan_window, source_location, truncate_chars,
};
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// Everything extracted from one report (any field may be missing).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportFacts {
    pub time: Option<OffsetDateTime>,
    pub os_build: Option<String>,
    pub kernel_version: Option<String>,
    pub machine: Option<String>,
    pub iogpu_family: Option<String>,
    pub process: Option<String>,
    pub pid: Option<u32>,
    pub source_line: Option<String>,
    pub panic_line: Option<String>,
}

/// Extracts the facts. `file_name` supplies a `YYYY-MM-DD-HHMMSS` time and
/// `mtime` the last-resort time when the report itself carries none.
pub fn extract(
    decoded: &DecodedReport,
    file_name: &str,
    mtime: Option<OffsetDateTime>,
) -> ReportFacts {
    let text = scan_window(&decoded.panic_text);
    let fields = TextFields::collect(text);
    let header = decoded.header.as_ref();
    let body = decoded.body.as_ref();

    let time = header
        .and_then(|h| h.timestamp.as_deref())
        .and_then(parse_apple_timestamp)
        .or_else(|| {
            body.and_then(|b| b.date.as_deref())
                .and_then(parse_apple_timestamp)
        })
        .or_else(|| {
            fields
                .get("Date/Time:")
                .as_deref()
                .and_then(parse_apple_timestamp)
        })
        .or_else(|| calendar_time(&fields))
        .or_else(|| file_name_time(file_name))
        .or(mtime)
        .map(|t| t.to_offset(UtcOffset::UTC));

    let os_build = header
        .and_then(|h| h.os_version.as_deref())
        .and_then(build_in_parentheses)
        .or_else(|| {
            body.and_then(|b| b.build.as_deref())
                .and_then(build_in_parentheses)
        })
        .or_else(|| fields.get("macOS version:"))
        .or_else(|| fields.get("OS version:"))
        .or_else(|| fields.get("Mac OS version:"))
        .filter(|b| is_build_number(b));

    let kernel_version = body
        .and_then(|b| b.kernel.clone())
        .or_else(|| fields.get("Kernel version:"))
        .filter(|k| !k.is_empty());

    let machine = body
        .and_then(|b| b.product.clone())
        .filter(|p| is_model_identifier(p))
        .or_else(|| fields.get("System model name:"))
        .or_else(|| fields.get("Hardware Model:"))
        .or_else(|| kernel_version.as_deref().and_then(soc_from_kernel))
        .filter(|m| !m.is_empty());

    let message = panic_message(text);
    let source_line = message
        .as_deref()
        .and_then(source_location)
        .and_then(|loc| loc.display());
    let (process, pid) = panicked_process(&fields);

    ReportFacts {
        time,
        os_build,
        kernel_version,
        machine,
        iogpu_family: iogpu_family_version(text),
        process,
        pid,
        source_line,
        panic_line: message.or_else(|| first_line(text)),
    }
}

/// The first non-empty line, for panic texts without a `panic(` line
/// (`iBoot Panic: ...`, `Attempting to forcibly halt cpu 1`).
fn first_line(text: &str) -> Option<String> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    Some(truncate_chars(&collapse_whitespace(line), 300))
}

/// `2025-07-04 08:44:14.00 -0500` (the `.ips` header and body, `Date/Time:`).
pub fn parse_apple_timestamp(value: &str) -> Option<OffsetDateTime> {
    let with_offset = format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second][optional [.[subsecond]]] [offset_hour sign:mandatory][offset_minute]"
    );
    OffsetDateTime::parse(value.trim(), with_offset).ok()
}

/// `Calendar: 0x69b7656c 0x0001b85b`: the wall clock at the panic, in Unix
/// seconds (hex). Zero or implausible values are ignored.
fn calendar_time(fields: &TextFields<'_>) -> Option<OffsetDateTime> {
    let value = fields.get("Calendar:")?;
    let hex = value.split_whitespace().next()?.strip_prefix("0x")?;
    let secs = i64::from_str_radix(hex, 16).ok()?;
    // 2010-01-01 .. 2100-01-01: anything else is a damaged field.
    if !(1_262_304_000..4_102_444_800).contains(&secs) {
        return None;
    }
    OffsetDateTime::from_unix_timestamp(secs).ok()
}

/// The first `YYYY-MM-DD-HHMMSS` in a file name (Apple names reports
/// `panic-full-2026-11-25-101010.000.ips`, `Kernel-2019-...panic`). The name
/// is in the Mac's local time; we apply this machine's offset at that time.
pub fn file_name_time(name: &str) -> Option<OffsetDateTime> {
    let bytes = name.as_bytes();
    let shape = b"dddd-dd-dd-dddddd";
    let fits = |window: &[u8]| {
        window.iter().zip(shape.iter()).all(|(c, s)| {
            if *s == b'd' {
                c.is_ascii_digit()
            } else {
                c == s
            }
        })
    };
    let start = (0..bytes.len().checked_sub(shape.len() - 1)?)
        .find(|&i| fits(&bytes[i..i + shape.len()]))?;
    let stamp = &name[start..start + shape.len()];
    let naive = PrimitiveDateTime::parse(
        stamp,
        format_description!("[year]-[month]-[day]-[hour][minute][second]"),
    )
    .ok()?;
    let as_utc = naive.assume_utc();
    let offset = local_offset_at(as_utc.unix_timestamp()).unwrap_or(UtcOffset::UTC);
    Some(naive.assume_offset(offset))
}

/// This machine's UTC offset at `unix_secs`, from the C library's time zone
/// database (`localtime_r`, which is thread-safe).
fn local_offset_at(unix_secs: i64) -> Option<UtcOffset> {
    // time_t is i64 on every 64-bit target but narrower on some 32-bit ones.
    #[allow(clippy::useless_conversion)]
    let t: libc::time_t = unix_secs.try_into().ok()?;
    // SAFETY: `tm` is a plain C struct for which all-zero bytes is a valid
    // value; `localtime_r` writes only into the `tm` we pass and reads only
    // `t`; both live on this stack frame for the duration of the call.
    let gmtoff = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return None;
        }
        tm.tm_gmtoff
    };
    UtcOffset::from_whole_seconds(i32::try_from(gmtoff).ok()?).ok()
}

/// `macOS 15.5 (24F74)` -> `24F74`; a bare build passes through.
fn build_in_parentheses(value: &str) -> Option<String> {
    let value = value.trim();
    match (value.rfind('('), value.rfind(')')) {
        (Some(open), Some(close)) if open < close => {
            Some(value[open + 1..close].trim().to_string())
        }
        _ => Some(value.to_string()),
    }
}

/// A macOS build number looks like `25F84` or `24G517a`.
fn is_build_number(value: &str) -> bool {
    let v = value.trim();
    !v.is_empty()
        && v.len() <= 12
        && v.starts_with(|c: char| c.is_ascii_digit())
        && v.chars().all(|c| c.is_ascii_alphanumeric())
        && v.chars().any(|c| c.is_ascii_alphabetic())
}

/// `Mac14,9`, `MacBookPro18,2`: letters, digits, a comma, digits. Redacted
/// values (`MacXX,X`) are not model identifiers.
fn is_model_identifier(value: &str) -> bool {
    let Some((name, minor)) = value.split_once(',') else {
        return false;
    };
    let letters = name.trim_end_matches(|c: char| c.is_ascii_digit());
    let major = &name[letters.len()..];
    !letters.is_empty()
        && letters.chars().all(|c| c.is_ascii_alphabetic())
        && !major.is_empty()
        && !minor.is_empty()
        && minor.chars().all(|c| c.is_ascii_digit())
}

/// `...RELEASE_ARM64_T6041` -> `T6041`; `RELEASE_X86_64` -> `x86_64`.
fn soc_from_kernel(kernel: &str) -> Option<String> {
    if let Some(at) = kernel.find("RELEASE_ARM64_") {
        let soc: String = kernel[at + "RELEASE_ARM64_".len()..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        return (!soc.is_empty()).then_some(soc);
    }
    kernel
        .contains("RELEASE_X86_64")
        .then(|| "x86_64".to_string())
}

/// The `Key: value` lines a panic text carries, found in one pass.
const FIELD_KEYS: [&str; 9] = [
    "Date/Time:",
    "Calendar:",
    "macOS version:",
    "OS version:",
    "Mac OS version:",
    "Kernel version:",
    "System model name:",
    "Hardware Model:",
    "BSD process name corresponding to current thread:",
];

/// The first bytes of [`FIELD_KEYS`] and of `Panicked task`: a line that
/// starts with anything else is skipped at once.
const KEY_FIRST_BYTES: &[u8] = b"DCmOMKSHBP";

/// The first value of each of [`FIELD_KEYS`], and the first `Panicked task`
/// line, collected in a single pass over the text.
struct TextFields<'a> {
    values: [Option<&'a str>; FIELD_KEYS.len()],
    panicked_task: Option<&'a str>,
}

impl<'a> TextFields<'a> {
    /// A value sits after its key on the key's line (leading whitespace
    /// allowed), or on the next non-empty line when the key ends its line.
    fn collect(text: &'a str) -> TextFields<'a> {
        let mut fields = TextFields {
            values: [None; FIELD_KEYS.len()],
            panicked_task: None,
        };
        let mut waiting_for_next_line: Vec<usize> = Vec::new();
        for line in text.lines() {
            let trimmed = line.trim();
            if trimmed.is_empty() {
                continue;
            }
            // A key with nothing after it takes the next line, unless that
            // line is another key (the value was simply missing).
            if !waiting_for_next_line.is_empty() {
                let is_key_line = FIELD_KEYS.iter().any(|k| trimmed.starts_with(k));
                for index in waiting_for_next_line.drain(..) {
                    if !is_key_line {
                        fields.values[index] = Some(trimmed);
                    }
                }
            }
            // Most lines (backtrace frames, the kext list) start with a
            // character no key starts with.
            let first = trimmed.as_bytes()[0];
            if !KEY_FIRST_BYTES.contains(&first) {
                continue;
            }
            if fields.panicked_task.is_none() && trimmed.starts_with("Panicked task") {
                fields.panicked_task = Some(trimmed);
                continue;
            }
            for (index, key) in FIELD_KEYS.iter().enumerate() {
                if fields.values[index].is_some() {
                    continue;
                }
                if let Some(rest) = trimmed.strip_prefix(key) {
                    let rest = rest.trim();
                    if rest.is_empty() {
                        waiting_for_next_line.push(index);
                    } else {
                        fields.values[index] = Some(rest);
                    }
                    break;
                }
            }
        }
        fields
    }

    fn get(&self, key: &str) -> Option<String> {
        let index = FIELD_KEYS.iter().position(|k| *k == key)?;
        self.values[index].map(str::to_string)
    }
}

/// The IOGPUFamily version, wherever the kext is named:
/// `com.apple.iokit.IOGPUFamily(130.13)[UUID]` or `com.apple.iokit.IOGPUFamily\t129.3.2`.
fn iogpu_family_version(text: &str) -> Option<String> {
    const KEXT: &str = "com.apple.iokit.IOGPUFamily";
    for (at, _) in text.match_indices(KEXT) {
        let rest = &text[at + KEXT.len()..];
        let rest = rest
            .strip_prefix('(')
            .unwrap_or_else(|| rest.trim_start_matches([' ', '\t']));
        let version: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let version = version.trim_end_matches('.');
        if version.starts_with(|c: char| c.is_ascii_digit()) {
            return Some(version.to_string());
        }
    }
    None
}

/// The panicked process and pid from `Panicked task 0x...: ... pid 50218: Python`,
/// `Panicked task: python3 — ...`, or `BSD process name corresponding to current thread:`.
fn panicked_process(fields: &TextFields<'_>) -> (Option<String>, Option<u32>) {
    if let Some(line) = fields.panicked_task {
        if let Some(at) = line.find("pid ") {
            let after = &line[at + 4..];
            let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
            let pid = digits.parse().ok();
            let name = after[digits.len()..]
                .trim_start_matches(':')
                .trim()
                .to_string();
            return ((!name.is_empty()).then_some(name), pid);
        }
        if let Some(rest) = line.strip_prefix("Panicked task:") {
            let name = rest.split_whitespace().next().unwrap_or("");
            if !name.is_empty() && !name.starts_with("0x") && name != "..." {
                return (Some(name.trim_end_matches(',').to_string()), None);
            }
        }
    }
    let bsd = fields.get("BSD process name corresponding to current thread:");
    (bsd.filter(|n| !n.contains(' ')), None)
}

#[cfg(test)]
mod tests {
    use super::super::report_format::decode;
    use super::*;

    #[test]
    fn model_identifiers() {
        for yes in ["Mac14,9", "MacBookPro18,2", "Mac16,5"] {
            assert!(is_model_identifier(yes), "{yes}");
        }
        for no in ["MacXX,X", "Mac14", ",9", "Mac,9", "Mac14,", "Mac14,9a"] {
            assert!(!is_model_identifier(no), "{no}");
        }
    }

    #[test]
    fn quick_filter_admits_every_key() {
        for key in FIELD_KEYS.iter().chain(&["Panicked task"]) {
            assert!(KEY_FIRST_BYTES.contains(&key.as_bytes()[0]), "{key}");
        }
    }

    #[test]
    fn text_report_facts() {
        let text = "panic(cpu 9 caller 0xfffffe004b8cd288): \"completeMemory() prepare count underflow\" @IOGPUMemory.cpp:550\nDebugger message: panic\nOS version: 25F84\nKernel version: Darwin Kernel Version 25.5.0: Tue Jun  9 22:28:34 PDT 2026; root:xnu-12377.121.10~1/RELEASE_ARM64_T6041\nEpoch Time:        sec       usec\n  Boot    : 0x69b75d63 0x0001b85b\n  Calendar: 0x69b7656c 0x0000\nPanicked task 0xfffffe1e4174a418: 367197 pages, 25 threads: pid 50218: Python\n  Kernel Extensions in backtrace:\n    com.apple.iokit.IOGPUFamily(130.13)[1CC2AF3D]\n";
        let facts = extract(&decode(text), "x.txt", None);
        assert_eq!(facts.os_build.as_deref(), Some("25F84"));
        assert_eq!(facts.machine.as_deref(), Some("T6041"));
        assert_eq!(facts.iogpu_family.as_deref(), Some("130.13"));
        assert_eq!(facts.process.as_deref(), Some("Python"));
        assert_eq!(facts.pid, Some(50218));
        assert_eq!(facts.source_line.as_deref(), Some("IOGPUMemory.cpp:550"));
        assert_eq!(facts.time.unwrap().unix_timestamp(), 0x69b7656c);
    }

    #[test]
    fn ips_header_timestamp_wins() {
        let text = "{\"bug_type\":\"210\",\"timestamp\":\"2025-07-04 08:44:14.00 -0500\",\"os_version\":\"macOS 15.5 (24F74)\"}\n{\"product\":\"Mac14,9\",\"panicString\":\"panic(cpu 1): x\\nKernel version: Darwin\\n\"}";
        let facts = extract(&decode(text), "panic-full-2020-01-01-000000.ips", None);
        let t = facts.time.unwrap();
        assert_eq!(t.offset(), UtcOffset::UTC);
        assert_eq!((t.hour(), t.minute()), (13, 44));
        assert_eq!(facts.os_build.as_deref(), Some("24F74"));
        assert_eq!(facts.machine.as_deref(), Some("Mac14,9"));
    }

    #[test]
    fn file_name_time_and_abbreviated_process() {
        let t = file_name_time("panic-full-2026-11-25-101010.0002.panic").unwrap();
        assert_eq!(t.year(), 2026);
        assert_eq!(file_name_time("Kernel.panic"), None);
        let facts = extract(
            &decode("panic(cpu 10 caller 0x1): \"x\"\nPanicked task: python3 — 1891705 pages, 85 threads\nKernel ext: com.apple.iokit.IOGPUFamily(130.13)\n"),
            "a.txt",
            None,
        );
        assert_eq!(facts.process.as_deref(), Some("python3"));
        assert_eq!(facts.iogpu_family.as_deref(), Some("130.13"));
        assert_eq!(facts.time, None);
    }

    #[test]
    fn value_on_next_line() {
        let text = "Mac OS version:\n16B2657\n\nKernel version:\nDarwin Kernel Version 16.1.0: root:xnu-3789.21.4~4/RELEASE_X86_64\n";
        let facts = extract(&decode(text), "a", None);
        assert_eq!(facts.os_build.as_deref(), Some("16B2657"));
        assert_eq!(facts.machine.as_deref(), Some("x86_64"));
    }
}
