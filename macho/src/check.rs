//! What the macOS files we ship must look like, checked by reading them.
//!
//! CI cross-builds `libmetal_guard_inject.dylib`, `metal-guard` and
//! `mlx-safe-python` for `aarch64-apple-darwin` on Linux, where none of them
//! can run. These checks stand in for "dyld loads it and interposing works":
//! each failed expectation becomes one [`Problem`] naming what is wrong and
//! what it breaks on a Mac.

use crate::{Bind, DylibLinkKind, FileType, HashCheck, LibraryOrdinal, MachO, MachOError};
use std::fmt;

/// One way a file falls short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem(pub String);

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A C function the dylib interposes, and the dylib whose export it replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterposedFunction {
    /// Mach-O symbol name, with the leading underscore.
    pub symbol: String,
    pub install_name: String,
}

/// Expectations for the injected library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DylibExpectations {
    pub install_name: String,
    /// Dylibs it must load with `LC_LOAD_DYLIB`.
    pub required_dylibs: Vec<String>,
    /// Dylibs it may load with `LC_LOAD_DYLIB` (in addition to the required ones).
    pub optional_dylibs: Vec<String>,
    /// Dylibs it must load with `LC_LOAD_WEAK_DYLIB` and never strongly.
    pub weak_dylibs: Vec<String>,
    /// Exactly these functions, each once, in `__interpose`.
    pub interposed: Vec<InterposedFunction>,
    pub required_exports: Vec<String>,
    /// Names that must not be exported (exporting a Metal entry point means
    /// the Linux `LD_PRELOAD` definitions were compiled for macOS, and our own
    /// calls to the original would recurse into ourselves).
    pub forbidden_exports: Vec<String>,
}

pub const METAL: &str = "/System/Library/Frameworks/Metal.framework/Versions/A/Metal";
pub const LIBSYSTEM: &str = "/usr/lib/libSystem.B.dylib";
pub const LIBOBJC: &str = "/usr/lib/libobjc.A.dylib";

impl DylibExpectations {
    /// `libmetal_guard_inject.dylib`: `@rpath` install name; libSystem, maybe
    /// libobjc, Metal weak; the two Metal device entry points interposed;
    /// exports the version symbol the launcher's handshake looks up.
    pub fn metal_guard_inject() -> Self {
        let metal_fn = |name: &str| InterposedFunction {
            symbol: name.to_string(),
            install_name: METAL.to_string(),
        };
        DylibExpectations {
            install_name: "@rpath/libmetal_guard_inject.dylib".to_string(),
            required_dylibs: vec![LIBSYSTEM.to_string()],
            optional_dylibs: vec![LIBOBJC.to_string()],
            weak_dylibs: vec![METAL.to_string()],
            interposed: vec![
                metal_fn("_MTLCreateSystemDefaultDevice"),
                metal_fn("_MTLCopyAllDevices"),
            ],
            required_exports: vec!["_metal_guard_inject_version".to_string()],
            forbidden_exports: vec![
                "_MTLCreateSystemDefaultDevice".to_string(),
                "_MTLCopyAllDevices".to_string(),
            ],
        }
    }
}

/// `PLATFORM_MACOS` in `LC_BUILD_VERSION`.
pub const PLATFORM_MACOS: u32 = 1;
/// macOS 11.0, the first release for Apple Silicon (and Rust's default
/// deployment target for `aarch64-apple-darwin`): every artifact must load
/// there, so none may declare a newer minimum.
pub const OLDEST_MACOS: u32 = 0x000b_0000;

/// What a passing file looked like, for the one-line "ok" report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub description: String,
}

/// Checks the injected dylib. `Ok` carries a one-line summary; `Err` every problem found.
pub fn check_dylib(data: &[u8], expect: &DylibExpectations) -> Result<Summary, Vec<Problem>> {
    let mut problems = Vec::new();
    let image = match open_arm64(data) {
        Ok(image) => image,
        Err(p) => return Err(vec![p]),
    };
    if image.file_type != FileType::Dylib {
        problems.push(Problem(format!(
            "file type is {:?}, not a dylib (MH_DYLIB): DYLD_INSERT_LIBRARIES cannot load it",
            image.file_type
        )));
    }
    check_platform(&image, &mut problems);
    match &image.install_name {
        Some(name) if *name == expect.install_name => {}
        Some(name) => problems.push(Problem(format!(
            "install name is '{name}', expected '{}': an absolute build path leaks into every binary linked against it",
            expect.install_name
        ))),
        None => problems.push(Problem("no LC_ID_DYLIB install name".to_string())),
    }
    check_dylib_list(&image, expect, &mut problems);
    let binds = match image.binds() {
        Ok(b) => b,
        Err(e) => {
            problems.push(Problem(format!("cannot read bind information: {e}")));
            Vec::new()
        }
    };
    check_namespace(&image, &binds, &mut problems);
    check_interpose(&image, &binds, expect, &mut problems);
    if image.initializer_sections().next().is_none() {
        problems.push(Problem(
            "no initializer (__mod_init_func / __init_offsets): the library's load-time set-up never runs"
                .to_string(),
        ));
    }
    check_exports(&image, expect, &mut problems);
    let signature = check_signature(&image, &mut problems);
    if problems.is_empty() {
        Ok(Summary {
            description: format!(
                "arm64 dylib for macOS {}+, install name {}, {} interposed ({}), {}",
                image
                    .build_version
                    .map_or_else(String::new, |v| crate::format_version(v.minos)),
                expect.install_name,
                expect.interposed.len(),
                expect
                    .interposed
                    .iter()
                    .map(|f| f.symbol.trim_start_matches('_'))
                    .collect::<Vec<_>>()
                    .join(", "),
                signature
            ),
        })
    } else {
        Err(problems)
    }
}

/// Checks a command-line executable (`metal-guard`, `mlx-safe-python`).
pub fn check_executable(data: &[u8]) -> Result<Summary, Vec<Problem>> {
    let mut problems = Vec::new();
    let image = match open_arm64(data) {
        Ok(image) => image,
        Err(p) => return Err(vec![p]),
    };
    if image.file_type != FileType::Execute {
        problems.push(Problem(format!(
            "file type is {:?}, not an executable (MH_EXECUTE)",
            image.file_type
        )));
    }
    check_platform(&image, &mut problems);
    if image.entry_offset.is_none() {
        problems.push(Problem("no LC_MAIN entry point".to_string()));
    }
    for dylib in &image.dylibs {
        if !is_system_path(&dylib.install_name) {
            problems.push(Problem(format!(
                "links '{}', which is not part of macOS: the binary will not start on a user's Mac",
                dylib.install_name
            )));
        }
    }
    let binds = match image.binds() {
        Ok(b) => b,
        Err(e) => {
            problems.push(Problem(format!("cannot read bind information: {e}")));
            Vec::new()
        }
    };
    check_namespace(&image, &binds, &mut problems);
    let signature = check_signature(&image, &mut problems);
    if problems.is_empty() {
        Ok(Summary {
            description: format!(
                "arm64 executable for macOS {}+, links {} system dylib(s), {}",
                image
                    .build_version
                    .map_or_else(String::new, |v| crate::format_version(v.minos)),
                image.dylibs.len(),
                signature
            ),
        })
    } else {
        Err(problems)
    }
}

fn open_arm64(data: &[u8]) -> Result<MachO<'_>, Problem> {
    let slice = crate::arm64_image(data).map_err(|e| match e {
        MachOError::NoArm64 { found } => Problem(format!(
            "wrong architecture: {} (Apple Silicon needs arm64)",
            found.join(", ")
        )),
        other => Problem(format!("not a readable Mach-O file: {other}")),
    })?;
    let image =
        MachO::parse(slice).map_err(|e| Problem(format!("not a readable Mach-O file: {e}")))?;
    if !image.is_arm64() {
        return Err(Problem(format!(
            "wrong architecture: {} (Apple Silicon processes are arm64)",
            image.cpu_name()
        )));
    }
    Ok(image)
}

fn check_platform(image: &MachO<'_>, problems: &mut Vec<Problem>) {
    match image.build_version {
        None => problems.push(Problem(
            "no LC_BUILD_VERSION: dyld refuses arm64 images that do not name their platform"
                .to_string(),
        )),
        Some(v) if v.platform != PLATFORM_MACOS => problems.push(Problem(format!(
            "built for platform {} instead of macOS (1)",
            v.platform
        ))),
        Some(v) if v.minos > OLDEST_MACOS => problems.push(Problem(format!(
            "requires macOS {} or newer, but must run on every Apple Silicon Mac (macOS {}): build with MACOSX_DEPLOYMENT_TARGET=11.0",
            crate::format_version(v.minos),
            crate::format_version(OLDEST_MACOS)
        ))),
        Some(_) => {}
    }
}

fn is_system_path(path: &str) -> bool {
    path.starts_with("/usr/lib/") || path.starts_with("/System/Library/")
}

fn check_dylib_list(image: &MachO<'_>, expect: &DylibExpectations, problems: &mut Vec<Problem>) {
    for required in &expect.required_dylibs {
        if !image
            .dylibs
            .iter()
            .any(|d| d.install_name == *required && d.kind == DylibLinkKind::Required)
        {
            problems.push(Problem(format!("does not load {required} (LC_LOAD_DYLIB)")));
        }
    }
    for weak in &expect.weak_dylibs {
        match image.dylibs.iter().find(|d| d.install_name == *weak) {
            Some(d) if d.kind == DylibLinkKind::Weak => {}
            Some(d) => problems.push(Problem(format!(
                "{weak} is linked {:?}, not weak (LC_LOAD_WEAK_DYLIB): a process without it would fail to launch",
                d.kind
            ))),
            None => problems.push(Problem(format!(
                "does not link {weak} (expected LC_LOAD_WEAK_DYLIB)"
            ))),
        }
    }
    for d in &image.dylibs {
        let known = expect.required_dylibs.contains(&d.install_name)
            || expect.optional_dylibs.contains(&d.install_name)
            || expect.weak_dylibs.contains(&d.install_name);
        if !known {
            problems.push(Problem(format!(
                "links unexpected dylib '{}' ({:?}): only libSystem, libobjc and weak Metal are allowed",
                d.install_name, d.kind
            )));
        }
    }
}

fn check_namespace(image: &MachO<'_>, binds: &[Bind], problems: &mut Vec<Problem>) {
    if !image.is_two_level() {
        problems.push(Problem(format!(
            "flat namespace (header flags {:#x} lack MH_TWOLEVEL or set MH_FORCE_FLAT): symbols would be looked up in every loaded image",
            image.flags
        )));
    }
    let flat: Vec<&str> = binds
        .iter()
        .filter(|b| b.library == LibraryOrdinal::FlatLookup)
        .map(|b| b.symbol.as_str())
        .collect();
    if !flat.is_empty() {
        let shown: Vec<&str> = flat.iter().take(5).copied().collect();
        problems.push(Problem(format!(
            "{} symbol(s) bound through the flat namespace (-undefined dynamic_lookup?), e.g. {}: dyld stops the process before main if one is missing",
            flat.len(),
            shown.join(", ")
        )));
    }
    for b in binds {
        if let LibraryOrdinal::Dylib(n) = b.library {
            if image.dylib_for_ordinal(b.library).is_none() {
                problems.push(Problem(format!(
                    "{} binds to library ordinal {n}, but only {} dylibs are linked",
                    b.symbol,
                    image.dylibs.len()
                )));
            }
        }
    }
}

const TUPLE_SIZE: u64 = 16;
const VM_PROT_EXECUTE: u32 = 4;

fn check_interpose(
    image: &MachO<'_>,
    binds: &[Bind],
    expect: &DylibExpectations,
    problems: &mut Vec<Problem>,
) {
    let Some(section) = image.interpose_section() else {
        problems.push(Problem(
            "no __DATA,__interpose section: dyld will not redirect MTLCreateSystemDefaultDevice / MTLCopyAllDevices to the guard".to_string(),
        ));
        return;
    };
    if section.size % TUPLE_SIZE != 0 {
        problems.push(Problem(format!(
            "__interpose is {} bytes, not a whole number of 16-byte tuples",
            section.size
        )));
        return;
    }
    let count = section.size / TUPLE_SIZE;
    if count != expect.interposed.len() as u64 {
        problems.push(Problem(format!(
            "__interpose holds {count} tuple(s), expected {}",
            expect.interposed.len()
        )));
    }
    let mut seen: Vec<String> = Vec::new();
    for i in 0..count {
        let tuple = section.addr + i * TUPLE_SIZE;
        let replacee_at = tuple + 8;
        match binds.iter().find(|b| b.address == replacee_at) {
            None => problems.push(Problem(format!(
                "__interpose tuple {i}: the replacee at {replacee_at:#x} is not bound to any imported symbol"
            ))),
            Some(b) => {
                let library = image
                    .dylib_for_ordinal(b.library)
                    .map(|d| d.install_name.clone())
                    .unwrap_or_else(|| format!("{:?}", b.library));
                match expect.interposed.iter().find(|f| f.symbol == b.symbol) {
                    None => problems.push(Problem(format!(
                        "__interpose tuple {i} replaces unexpected symbol {} from {library}",
                        b.symbol
                    ))),
                    Some(f) => {
                        if library != f.install_name {
                            problems.push(Problem(format!(
                                "__interpose tuple {i}: {} binds to {library}, expected {}",
                                b.symbol, f.install_name
                            )));
                        }
                        if !b.weak_import {
                            problems.push(Problem(format!(
                                "__interpose tuple {i}: {} is a strong import; a process without Metal would fail to launch",
                                b.symbol
                            )));
                        }
                        if b.addend != 0 {
                            problems.push(Problem(format!(
                                "__interpose tuple {i}: {} has addend {}, so the replacee is not the function itself",
                                b.symbol, b.addend
                            )));
                        }
                    }
                }
                if seen.contains(&b.symbol) {
                    problems.push(Problem(format!(
                        "__interpose interposes {} twice",
                        b.symbol
                    )));
                }
                seen.push(b.symbol.clone());
            }
        }
        check_replacement(image, binds, i, tuple, problems);
    }
    for f in &expect.interposed {
        if !seen.contains(&f.symbol) {
            problems.push(Problem(format!(
                "{} is not interposed (no __interpose tuple binds it)",
                f.symbol
            )));
        }
    }
}

/// The replacement pointer must be a rebase to code inside this image, not a bind.
fn check_replacement(
    image: &MachO<'_>,
    binds: &[Bind],
    index: u64,
    tuple: u64,
    problems: &mut Vec<Problem>,
) {
    if let Some(b) = binds.iter().find(|b| b.address == tuple) {
        problems.push(Problem(format!(
            "__interpose tuple {index}: the replacement is bound to {} instead of pointing at our own code",
            b.symbol
        )));
        return;
    }
    let raw = match image.read_pointer(tuple) {
        Ok(raw) => raw,
        Err(e) => {
            problems.push(Problem(format!(
                "__interpose tuple {index}: cannot read the replacement pointer: {e}"
            )));
            return;
        }
    };
    // Classic images store the unslid address; chained-fixup rebases keep the
    // target (or its offset from the image base) in the low 36 bits.
    let target = if image.chained_fixups.is_some() {
        let low = raw & 0xf_ffff_ffff;
        let base = image
            .segments
            .iter()
            .find(|s| s.name == "__TEXT")
            .map_or(0, |s| s.vmaddr);
        if low < base {
            low + base
        } else {
            low
        }
    } else {
        raw
    };
    match image.segment_for_address(target) {
        Some((_, seg)) if seg.initprot & VM_PROT_EXECUTE != 0 => {}
        Some((_, seg)) => problems.push(Problem(format!(
            "__interpose tuple {index}: the replacement {target:#x} points into non-executable segment {}",
            seg.name
        ))),
        None => problems.push(Problem(format!(
            "__interpose tuple {index}: the replacement {target:#x} points outside the image"
        ))),
    }
}

fn check_exports(image: &MachO<'_>, expect: &DylibExpectations, problems: &mut Vec<Problem>) {
    let exports = match image.exports() {
        Ok(e) => e,
        Err(e) => {
            problems.push(Problem(format!("cannot read the export trie: {e}")));
            return;
        }
    };
    for name in &expect.required_exports {
        if !exports.iter().any(|e| e.name == *name) {
            problems.push(Problem(format!("does not export {name}")));
        }
    }
    for name in &expect.forbidden_exports {
        if exports.iter().any(|e| e.name == *name) {
            problems.push(Problem(format!(
                "exports {name}: the Linux LD_PRELOAD definition was built for macOS; calling the original would call ourselves"
            )));
        }
    }
}

/// Verifies an ad-hoc signature that covers the file; returns its description.
fn check_signature(image: &MachO<'_>, problems: &mut Vec<Problem>) -> String {
    let Some(range) = image.code_signature else {
        problems.push(Problem(
            "no code signature (LC_CODE_SIGNATURE): arm64 macOS kills unsigned code at launch"
                .to_string(),
        ));
        return String::new();
    };
    let sig = match image.code_signature() {
        Ok(Some(sig)) => sig,
        Ok(None) => return String::new(),
        Err(e) => {
            problems.push(Problem(format!("unreadable code signature: {e}")));
            return String::new();
        }
    };
    let Some(cd) = sig.primary() else {
        problems.push(Problem(
            "code signature without a CodeDirectory".to_string(),
        ));
        return String::new();
    };
    if !cd.is_adhoc() {
        problems.push(Problem(format!(
            "CodeDirectory flags {} lack adhoc: expected the linker's ad-hoc signature",
            cd.describe_flags()
        )));
    }
    if sig.has_cms_signature {
        problems.push(Problem(
            "signed with a certificate (CMS blob present), expected ad-hoc".to_string(),
        ));
    }
    if cd.code_limit != u64::from(range.offset) {
        problems.push(Problem(format!(
            "the signature covers {} bytes, but the signature itself starts at {}: the file was changed after signing",
            cd.code_limit, range.offset
        )));
    }
    match cd.hashes {
        HashCheck::Match { pages } => format!(
            "signed flags={} ({pages} page hashes verified)",
            cd.describe_flags()
        ),
        HashCheck::Mismatch { page } => {
            problems.push(Problem(format!(
                "code signature page {page} does not match the file: it was modified after signing (re-sign with `codesign -f -s - FILE`)"
            )));
            String::new()
        }
        HashCheck::NotChecked { hash_type } => {
            problems.push(Problem(format!(
                "CodeDirectory hash type {hash_type} is not SHA-256; arm64 macOS requires SHA-256"
            )));
            String::new()
        }
        // Only `code_signature_without_page_hashes` produces this; the checker
        // reads with `code_signature`, which always hashes.
        HashCheck::Skipped => {
            problems.push(Problem("page hashes were not verified".to_string()));
            String::new()
        }
    }
}
