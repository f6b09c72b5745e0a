//! The launcher's refusal rules on Mach-O files read from disk: crafted
//! images (ad-hoc, hardened, hardened with entitlements, universal) built by
//! the shared test builder, and the real cross-built macOS executables when
//! they are present. The macOS rules are pure functions over the facts, so
//! they run on any host.

#[path = "../../macho/tests/common/mod.rs"]
mod common;

use common::{code_signature, fat, ImageSpec, CPU_TYPE_ARM64, CPU_TYPE_X86_64};
use metal_guard_shim::binary_inspection::inspect_binary;
use metal_guard_shim::injection_rules::{
    injection_blockers, BinaryFacts, BinaryFormat, InjectionBlocker, ALLOW_DYLD_ENV,
    DISABLE_LIBRARY_VALIDATION,
};
use metal_guard_shim::launch_env::Platform;
use std::path::{Path, PathBuf};

const LC_CODE_SIGNATURE: u32 = 0x1d;
const CS_ADHOC_LINKER_SIGNED: u32 = 0x0002_0002;
const CS_RUNTIME: u32 = 0x0001_0000;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn facts(path: &Path) -> BinaryFacts {
    inspect_binary(path).unwrap()
}

fn mac_blockers(path: &Path) -> Vec<InjectionBlocker> {
    let f = facts(path);
    injection_blockers(Platform::MacOs, path, &f)
}

fn executable(flags: u32) -> Vec<u8> {
    ImageSpec {
        signature_flags: flags,
        ..ImageSpec::good_executable()
    }
    .build()
}

/// Replace the image's signature with one that also carries an XML
/// entitlements blob (slot 5), updating `LC_CODE_SIGNATURE`.
fn with_entitlements(image: &[u8], flags: u32, entitlements: &[&str]) -> Vec<u8> {
    let ncmds = u32::from_le_bytes(image[16..20].try_into().unwrap()) as usize;
    let mut at = 32;
    let mut sig_cmd = None;
    for _ in 0..ncmds {
        let cmd = u32::from_le_bytes(image[at..at + 4].try_into().unwrap());
        let size = u32::from_le_bytes(image[at + 4..at + 8].try_into().unwrap()) as usize;
        if cmd == LC_CODE_SIGNATURE {
            sig_cmd = Some(at);
        }
        at += size;
    }
    let sig_cmd = sig_cmd.expect("the crafted image is signed");
    let dataoff = u32::from_le_bytes(image[sig_cmd + 8..sig_cmd + 12].try_into().unwrap()) as usize;

    let code_dir_blob = code_signature(image, dataoff, flags);
    // code_signature() gives a one-entry SuperBlob; keep its CodeDirectory.
    let cd = &code_dir_blob[20..];
    let keys: String = entitlements
        .iter()
        .map(|k| format!("<key>{k}</key><true/>"))
        .collect();
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><plist version=\"1.0\"><dict>{keys}</dict></plist>"
    );
    let mut ents = Vec::new();
    ents.extend_from_slice(&0xfade_7171u32.to_be_bytes());
    ents.extend_from_slice(&((8 + xml.len()) as u32).to_be_bytes());
    ents.extend_from_slice(xml.as_bytes());

    let header = 12 + 2 * 8;
    let total = header + cd.len() + ents.len();
    let mut sb = Vec::new();
    for v in [0xfade_0cc0u32, total as u32, 2] {
        sb.extend_from_slice(&v.to_be_bytes());
    }
    for (slot, offset) in [(0u32, header), (5u32, header + cd.len())] {
        sb.extend_from_slice(&slot.to_be_bytes());
        sb.extend_from_slice(&(offset as u32).to_be_bytes());
    }
    sb.extend_from_slice(cd);
    sb.extend_from_slice(&ents);

    let mut out = image[..dataoff].to_vec();
    out[sig_cmd + 12..sig_cmd + 16].copy_from_slice(&(sb.len() as u32).to_le_bytes());
    out.extend_from_slice(&sb);
    out
}

#[test]
fn an_adhoc_linker_signed_interpreter_keeps_the_variable() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write(tmp.path(), "python3", &executable(CS_ADHOC_LINKER_SIGNED));
    match &facts(&path).format {
        BinaryFormat::MachO(m) => {
            assert_eq!(m.arch, "arm64");
            assert!(!m.has_restrict_segment);
            let sig = m.signature.as_ref().expect("signed");
            assert_eq!(sig.flags, CS_ADHOC_LINKER_SIGNED);
            assert!(sig.flags_text.contains("adhoc"), "{}", sig.flags_text);
        }
        other => panic!("expected Mach-O, got {other:?}"),
    }
    assert_eq!(mac_blockers(&path), vec![]);
}

#[test]
fn a_hardened_interpreter_without_the_entitlement_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write(tmp.path(), "python3", &executable(CS_RUNTIME));
    assert_eq!(
        mac_blockers(&path),
        vec![InjectionBlocker::HardenedRuntimeWithoutDyldEntitlement]
    );
    // The same file on an ELF system is not the loader's business (no rules apply).
    assert!(injection_blockers(Platform::Elf, &path, &facts(&path)).is_empty());
}

#[test]
fn entitlements_are_read_from_the_signature() {
    let tmp = tempfile::tempdir().unwrap();
    let base = executable(CS_RUNTIME);

    let both = with_entitlements(
        &base,
        CS_RUNTIME,
        &[ALLOW_DYLD_ENV, DISABLE_LIBRARY_VALIDATION],
    );
    let path = write(tmp.path(), "both", &both);
    match &facts(&path).format {
        BinaryFormat::MachO(m) => {
            let sig = m.signature.as_ref().unwrap();
            assert!(sig.allows_dyld_environment && sig.disables_library_validation);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(mac_blockers(&path), vec![]);

    let dyld_only = with_entitlements(&base, CS_RUNTIME, &[ALLOW_DYLD_ENV]);
    let path = write(tmp.path(), "dyld-only", &dyld_only);
    assert_eq!(
        mac_blockers(&path),
        vec![InjectionBlocker::LibraryValidation]
    );

    let lv_only = with_entitlements(&base, CS_RUNTIME, &[DISABLE_LIBRARY_VALIDATION]);
    let path = write(tmp.path(), "lv-only", &lv_only);
    assert_eq!(
        mac_blockers(&path),
        vec![InjectionBlocker::HardenedRuntimeWithoutDyldEntitlement]
    );
}

#[test]
fn universal_files_are_judged_by_the_arm64_slice() {
    let tmp = tempfile::tempdir().unwrap();
    let intel_hardened = ImageSpec {
        cputype: CPU_TYPE_X86_64,
        signature_flags: CS_RUNTIME,
        ..ImageSpec::good_executable()
    }
    .build();
    let universal = fat(&[
        (CPU_TYPE_X86_64, intel_hardened.clone()),
        (CPU_TYPE_ARM64, executable(CS_ADHOC_LINKER_SIGNED)),
    ]);
    let path = write(tmp.path(), "python3-universal", &universal);
    if cfg!(all(target_os = "macos", target_arch = "x86_64")) {
        return; // an Intel Mac runs the x86_64 slice
    }
    assert_eq!(mac_blockers(&path), vec![]);
    let hardened_arm = fat(&[
        (CPU_TYPE_X86_64, intel_hardened),
        (CPU_TYPE_ARM64, executable(CS_RUNTIME)),
    ]);
    let path = write(tmp.path(), "python3-universal-hardened", &hardened_arm);
    assert_eq!(
        mac_blockers(&path),
        vec![InjectionBlocker::HardenedRuntimeWithoutDyldEntitlement]
    );
}

#[test]
fn intel_only_programs_are_refused_on_apple_silicon() {
    if cfg!(all(target_os = "macos", target_arch = "x86_64")) {
        return; // an Intel Mac runs them natively
    }
    let tmp = tempfile::tempdir().unwrap();
    let intel = ImageSpec {
        cputype: CPU_TYPE_X86_64,
        ..ImageSpec::good_executable()
    }
    .build();
    let thin = write(tmp.path(), "python3-intel", &intel);
    let universal_intel_only = write(
        tmp.path(),
        "python3-fat-intel",
        &fat(&[(CPU_TYPE_X86_64, intel)]),
    );
    for path in [thin, universal_intel_only] {
        assert_eq!(
            mac_blockers(&path),
            vec![InjectionBlocker::NotNative {
                arch: "x86_64".into()
            }],
            "{}",
            path.display()
        );
    }
}

#[test]
fn protected_locations_refuse_even_a_good_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write(tmp.path(), "python3", &executable(CS_ADHOC_LINKER_SIGNED));
    let mut f = facts(&path);
    f.path = PathBuf::from("/usr/bin/python3");
    assert_eq!(
        injection_blockers(Platform::MacOs, Path::new("/usr/bin/python3"), &f),
        vec![InjectionBlocker::ProtectedLocation { dir: "/usr/bin" }]
    );
}

#[test]
fn truncated_signatures_are_unreadable_not_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let mut image = executable(CS_ADHOC_LINKER_SIGNED);
    let keep = image.len() - 40;
    image.truncate(keep);
    let path = write(tmp.path(), "broken", &image);
    assert!(matches!(
        facts(&path).format,
        BinaryFormat::Unreadable { .. }
    ));
}

/// The executables cross-built for `aarch64-apple-darwin` are linker-signed
/// ad-hoc, so an interpreter built the same way passes.
#[test]
fn cross_built_macos_executables_pass() {
    let dir = std::env::var_os("METALGUARD_MACOS_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/aarch64-apple-darwin/release")
        });
    let mut seen = 0;
    for name in ["metal-guard", "mlx-safe-python"] {
        let path = dir.join(name);
        if !path.is_file() {
            continue;
        }
        seen += 1;
        match &facts(&path).format {
            BinaryFormat::MachO(m) => {
                let sig = m.signature.as_ref().expect("arm64 output is signed");
                assert_eq!(sig.flags & CS_RUNTIME, 0, "{name}: {}", sig.flags_text);
            }
            other => panic!("{name}: expected Mach-O, got {other:?}"),
        }
        assert_eq!(mac_blockers(&path), vec![], "{name}");
    }
    if seen == 0 {
        println!(
            "SKIP cross-built executables: none in {} (see docs/macos.md to build them)",
            dir.display()
        );
    }
}
