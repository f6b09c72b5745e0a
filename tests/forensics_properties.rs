//! The parser never panics and always finishes, whatever it is fed: random
//! bytes, real reports cut, spliced and damaged, and adversarial shapes
//! (deep JSON nesting, thousands of `@` or `panic(`), and reformatting that
//! people do (CRLF, indentation) never changes a classification.

use metal_guard_core::forensics::{parse_report, report_format, signature};
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/panics");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "labels.tsv")
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// Parses as the scanner does (lossy UTF-8), exercising every entry point.
fn parse_bytes(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let _ = parse_report(
        &PathBuf::from("panic-full-2026-01-01-000000.panic"),
        &text,
        None,
    );
    let decoded = report_format::decode(&text);
    let _ = signature::classify(&decoded.panic_text);
    let _ = signature::first_backtrace_kext_is_iogpu(&text);
}

/// Runs `parse_bytes` on another thread and fails if it has not finished
/// within a minute: a hang detector, not a speed target (the inputs take
/// milliseconds; bench/ measures speed).
fn parse_finishes(bytes: Vec<u8>) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        parse_bytes(&bytes);
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the parser finished (a panic or a hang is a bug)");
}

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    DeleteRange(usize, usize),
    InsertBytes(usize, Vec<u8>),
    DuplicateRange(usize, usize),
    FlipByte(usize, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 0usize..400).prop_map(|(a, n)| Mutation::DeleteRange(a, n)),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(a, b)| Mutation::InsertBytes(a, b)),
        (any::<usize>(), 0usize..400).prop_map(|(a, n)| Mutation::DuplicateRange(a, n)),
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Mutation::FlipByte(a, b)),
    ]
}

fn apply(mut bytes: Vec<u8>, m: &Mutation) -> Vec<u8> {
    let len = bytes.len().max(1);
    match m {
        Mutation::Truncate(at) => bytes.truncate(at % len),
        Mutation::DeleteRange(at, n) => {
            let start = (at % len).min(bytes.len());
            let end = (start + n).min(bytes.len());
            bytes.drain(start..end);
        }
        Mutation::InsertBytes(at, new) => {
            let at = (at % len).min(bytes.len());
            bytes.splice(at..at, new.iter().copied());
        }
        Mutation::DuplicateRange(at, n) => {
            let start = (at % len).min(bytes.len());
            let end = (start + n).min(bytes.len());
            let copy = bytes[start..end].to_vec();
            bytes.splice(end..end, copy);
        }
        Mutation::FlipByte(at, b) => {
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] ^= b;
            }
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..8192)) {
        parse_bytes(&bytes);
    }

    #[test]
    fn random_text_with_report_words_never_panics(
        words in proptest::collection::vec(prop_oneof![
            Just("panic(cpu 1 caller 0x1): ".to_string()),
            Just("\"completeMemory() prepare count underflow\"".to_string()),
            Just(" @IOGPUMemory.cpp:".to_string()),
            Just("@".to_string()),
            Just("Kernel Extensions in backtrace:\n".to_string()),
            Just("com.apple.iokit.IOGPUFamily(".to_string()),
            Just("Panicked task 0x1: pid ".to_string()),
            Just("Calendar: 0x".to_string()),
            Just("{\"bug_type\":\"210\",\"timestamp\":\"".to_string()),
            Just("\"panicString\":\"".to_string()),
            Just("\\n".to_string()),
            Just("\n".to_string()),
            Just("\r\n".to_string()),
            Just("…".to_string()),
            "[0-9a-fA-F]{1,12}",
            "[ -~]{0,20}",
        ], 0..200)
    ) {
        parse_bytes(words.concat().as_bytes());
    }

    #[test]
    fn mutated_real_reports_never_panic(
        pick in any::<prop::sample::Index>(),
        mutations in proptest::collection::vec(mutation(), 1..6)
    ) {
        let files = fixtures();
        let (_, original) = &files[pick.index(files.len())];
        let mutated = mutations.iter().fold(original.clone(), apply);
        parse_bytes(&mutated);
    }

    #[test]
    fn reformatting_keeps_the_classification(
        pick in any::<prop::sample::Index>(),
        indent in 0usize..6,
        crlf in any::<bool>(),
    ) {
        let files = fixtures();
        let (name, original) = &files[pick.index(files.len())];
        let text = String::from_utf8_lossy(original);
        let before = parse_report(Path::new(name), &text, None).map(|r| r.signature);
        let pad = " ".repeat(indent);
        let eol = if crlf { "\r\n" } else { "\n" };
        let reformatted: String = text.lines().map(|l| format!("{pad}{l}{eol}")).collect();
        let after = parse_report(Path::new(name), &reformatted, None).map(|r| r.signature);
        prop_assert_eq!(before, after, "{}", name);
    }
}

#[test]
fn adversarial_shapes_finish() {
    let mb = 4 * 1024 * 1024;
    let shapes: Vec<Vec<u8>> = vec![
        "[".repeat(mb).into_bytes(),
        "{\"a\":".repeat(mb / 5).into_bytes(),
        "@".repeat(mb).into_bytes(),
        "panic(".repeat(mb / 6).into_bytes(),
        "panic(cpu 0): @ @ @ @ @ @ @ @ @ @ @ @ @\n"
            .repeat(mb / 40)
            .into_bytes(),
        "Kernel Extensions in backtrace:"
            .repeat(mb / 31)
            .into_bytes(),
        "Kernel Extensions in backtrace:\n\n\n\n"
            .repeat(mb / 35)
            .into_bytes(),
        "com.apple.iokit.IOGPUFamily(".repeat(mb / 28).into_bytes(),
        "\\".repeat(mb).into_bytes(),
        format!(
            "{{\"bug_type\":\"210\"}}\n{{\"panicString\":\"{}",
            "\\n".repeat(mb / 2)
        )
        .into_bytes(),
        "2026-01-01-00000".repeat(mb / 16).into_bytes(),
        "\n".repeat(mb).into_bytes(),
        "Panicked task pid ".repeat(mb / 18).into_bytes(),
        vec![0xff; mb],
    ];
    for shape in shapes {
        parse_finishes(shape);
    }
}
