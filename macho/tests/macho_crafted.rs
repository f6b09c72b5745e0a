//! The Mach-O checker on crafted files: a good dylib and executable pass,
//! and each deliberately broken variant is reported with a precise message.

mod common;

use common::*;
use metal_guard_macho::check::{check_dylib, check_executable, DylibExpectations};
use metal_guard_macho::{self as macho, LibraryOrdinal, MachO};

fn problems_of(data: &[u8]) -> Vec<String> {
    match check_dylib(data, &DylibExpectations::metal_guard_inject()) {
        Ok(_) => Vec::new(),
        Err(problems) => problems.into_iter().map(|p| p.0).collect(),
    }
}

fn assert_reported(data: &[u8], needle: &str) {
    let problems = problems_of(data);
    assert!(
        problems.iter().any(|p| p.contains(needle)),
        "expected a problem containing {needle:?}, got {problems:#?}"
    );
}

#[test]
fn the_good_dylib_passes() {
    let data = ImageSpec::good_dylib().build();
    let summary = check_dylib(&data, &DylibExpectations::metal_guard_inject())
        .unwrap_or_else(|p| panic!("good dylib rejected: {p:#?}"));
    assert!(
        summary.description.contains("2 interposed"),
        "{}",
        summary.description
    );
    assert!(
        summary.description.contains("adhoc,linker-signed"),
        "{}",
        summary.description
    );
}

#[test]
fn the_parser_reads_back_what_the_builder_wrote() {
    let data = ImageSpec::good_dylib().build();
    let image = MachO::parse(&data).unwrap();
    assert!(image.is_arm64() && image.is_two_level());
    assert_eq!(
        image.install_name.as_deref(),
        Some("@rpath/libmetal_guard_inject.dylib")
    );
    assert_eq!(image.dylibs.len(), 2);
    let binds = image.binds().unwrap();
    let create = binds
        .iter()
        .find(|b| b.symbol == "_MTLCreateSystemDefaultDevice")
        .unwrap();
    assert_eq!(create.library, LibraryOrdinal::Dylib(2));
    assert!(create.weak_import);
    assert_eq!(create.address, 0x4008);
    let sig = image.code_signature().unwrap().unwrap();
    let cd = sig.primary().unwrap();
    assert!(cd.is_adhoc() && cd.is_linker_signed() && !cd.has_hardened_runtime());
    assert_eq!(cd.identifier, "libmetal_guard_inject");
    assert!(!image.has_restrict_segment());
}

#[test]
fn a_flat_namespace_bind_is_reported() {
    let mut spec = ImageSpec::good_dylib();
    spec.binds[2].ordinal = -2; // what -undefined dynamic_lookup produces
    assert_reported(&spec.build(), "bound through the flat namespace");
}

#[test]
fn a_flat_namespace_header_is_reported() {
    let mut spec = ImageSpec::good_dylib();
    spec.flags = 0;
    assert_reported(&spec.build(), "flat namespace (header flags");
}

#[test]
fn a_missing_signature_is_reported() {
    let mut spec = ImageSpec::good_dylib();
    spec.signed = false;
    assert_reported(&spec.build(), "no code signature");
}

#[test]
fn a_file_changed_after_signing_is_reported() {
    let mut data = ImageSpec::good_dylib().build();
    data[0x1000] ^= 0xff;
    assert_reported(&data, "page 1 does not match the file");
}

#[test]
fn a_certificate_signature_without_adhoc_is_reported() {
    let mut spec = ImageSpec::good_dylib();
    spec.signature_flags = 0x0001_0000; // runtime, no adhoc
    assert_reported(&spec.build(), "lack adhoc");
}

#[test]
fn the_wrong_architecture_is_reported() {
    let mut spec = ImageSpec::good_dylib();
    spec.cputype = CPU_TYPE_X86_64;
    assert_reported(&spec.build(), "wrong architecture: x86_64");
}

#[test]
fn a_universal_file_is_checked_through_its_arm64_slice() {
    let arm = ImageSpec::good_dylib().build();
    let mut x86 = ImageSpec::good_dylib();
    x86.cputype = CPU_TYPE_X86_64;
    let both = fat(&[(CPU_TYPE_X86_64, x86.build()), (CPU_TYPE_ARM64, arm)]);
    assert!(problems_of(&both).is_empty(), "{:#?}", problems_of(&both));
    let x86_only = fat(&[(CPU_TYPE_X86_64, x86.build())]);
    assert_reported(&x86_only, "wrong architecture: x86_64");
}

#[test]
fn a_missing_interpose_section_is_reported() {
    let mut spec = ImageSpec::good_dylib();
    spec.interpose_section = Some("__const".to_string());
    assert_reported(&spec.build(), "no __DATA,__interpose section");
}

#[test]
fn a_missing_tuple_is_reported() {
    let mut spec = ImageSpec::good_dylib();
    spec.interpose_tuples = 1;
    let data = spec.build();
    assert_reported(&data, "holds 1 tuple(s), expected 2");
    assert_reported(&data, "_MTLCopyAllDevices is not interposed");
}

#[test]
fn a_strongly_linked_metal_is_reported() {
    let mut spec = ImageSpec::good_dylib();
    spec.dylibs[1].0 = LC_LOAD_DYLIB;
    assert_reported(&spec.build(), "is linked Required, not weak");
}

#[test]
fn a_strong_replacee_import_is_reported() {
    let mut spec = ImageSpec::good_dylib();
    spec.binds[1].weak_import = false;
    assert_reported(&spec.build(), "_MTLCopyAllDevices is a strong import");
}

#[test]
fn a_replacee_bound_elsewhere_is_reported() {
    let mut spec = ImageSpec::good_dylib();
    spec.binds[0].ordinal = 1;
    assert_reported(
        &spec.build(),
        "_MTLCreateSystemDefaultDevice binds to /usr/lib/libSystem.B.dylib",
    );
}

#[test]
fn an_absolute_install_name_is_reported() {
    let mut spec = ImageSpec::good_dylib();
    spec.install_name = Some("/work/target/release/deps/libmetal_guard_inject.dylib".to_string());
    assert_reported(&spec.build(), "install name is '/work/target");
}

#[test]
fn an_unexpected_dependency_is_reported() {
    let mut spec = ImageSpec::good_dylib();
    spec.dylibs
        .push((LC_LOAD_DYLIB, "/opt/homebrew/lib/libfoo.dylib".to_string()));
    assert_reported(
        &spec.build(),
        "links unexpected dylib '/opt/homebrew/lib/libfoo.dylib'",
    );
}

#[test]
fn a_missing_initializer_is_reported() {
    let mut spec = ImageSpec::good_dylib();
    spec.initializer = false;
    assert_reported(&spec.build(), "no initializer");
}

#[test]
fn executables_pass_and_fail_on_their_own_rules() {
    let good = ImageSpec::good_executable().build();
    check_executable(&good).unwrap_or_else(|p| panic!("good executable rejected: {p:#?}"));

    let mut unsigned = ImageSpec::good_executable();
    unsigned.signed = false;
    let err = check_executable(&unsigned.build()).unwrap_err();
    assert!(
        err.iter().any(|p| p.0.contains("no code signature")),
        "{err:#?}"
    );

    let mut foreign = ImageSpec::good_executable();
    foreign
        .dylibs
        .push((LC_LOAD_DYLIB, "@rpath/libpython3.12.dylib".to_string()));
    let err = check_executable(&foreign.build()).unwrap_err();
    assert!(
        err.iter().any(|p| p.0.contains("not part of macOS")),
        "{err:#?}"
    );

    // The dylib is not an executable.
    let err = check_executable(&ImageSpec::good_dylib().build()).unwrap_err();
    assert!(
        err.iter().any(|p| p.0.contains("not an executable")),
        "{err:#?}"
    );
}

#[test]
fn truncated_and_corrupted_files_give_errors_never_panics() {
    let good = ImageSpec::good_dylib().build();
    for len in (0..good.len()).step_by(61) {
        let problems = problems_of(&good[..len]);
        assert!(!problems.is_empty(), "truncated to {len} bytes but passed");
    }
    // Deterministic byte corruption across the header, commands and linkedit.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..1000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut bad = good.clone();
        let at = (state as usize) % bad.len();
        bad[at] ^= (state >> 32) as u8 | 1;
        let _ = problems_of(&bad);
        if let Ok(slice) = macho::arm64_image(&bad) {
            if let Ok(image) = MachO::parse(slice) {
                let _ = image.binds();
                let _ = image.exports();
                let _ = image.code_signature();
                let _ = image.undefined_symbols();
            }
        }
    }
}

#[test]
fn not_macho_at_all() {
    assert_reported(
        b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0",
        "not a readable Mach-O file",
    );
    assert_reported(b"", "not a readable Mach-O file");
}

#[test]
fn a_missing_export_is_reported() {
    let mut spec = ImageSpec::good_dylib();
    spec.exports.clear();
    assert_reported(&spec.build(), "does not export _metal_guard_inject_version");
}

#[test]
fn an_exported_metal_entry_point_is_reported() {
    let mut spec = ImageSpec::good_dylib();
    spec.exports
        .push(("_MTLCopyAllDevices".to_string(), 0x1004));
    assert_reported(&spec.build(), "exports _MTLCopyAllDevices");
}

#[test]
fn the_export_trie_is_walked() {
    let mut spec = ImageSpec::good_dylib();
    spec.exports
        .push(("_metal_guard_other".to_string(), 0x1008));
    let data = spec.build();
    let exports = MachO::parse(&data).unwrap().exports().unwrap();
    let names: Vec<&str> = exports.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["_metal_guard_inject_version", "_metal_guard_other"]);
    assert_eq!(exports[1].target, macho::ExportTarget::Address(0x1008));
}

#[test]
fn chained_fixups_read_the_same_binds_as_opcodes() {
    let opcodes = ImageSpec::good_dylib();
    let mut chained = ImageSpec::good_dylib();
    chained.fixups = FixupStyle::Chained;
    let (a, b) = (opcodes.build(), chained.build());
    let key = |data: &[u8]| {
        let mut v: Vec<_> = MachO::parse(data)
            .unwrap()
            .binds()
            .unwrap()
            .into_iter()
            .map(|b| (b.address, b.symbol, b.library, b.weak_import))
            .collect();
        v.sort_by_key(|x| x.0);
        v
    };
    assert_eq!(key(&a), key(&b));
    assert_eq!(key(&b).len(), 3);
    let image = MachO::parse(&b).unwrap();
    assert!(image.chained_fixups.is_some() && image.dyld_info.is_none());
    check_dylib(&b, &DylibExpectations::metal_guard_inject())
        .unwrap_or_else(|p| panic!("chained-fixup dylib rejected: {p:#?}"));
}

#[test]
fn a_flat_namespace_bind_in_chained_fixups_is_reported() {
    let mut spec = ImageSpec::good_dylib();
    spec.fixups = FixupStyle::Chained;
    spec.binds[2].ordinal = -2;
    assert_reported(&spec.build(), "bound through the flat namespace");
}

#[test]
fn a_too_new_minimum_macos_is_reported() {
    let mut spec = ImageSpec::good_dylib();
    spec.min_macos = Some(0x000f_0000);
    assert_reported(&spec.build(), "requires macOS 15.0.0 or newer");
    let mut exe = ImageSpec::good_executable();
    exe.min_macos = Some(0x000f_0000);
    let err = check_executable(&exe.build()).unwrap_err();
    assert!(
        err.iter()
            .any(|p| p.0.contains("MACOSX_DEPLOYMENT_TARGET=11.0")),
        "{err:#?}"
    );
}

#[test]
fn a_missing_platform_is_reported() {
    let mut spec = ImageSpec::good_dylib();
    spec.min_macos = None;
    assert_reported(&spec.build(), "no LC_BUILD_VERSION");
}
