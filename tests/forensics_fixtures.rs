//! Every real panic report in `../shared/fixtures/panics/` classifies as
//! `labels.tsv` says, and the facts we extract from them are the ones in the
//! text.

use metal_guard_core::forensics::{parse_report, PanicSignature};
use std::path::{Path, PathBuf};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/panics")
}

/// (file name, expected signature or None) for every row of labels.tsv.
fn labels() -> Vec<(String, Option<PanicSignature>)> {
    let tsv =
        std::fs::read_to_string(fixtures_dir().join("labels.tsv")).expect("labels.tsv is readable");
    tsv.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut cols = line.split('\t');
            let file = cols.next().expect("file column").to_string();
            let label = cols.next().expect("expected_signature column");
            let sig = match label {
                "none" => None,
                name => Some(
                    PanicSignature::from_name(name)
                        .unwrap_or_else(|| panic!("unknown label {name}")),
                ),
            };
            (file, sig)
        })
        .collect()
}

fn parse_fixture(name: &str) -> metal_guard_core::forensics::PanicReport {
    let path = fixtures_dir().join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    parse_report(&path, &String::from_utf8_lossy(&bytes), None)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_fixture_classifies_as_labelled() {
    let labels = labels();
    assert!(
        labels.len() >= 30,
        "labels.tsv lists {} files",
        labels.len()
    );
    let mut wrong = Vec::new();
    for (name, expected) in &labels {
        let report = parse_fixture(name);
        if report.signature != *expected {
            wrong.push(format!(
                "{name}: expected {expected:?}, got {:?}",
                report.signature
            ));
        }
    }
    assert!(wrong.is_empty(), "misclassified:\n{}", wrong.join("\n"));
}

#[test]
fn every_fixture_file_is_labelled() {
    let labelled: std::collections::HashSet<String> =
        labels().into_iter().map(|(f, _)| f).collect();
    for entry in std::fs::read_dir(fixtures_dir()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name != "labels.tsv" {
            assert!(labelled.contains(&name), "{name} has no row in labels.tsv");
        }
    }
}

#[test]
fn facts_from_a_full_text_report() {
    let r = parse_fixture("01-iogpu-completememory-550-mlxlm1666-giumazzi.txt");
    assert_eq!(r.os_build.as_deref(), Some("25F84"));
    assert_eq!(r.source_line.as_deref(), Some("IOGPUMemory.cpp:550"));
    assert_eq!(r.machine.as_deref(), Some("T6041"));
    assert!(r
        .kernel_version
        .as_deref()
        .unwrap()
        .starts_with("Darwin Kernel Version 25.5.0"));
}

#[test]
fn facts_from_macos15_report_keep_the_old_line() {
    let r = parse_fixture("20-iogpu-completememory-492-omlx300-lorkoy.txt");
    assert_eq!(r.source_line.as_deref(), Some("IOGPUMemory.cpp:492"));
    assert_eq!(r.os_build.as_deref(), Some("24G517"));
}

#[test]
fn facts_from_excerpts() {
    let r = parse_fixture("14-iogpu-completememory-550-mlx3186-ronm92130.txt");
    assert_eq!((r.process.as_deref(), r.pid), (Some("Python"), Some(50218)));
    assert_eq!(r.iogpu_family.as_deref(), Some("130.13"));

    let r = parse_fixture("15-iogpu-completememory-550-lmstudio2249-bpmosman-excerpt.txt");
    assert_eq!((r.process.as_deref(), r.pid), (Some("node"), Some(15624)));
    assert_eq!(r.iogpu_family.as_deref(), Some("130.15.2"));
    assert_eq!(r.source_line.as_deref(), Some("IOGPUMemory.cpp:550"));

    let r = parse_fixture("24-iogpu-removememoryobject-323-mlx3186-ferraro-excerpt.txt");
    assert_eq!(r.source_line.as_deref(), Some("IOGPUGroupMemory.cpp:323"));

    let r = parse_fixture("09-iogpu-completememory-550-omlx457-aalhaimi.txt");
    assert_eq!(r.iogpu_family.as_deref(), Some("129.3.2"));
    assert_eq!(r.time.unwrap().unix_timestamp(), 0x69c9118a);
}

#[test]
fn facts_from_ips_reports() {
    let r =
        parse_fixture("62-ips-reconstructed-iogpu-pendingmemoryset-219-omlx1265-martinfjant.ips");
    assert_eq!(r.os_build.as_deref(), Some("25E253"));
    assert_eq!(r.source_line.as_deref(), Some("IOGPUGroupMemory.cpp:219"));
    assert!(r
        .kernel_version
        .as_deref()
        .unwrap()
        .contains("/RELEASE_ARM64_T8132"));
    let t = r.time.unwrap();
    assert_eq!((t.year(), u8::from(t.month()), t.day()), (2026, 5, 15));

    let r = parse_fixture("60-ips-verbatim-panic-base-socd-halt-godot106106.ips");
    assert_eq!(r.signature, None);
    assert_eq!(r.os_build.as_deref(), Some("24F74"));
    assert_eq!(r.time.unwrap().unix_timestamp(), 1_751_636_654);
    assert_eq!(r.machine.as_deref(), Some("Mac14,9"));
}
