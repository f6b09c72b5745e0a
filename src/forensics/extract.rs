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
            field_value(text, "Date/Time:")
                .as_deref()
                .and_then(parse_apple_timestamp)
        })
        .or_else(|| calendar_time(text))
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
        .or_else(|| field_value(text, "macOS version:"))
        .or_else(|| field_value(text, "OS version:"))
        .or_else(|| field_value(text, "Mac OS version:"))
        .filter(|b| is_build_number(b));

    let kernel_version = body
        .and_then(|b| b.kernel.clone())
        .or_else(|| field_value(text, "Kernel version:"))
        .filter(|k| !k.is_empty());

    let machine = body
        .and_then(|b| b.product.clone())
        .or_else(|| field_value(text, "System model name:"))
        .or_else(|| field_value(text, "Hardware Model:"))
        .or_else(|| kernel_version.as_deref().and_then(soc_from_kernel))
        .filter(|m| !m.is_empty());

    let message = panic_message(text);
    let source_line = message
        .as_deref()
        .and_then(source_location)
        .and_then(|loc| loc.display());
    let (process, pid) = panicked_process(text);

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
fn calendar_time(text: &str) -> Option<OffsetDateTime> {
    let value = field_value(text, "Calendar:")?;
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

/// The value after `key` on a line that starts with it (leading whitespace
/// allowed), or on the next non-empty line when the key ends its line.
fn field_value(text: &str, key: &str) -> Option<String> {
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim_start().strip_prefix(key) else {
            continue;
        };
        let rest = rest.trim();
        if !rest.is_empty() {
            return Some(rest.to_string());
        }
        return lines
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_string());
    }
    None
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
fn panicked_process(text: &str) -> (Option<String>, Option<u32>) {
    if let Some(line) = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("Panicked task"))
    {
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
    let bsd = field_value(text, "BSD process name corresponding to current thread:");
    (bsd.filter(|n| !n.contains(' ')), None)
}

#[cfg(test)]
mod tests {
    use super::super::report_format::decode;
    use super::*;

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
