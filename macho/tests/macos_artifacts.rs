//! The checker on the real macOS artifacts, cross-built for
//! `aarch64-apple-darwin` (see `docs/macos.md`).
//!
//! `.ci/run` builds them once and sets `METALGUARD_MACOS_ARTIFACTS` to the
//! output folder. Without the variable, the test looks in the workspace's
//! `target/aarch64-apple-darwin/release/`; if the files are not there it
//! prints a SKIP line with the commands that install the toolchain and build
//! them. When `llvm-objdump` is installed, its reading of the binds is the
//! second opinion on ours.

use metal_guard_macho::check::{check_dylib, check_executable, DylibExpectations};
use metal_guard_macho::{self as macho, BindSource, LibraryOrdinal, MachO};
use std::path::{Path, PathBuf};
use std::process::Command;

const SETUP: &str = "rustup target add aarch64-apple-darwin && pip install ziglang && cargo install cargo-zigbuild && cargo zigbuild --release --target aarch64-apple-darwin";

fn artifacts_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("METALGUARD_MACOS_ARTIFACTS") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("libmetal_guard_inject.dylib").is_file(),
            "METALGUARD_MACOS_ARTIFACTS={} has no libmetal_guard_inject.dylib; run: {SETUP}",
            dir.display()
        );
        return Some(dir);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/aarch64-apple-darwin/release");
    if dir.join("libmetal_guard_inject.dylib").is_file() {
        Some(dir)
    } else {
        println!(
            "SKIP macOS artifact checks: no cross-built files in {}; to run them: {SETUP}",
            dir.display()
        );
        None
    }
}

#[test]
fn the_injected_dylib_passes_every_check() {
    let Some(dir) = artifacts_dir() else { return };
    let data = std::fs::read(dir.join("libmetal_guard_inject.dylib")).unwrap();
    match check_dylib(&data, &DylibExpectations::metal_guard_inject()) {
        Ok(summary) => println!("ok: {}", summary.description),
        Err(problems) => panic!("libmetal_guard_inject.dylib: {problems:#?}"),
    }
}

#[test]
fn the_executables_pass_every_check() {
    let Some(dir) = artifacts_dir() else { return };
    let mut checked = 0;
    for name in ["metal-guard", "mlx-safe-python"] {
        let path = dir.join(name);
        if !path.is_file() {
            // mlx-safe-python is required once the workspace defines it.
            let source =
                Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../src/bin/{name}.rs"));
            assert!(
                name != "metal-guard" && !source.exists(),
                "{} is missing; run: {SETUP}",
                path.display()
            );
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        if let Err(problems) = check_executable(&data) {
            panic!("{name}: {problems:#?}");
        }
        checked += 1;
    }
    assert!(checked >= 1);
}

#[test]
fn breaking_the_real_dylib_is_noticed() {
    let Some(dir) = artifacts_dir() else { return };
    let good = std::fs::read(dir.join("libmetal_guard_inject.dylib")).unwrap();
    let image = MachO::parse(&good).unwrap();
    let expect = DylibExpectations::metal_guard_inject();

    // One byte of code changed after linking: the signature no longer matches.
    let text = image.section("__TEXT", "__text").unwrap().clone();
    let mut tampered = good.clone();
    tampered[text.file_offset as usize + 64] ^= 0x01;
    let problems = check_dylib(&tampered, &expect).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.0.contains("does not match the file")),
        "{problems:#?}"
    );

    // The interpose section renamed: dyld would no longer redirect Metal.
    let mut renamed = good.clone();
    let at = find(&renamed[..0x4000], b"__interpose\0").expect("section name in load commands");
    renamed[at..at + 11].copy_from_slice(b"__interpos_");
    let problems = check_dylib(&renamed, &expect).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.0.contains("no __DATA,__interpose")),
        "{problems:#?}"
    );

    // The CPU type changed to x86_64.
    let mut x86 = good.clone();
    x86[4..8].copy_from_slice(&macho::CPU_TYPE_X86_64.to_le_bytes());
    let problems = check_dylib(&x86, &expect).unwrap_err();
    assert!(
        problems[0].0.contains("wrong architecture"),
        "{problems:#?}"
    );
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Our bind reader agrees with llvm-objdump on every (address, symbol) pair.
#[test]
fn binds_agree_with_llvm_objdump() {
    let Some(dir) = artifacts_dir() else { return };
    let path = dir.join("libmetal_guard_inject.dylib");
    let output = match Command::new("llvm-objdump")
        .args(["--macho", "--bind", "--weak-bind", "--lazy-bind"])
        .arg(&path)
        .output()
    {
        Ok(o) if o.status.success() => o,
        _ => {
            println!("SKIP second opinion: llvm-objdump is not installed (apt-get install llvm)");
            return;
        }
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let mut theirs: Vec<(u64, String)> = text
        .lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let addr = cols.iter().find_map(|c| {
                c.strip_prefix("0x")
                    .and_then(|h| u64::from_str_radix(h, 16).ok())
            })?;
            // The symbol is the last column, before an optional "(weak_import)".
            let sym = cols.iter().rev().find(|c| !c.starts_with('('))?;
            Some((addr, sym.to_string()))
        })
        .collect();
    let data = std::fs::read(&path).unwrap();
    let image = MachO::parse(&data).unwrap();
    if image.chained_fixups.is_some() {
        println!("SKIP second opinion: llvm-objdump 14 does not print chained-fixup binds");
        return;
    }
    let mut ours: Vec<(u64, String)> = image
        .binds()
        .unwrap()
        .into_iter()
        .map(|b| (b.address, b.symbol))
        .collect();
    theirs.sort();
    theirs.dedup();
    ours.sort();
    ours.dedup();
    assert!(!ours.is_empty());
    assert_eq!(ours, theirs);
    let metal_weak: Vec<_> = image
        .binds()
        .unwrap()
        .into_iter()
        .filter(|b| b.source != BindSource::WeakBind && b.weak_import)
        .map(|b| {
            (
                b.symbol,
                image
                    .dylib_for_ordinal(b.library)
                    .map(|d| d.install_name.clone()),
            )
        })
        .collect();
    assert!(metal_weak.iter().all(|(_, lib)| lib
        .as_deref()
        .is_some_and(|l| l.contains("Metal.framework"))));
    assert!(image
        .binds()
        .unwrap()
        .iter()
        .all(|b| b.library != LibraryOrdinal::FlatLookup));
}

/// Our export-trie walk agrees with llvm-objdump on every (offset, name) pair.
#[test]
fn exports_agree_with_llvm_objdump() {
    let Some(dir) = artifacts_dir() else { return };
    let path = dir.join("libmetal_guard_inject.dylib");
    let output = match Command::new("llvm-objdump")
        .args(["--macho", "--exports-trie"])
        .arg(&path)
        .output()
    {
        Ok(o) if o.status.success() => o,
        _ => {
            println!("SKIP second opinion: llvm-objdump is not installed (apt-get install llvm)");
            return;
        }
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let mut theirs: Vec<(u64, String)> = text
        .lines()
        .filter_map(|line| {
            let mut cols = line.split_whitespace();
            let addr = u64::from_str_radix(cols.next()?.strip_prefix("0x")?, 16).ok()?;
            Some((addr, cols.next()?.to_string()))
        })
        .collect();
    let data = std::fs::read(&path).unwrap();
    let mut ours: Vec<(u64, String)> = MachO::parse(&data)
        .unwrap()
        .exports()
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.target {
            macho::ExportTarget::Address(a)
            | macho::ExportTarget::ThreadLocal(a)
            | macho::ExportTarget::Absolute(a) => Some((a, e.name)),
            _ => None,
        })
        .collect();
    theirs.sort();
    ours.sort();
    assert!(ours.iter().any(|(_, n)| n == "_metal_guard_inject_version"));
    assert_eq!(ours, theirs);
}

/// MLX's own `libmlx.dylib` (from the `mlx-metal` wheel; `.ci/run` downloads a
/// pinned version once per machine and sets `METALGUARD_MLX_DYLIB`): a file
/// made by Apple's linker, with chained fixups. It must still import both
/// functions we interpose from Metal through the two-level namespace, or
/// `__interpose` would no longer see MLX's device creation.
#[test]
fn mlx_binds_the_functions_we_interpose() {
    let Some(path) = std::env::var_os("METALGUARD_MLX_DYLIB") else {
        println!(
            "SKIP libmlx.dylib checks: METALGUARD_MLX_DYLIB is not set; to run them: python3 -m pip download --no-deps --only-binary=:all: --platform macosx_14_0_arm64 --python-version 3.12 mlx-metal==0.32.4, unzip mlx/lib/libmlx.dylib and point the variable at it"
        );
        return;
    };
    let data = std::fs::read(&path).unwrap();
    let image = MachO::parse(macho::arm64_image(&data).unwrap()).unwrap();
    assert!(
        image.chained_fixups.is_some(),
        "expected an Apple-linked file with chained fixups"
    );
    assert!(image.is_two_level());
    let binds = image.binds().unwrap();
    assert!(binds.len() > 1000, "only {} binds read", binds.len());
    assert!(binds
        .iter()
        .all(|b| b.library != LibraryOrdinal::FlatLookup));
    for symbol in ["_MTLCreateSystemDefaultDevice", "_MTLCopyAllDevices"] {
        let b = binds
            .iter()
            .find(|b| b.symbol == symbol)
            .unwrap_or_else(|| panic!("libmlx.dylib no longer imports {symbol}"));
        let lib = image
            .dylib_for_ordinal(b.library)
            .map(|d| d.install_name.as_str());
        assert_eq!(
            lib,
            Some("/System/Library/Frameworks/Metal.framework/Versions/A/Metal"),
            "{symbol}"
        );
    }
    // The signature the reference notes describe: ad hoc, linker-signed, no team.
    let sig = image.code_signature().unwrap().unwrap();
    let cd = sig.primary().unwrap();
    assert!(
        cd.is_adhoc() && cd.is_linker_signed() && cd.team_id.is_none(),
        "{}",
        cd.describe_flags()
    );
    assert!(
        matches!(cd.hashes, macho::HashCheck::Match { .. }),
        "{:?}",
        cd.hashes
    );
}
