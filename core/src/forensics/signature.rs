//! Which IOGPUFamily driver bug a panic text shows, if any.
//!
//! Evidence is the panic message itself (the quoted string and the
//! `@File.cpp:line` after it) or IOGPUFamily as the first kext under
//! "Kernel Extensions in backtrace". IOGPUFamily in the loaded-kext list is
//! never evidence: every Apple Silicon panic lists it.
//!
//! Matching tolerates text that people reformatted before posting it: panic
//! lines split over several lines, CRLF endings, `...` elisions elsewhere,
//! UUIDs replaced with `XXXX`, a truncated source file name.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The known IOGPUFamily panic signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PanicSignature {
    /// `completeMemory() prepare count underflow` at `IOGPUMemory.cpp`
    /// (line 492 on macOS 15, 550 on macOS 26).
    PrepareCountUnderflow,
    /// `fPendingMemorySet` at `IOGPUGroupMemory.cpp:219`, including the newer
    /// wording `Memory object not found in fMemoryCountedSet or fPendingMemorySet`.
    PendingMemorySet,
    /// `IOGPUGroupMemory::remove_memory_object() memory object not found`.
    RemoveMemoryObject,
    /// `pending memory object unexpectedly found in non pending hash`.
    NonPendingHash,
    /// The IOGPUFamily driver panicked (its source file in the panic message,
    /// or first kext in the backtrace) with a message we do not know yet.
    IogpuOther,
}

impl PanicSignature {
    /// Every signature, most specific first.
    pub const ALL: [PanicSignature; 5] = [
        PanicSignature::PrepareCountUnderflow,
        PanicSignature::PendingMemorySet,
        PanicSignature::RemoveMemoryObject,
        PanicSignature::NonPendingHash,
        PanicSignature::IogpuOther,
    ];

    /// The snake_case name used in JSON, the ledger and `labels.tsv`.
    pub fn as_str(&self) -> &'static str {
        match self {
            PanicSignature::PrepareCountUnderflow => "prepare_count_underflow",
            PanicSignature::PendingMemorySet => "pending_memory_set",
            PanicSignature::RemoveMemoryObject => "remove_memory_object",
            PanicSignature::NonPendingHash => "non_pending_hash",
            PanicSignature::IogpuOther => "iogpu_other",
        }
    }

    /// The inverse of [`PanicSignature::as_str`].
    pub fn from_name(name: &str) -> Option<PanicSignature> {
        PanicSignature::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The driver source file this signature's panic names.
    fn source_file(&self) -> Option<&'static str> {
        match self {
            PanicSignature::PrepareCountUnderflow => Some("IOGPUMemory.cpp"),
            PanicSignature::PendingMemorySet
            | PanicSignature::RemoveMemoryObject
            | PanicSignature::NonPendingHash => Some("IOGPUGroupMemory.cpp"),
            PanicSignature::IogpuOther => None,
        }
    }

    /// The message fragments that identify this signature, compared with all
    /// whitespace removed and lowercased (so split lines still match).
    fn needles(&self) -> &'static [&'static str] {
        match self {
            PanicSignature::PrepareCountUnderflow => &["preparecountunderflow"],
            PanicSignature::PendingMemorySet => &["fpendingmemoryset"],
            PanicSignature::RemoveMemoryObject => &["remove_memory_object", "notfound"],
            PanicSignature::NonPendingHash => &["foundinnonpendinghash"],
            PanicSignature::IogpuOther => &[],
        }
    }
}

impl fmt::Display for PanicSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much of a panic text is searched. The panic message, the header
/// fields, the backtrace kexts and the loaded-kext list all sit well inside
/// the first 512 KiB of even a full report; the rest (stackshots) is ignored.
pub const SCAN_WINDOW_BYTES: usize = 512 * 1024;

/// The part of `text` that is searched: its first [`SCAN_WINDOW_BYTES`]
/// bytes, cut on a character boundary.
pub fn scan_window(text: &str) -> &str {
    if text.len() <= SCAN_WINDOW_BYTES {
        return text;
    }
    let mut cut = SCAN_WINDOW_BYTES;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}

/// Longest panic message we keep (characters after whitespace is collapsed).
const PANIC_MESSAGE_MAX_CHARS: usize = 600;
/// Most lines a panic message may span in reformatted text.
const PANIC_MESSAGE_MAX_LINES: usize = 8;
/// Without a `panic(` line, how much of the start of the text we search.
const HEADLESS_SEARCH_CHARS: usize = 4096;

/// Lines that start the next section of a panic report, ending the message.
const SECTION_STARTS: &[&str] = &[
    "debugger message",
    "memory id",
    "os release type",
    "os version",
    "mac os version",
    "kernel version",
    "panicked task",
    "panicked thread",
    "backtrace",
    "kernel extensions",
    "kernel ext:",
    "com.apple.",
    "fileset",
    "kernelcache",
    "mach_absolute_time",
    "epoch time",
    "core ",
    "compressor info",
    "bsd process name",
    "panic(",
    "x0:",
];

/// The panic message: from `panic(` to the end of the quoted message and its
/// `@File.cpp:line`, joined into one line with whitespace collapsed. Falls
/// back to the first lines of text when there is no `panic(` at all.
pub fn panic_message(text: &str) -> Option<String> {
    let start = text.find("panic(")?;
    let mut lines = text[start..].lines();
    let mut message = String::new();
    if let Some(first) = lines.next() {
        message.push_str(first.trim());
    }
    for line in lines.take(PANIC_MESSAGE_MAX_LINES - 1) {
        let trimmed = line.trim();
        let lower = trimmed.to_ascii_lowercase();
        if trimmed.is_empty() || SECTION_STARTS.iter().any(|s| lower.starts_with(s)) {
            break;
        }
        message.push(' ');
        message.push_str(trimmed);
        if message.len() > PANIC_MESSAGE_MAX_CHARS * 2 {
            break;
        }
    }
    let collapsed = collapse_whitespace(&message);
    Some(truncate_chars(&collapsed, PANIC_MESSAGE_MAX_CHARS))
}

/// A source location named after `@` in a panic message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLocation {
    /// The file's base name as written (possibly truncated in pasted text).
    pub file: String,
    /// The line number, when present.
    pub line: Option<u32>,
}

impl SourceLocation {
    /// `IOGPUMemory.cpp:550`, or the file alone without a line. `None` when
    /// the name was truncated before its extension.
    pub fn display(&self) -> Option<String> {
        if !self.file.contains('.') {
            return None;
        }
        Some(match self.line {
            Some(line) => format!("{}:{line}", self.file),
            None => self.file.clone(),
        })
    }
}

/// The `@path/File.cpp:123` location in a panic message, base name only.
pub fn source_location(message: &str) -> Option<SourceLocation> {
    for (at, _) in message.match_indices('@') {
        let rest = message[at + 1..].trim_start();
        let path: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-' | '+'))
            .collect();
        let file = path.rsplit('/').next().unwrap_or("").to_string();
        // `@0xfffffe...` is an address, not a file.
        if file.is_empty()
            || file.starts_with("0x")
            || !file.starts_with(|c: char| c.is_ascii_alphabetic())
        {
            continue;
        }
        let after = &rest[path.len()..];
        let line = after
            .strip_prefix(':')
            .map(|s| {
                s.chars()
                    .take_while(|c| c.is_ascii_digit())
                    .collect::<String>()
            })
            .and_then(|digits| digits.parse().ok());
        return Some(SourceLocation { file, line });
    }
    None
}

/// Classifies a panic text (the `.panic` text or an `.ips` `panicString`).
pub fn classify(text: &str) -> Option<PanicSignature> {
    let text = scan_window(text);
    let message = panic_message(text);
    let searched: &str = match &message {
        Some(m) => m,
        None => prefix_chars(text, HEADLESS_SEARCH_CHARS),
    };
    let squashed = squash(searched);
    let location = source_location(searched);

    for signature in PanicSignature::ALL {
        let needles = signature.needles();
        if needles.is_empty() || !needles.iter().all(|n| squashed.contains(n)) {
            continue;
        }
        if source_file_consistent(signature, location.as_ref()) {
            return Some(signature);
        }
    }

    // A new message from the driver itself: its own source file after `@`.
    if location
        .as_ref()
        .is_some_and(|loc| loc.file.starts_with("IOGPU"))
    {
        return Some(PanicSignature::IogpuOther);
    }
    if first_backtrace_kext_is_iogpu(text) {
        return Some(PanicSignature::IogpuOther);
    }
    None
}

/// The named source file must be the driver file this signature lives in
/// (or a truncation of it, as in pasted text). No file at all is accepted:
/// excerpts often drop it and the quoted strings are unique to the driver.
fn source_file_consistent(signature: PanicSignature, location: Option<&SourceLocation>) -> bool {
    let (Some(expected), Some(loc)) = (signature.source_file(), location) else {
        return true;
    };
    loc.file == expected || expected.starts_with(loc.file.as_str()) || loc.file.starts_with("IOGPU")
}

/// Whether IOGPUFamily is the first kext listed under "Kernel Extensions in
/// backtrace" (the driver was executing when the kernel panicked).
pub fn first_backtrace_kext_is_iogpu(text: &str) -> bool {
    let text = scan_window(text);
    // "Kernel Extensions in backtrace" (any case of the E), found with the
    // standard library's fast substring search.
    let Some(at) = text.find("xtensions in backtrace") else {
        return false;
    };
    let after_header = &text[at..];
    // The kexts start on the next line (or after the colon on this one).
    let after_colon = match after_header.find(':') {
        Some(colon) if colon < 40 => &after_header[colon + 1..],
        _ => after_header,
    };
    for line in after_colon.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.chars().all(|c| c == '.' || c == '…' || c == ' ') {
            continue;
        }
        return trimmed.starts_with("com.apple.iokit.IOGPUFamily");
    }
    false
}

/// Lowercase with every whitespace character removed.
fn squash(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Runs of whitespace (including newlines) become one space.
pub(crate) fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// At most `max` characters, on a character boundary, with `…` when cut.
pub(crate) fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The first `max` characters of `text` (on a character boundary).
fn prefix_chars(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in PanicSignature::ALL {
            assert_eq!(PanicSignature::from_name(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
    }

    #[test]
    fn both_driver_line_numbers_classify() {
        for line in [492, 550] {
            let text = format!(
                "panic(cpu 7 caller 0xfffffe003a536cf8): \"completeMemory() prepare count underflow\" @IOGPUMemory.cpp:{line}\nDebugger message: panic\n"
            );
            assert_eq!(classify(&text), Some(PanicSignature::PrepareCountUnderflow));
            let loc = source_location(&panic_message(&text).unwrap()).unwrap();
            assert_eq!(loc.display().unwrap(), format!("IOGPUMemory.cpp:{line}"));
        }
    }

    #[test]
    fn split_and_crlf_panic_line_classifies() {
        let text = "panic(cpu 12 caller 0xfffffe004ad1f968):\r\n\"completeMemory() prepare count\r\n underflow\"\r\n @IOGPUMemory.cpp:550\r\n\r\n";
        assert_eq!(classify(text), Some(PanicSignature::PrepareCountUnderflow));
    }

    #[test]
    fn newer_pending_set_wording_classifies() {
        let text = "panic(cpu 3 caller 0xfffffe0012345678): \"Memory object not found in fMemoryCountedSet or fPendingMemorySet\" @IOGPUGroupMemory.cpp:240\n";
        assert_eq!(classify(text), Some(PanicSignature::PendingMemorySet));
    }

    #[test]
    fn string_from_another_source_file_is_not_that_signature() {
        let text = "panic(cpu 0 caller 0x1): \"prepare count underflow\" @SomeOtherDriver.cpp:12\n";
        assert_eq!(classify(text), None);
    }

    #[test]
    fn loaded_kext_list_is_not_evidence() {
        let text = "panic(cpu 3 caller 0xfffffe001b9a9ab0): Kernel data abort. at pc 0x1\nDebugger message: panic\n\ncom.apple.iokit.IOGPUFamily\t35.29\ncom.apple.driver.AppleSPU\t1\n";
        assert_eq!(classify(text), None);
    }

    #[test]
    fn first_kext_in_backtrace_is_evidence() {
        let text = "panic(cpu 1 caller 0x1): some brand new driver message\n\n      Kernel Extensions in backtrace:\r\n         com.apple.iokit.IOGPUFamily(129.3.2)[XXXX]@0x1->0x2\n            dependency: com.apple.iokit.IOSurface(393)\n";
        assert_eq!(classify(text), Some(PanicSignature::IogpuOther));
        let other = "Kernel Extensions in backtrace:\n   net.lundman.spl(1.5.2)[F452]\n   com.apple.iokit.IOGPUFamily(1)\n";
        assert_eq!(classify(other), None);
    }

    #[test]
    fn unknown_message_from_driver_source_file_is_iogpu_other() {
        let text =
            "panic(cpu 2 caller 0x1): \"IOGPUResource: something new\" @IOGPUResource.cpp:77\n";
        assert_eq!(classify(text), Some(PanicSignature::IogpuOther));
    }

    #[test]
    fn address_after_at_is_not_a_file() {
        assert_eq!(source_location("x @0xfffffe004e033650->0x2"), None);
        let loc =
            source_location("\"empty hash\"@/Library/Caches/xnu/osfmk/i386/pmap_internal.h:844")
                .unwrap();
        assert_eq!(loc.display().unwrap(), "pmap_internal.h:844");
        let truncated =
            source_location("\"completeMemory() prepare count underflow\" @IOGPUMe").unwrap();
        assert_eq!(truncated.display(), None);
    }
}
