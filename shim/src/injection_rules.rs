//! Which programs would drop or reject the injected library, as pure rules
//! over facts read from the file (see `binary_inspection` for the reading).
//!
//! macOS (dyld): `DYLD_INSERT_LIBRARIES` is deleted for SIP-protected
//! programs, for restricted processes (setuid/setgid, `__RESTRICT` segment,
//! `SF_RESTRICTED`, `CS_RESTRICT`), for platform binaries, and for the
//! hardened runtime unless the program has the
//! `com.apple.security.cs.allow-dyld-environment-variables` entitlement.
//! A hardened program that enforces library validation would reject our
//! ad-hoc-signed library outright, which aborts the launch.
//!
//! ELF systems (ld.so): `LD_PRELOAD` is honoured everywhere, `/usr/bin`
//! included, except in secure-execution mode (setuid, setgid, file
//! capabilities; ld.so then ignores preload paths with a slash) and in
//! statically linked programs, which have no dynamic loader at all.

use crate::launch_env::Platform;
use std::fmt;
use std::path::{Path, PathBuf};

/// The entitlement that lets `DYLD_*` variables through the hardened runtime.
pub const ALLOW_DYLD_ENV: &str = "com.apple.security.cs.allow-dyld-environment-variables";
/// The entitlement that lets a hardened process load libraries from other teams.
pub const DISABLE_LIBRARY_VALIDATION: &str = "com.apple.security.cs.disable-library-validation";

/// Directories whose programs SIP protects (their `DYLD_*` variables are purged).
pub const MACOS_PROTECTED_DIRS: &[&str] = &[
    "/usr/bin",
    "/bin",
    "/sbin",
    "/usr/sbin",
    "/usr/libexec",
    "/System",
];

/// The user data volume is firmlinked under `/System` but is not protected.
const MACOS_DATA_VOLUME: &str = "/System/Volumes/Data";

/// What the launcher read about one program file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BinaryFacts {
    /// The file that was read (symlinks resolved).
    pub path: PathBuf,
    /// Mode bit `S_ISUID`.
    pub setuid: bool,
    /// Mode bit `S_ISGID`.
    pub setgid: bool,
    /// macOS `SF_RESTRICTED` file flag (`ls -lO` shows `restricted`).
    pub restricted_flag: bool,
    /// Linux `security.capability` extended attribute (file capabilities).
    pub file_capabilities: bool,
    /// What the file format says.
    pub format: BinaryFormat,
}

/// The executable format and the facts that matter for injection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum BinaryFormat {
    /// A Mach-O image (the slice for this machine when universal).
    MachO(MachOFacts),
    /// An ELF executable.
    Elf { has_interpreter: bool },
    /// A `#!` script (the launcher follows it to its interpreter separately).
    Script,
    /// A Mach-O or ELF file the reader could not make sense of.
    Unreadable { why: String },
    /// Anything else.
    #[default]
    Other,
}

/// Mach-O facts that decide whether dyld honours `DYLD_INSERT_LIBRARIES`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MachOFacts {
    /// The slice the facts come from (`arm64`, `x86_64`).
    pub arch: String,
    /// The slice is this Mac's own architecture (arm64 on Apple Silicon). An
    /// x86_64-only program runs under Rosetta and cannot load an arm64 library.
    pub native: bool,
    /// A `__RESTRICT,__restrict` section.
    pub has_restrict_segment: bool,
    /// The embedded code signature, if any (unsigned arm64 code does not run at all).
    pub signature: Option<SignatureFacts>,
}

/// The parts of the code signature the rules read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignatureFacts {
    /// CodeDirectory `flags` (`CS_RUNTIME` 0x10000, `CS_RESTRICT` 0x800, `CS_REQUIRE_LV` 0x2000, ...).
    pub flags: u32,
    /// CodeDirectory `platform`: non-zero for Apple platform binaries.
    pub platform: u8,
    /// Team identifier, if signed by a developer.
    pub team_id: Option<String>,
    /// The `allow-dyld-environment-variables` entitlement is true.
    pub allows_dyld_environment: bool,
    /// The `disable-library-validation` entitlement is true.
    pub disables_library_validation: bool,
    /// `codesign -dv` style flag text, for messages.
    pub flags_text: String,
}

const CS_RESTRICT: u32 = 0x800;
const CS_REQUIRE_LV: u32 = 0x2000;
const CS_RUNTIME: u32 = 0x10000;

/// One reason the injected library would not load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InjectionBlocker {
    /// Under a SIP-protected directory (macOS).
    ProtectedLocation { dir: &'static str },
    /// `SF_RESTRICTED` file flag (macOS).
    RestrictedFlag,
    /// setuid or setgid: dyld treats it as restricted; ld.so runs it in secure mode.
    SetId { setuid: bool, setgid: bool },
    /// File capabilities put ld.so in secure mode (ELF).
    FileCapabilities,
    /// No dynamic loader, so `LD_PRELOAD` is never read (ELF).
    StaticallyLinked,
    /// `__RESTRICT,__restrict` section (macOS).
    RestrictSegment,
    /// CodeDirectory `CS_RESTRICT` flag (macOS).
    RestrictedSignature,
    /// An Apple platform binary (macOS).
    PlatformBinary,
    /// Hardened runtime without `allow-dyld-environment-variables` (macOS): the variable is dropped silently.
    HardenedRuntimeWithoutDyldEntitlement,
    /// Hardened runtime with library validation: dyld refuses our ad-hoc library and aborts the launch (macOS).
    LibraryValidation,
    /// Only an x86_64 slice on Apple Silicon: it runs under Rosetta, where the arm64 library cannot load (macOS).
    NotNative { arch: String },
}

impl fmt::Display for InjectionBlocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InjectionBlocker::ProtectedLocation { dir } => write!(
                f,
                "it lives under {dir}, which System Integrity Protection guards, and macOS strips DYLD_INSERT_LIBRARIES from such programs"
            ),
            InjectionBlocker::RestrictedFlag => {
                write!(f, "it carries the `restricted` file flag, so dyld ignores DYLD_* variables")
            }
            InjectionBlocker::SetId { setuid, setgid } => {
                let which = match (setuid, setgid) {
                    (true, true) => "setuid and setgid",
                    (true, false) => "setuid",
                    _ => "setgid",
                };
                write!(f, "it is {which}, so the dynamic loader ignores preloaded libraries")
            }
            InjectionBlocker::FileCapabilities => write!(
                f,
                "it has file capabilities, so ld.so runs it in secure mode and ignores LD_PRELOAD"
            ),
            InjectionBlocker::StaticallyLinked => write!(
                f,
                "it is statically linked (no dynamic loader), so LD_PRELOAD is never read"
            ),
            InjectionBlocker::RestrictSegment => write!(
                f,
                "it has a __RESTRICT segment, so dyld ignores DYLD_* variables"
            ),
            InjectionBlocker::RestrictedSignature => write!(
                f,
                "its code signature has the restrict flag, so dyld ignores DYLD_* variables"
            ),
            InjectionBlocker::PlatformBinary => write!(
                f,
                "it is an Apple platform binary, so dyld ignores DYLD_* variables"
            ),
            InjectionBlocker::HardenedRuntimeWithoutDyldEntitlement => write!(
                f,
                "it uses the hardened runtime without the {ALLOW_DYLD_ENV} entitlement, so macOS drops DYLD_INSERT_LIBRARIES silently"
            ),
            InjectionBlocker::LibraryValidation => write!(
                f,
                "it uses the hardened runtime with library validation, so dyld would refuse the ad-hoc-signed guard library and abort the start"
            ),
            InjectionBlocker::NotNative { arch } => write!(
                f,
                "it is built for {arch} only and would run under Rosetta, where the arm64 guard library cannot load (MLX needs a native arm64 Python too)"
            ),
        }
    }
}

/// The SIP-protected directory `path` is under, if any (component-wise: `/usr/local/bin` is not `/usr/bin`).
pub fn macos_protected_dir(path: &Path) -> Option<&'static str> {
    if path.starts_with(MACOS_DATA_VOLUME) {
        return None;
    }
    MACOS_PROTECTED_DIRS
        .iter()
        .copied()
        .find(|dir| path.starts_with(dir))
}

/// Everything that would keep the library out of a program, under `platform`'s rules.
///
/// `invoked_as` is the path the launcher will exec (a venv's `bin/python`
/// symlink, say); `facts.path` is the file it resolves to. Both are checked
/// for protected locations, because SIP looks at the file the kernel runs and
/// the exec path is what users see in messages.
pub fn injection_blockers(
    platform: Platform,
    invoked_as: &Path,
    facts: &BinaryFacts,
) -> Vec<InjectionBlocker> {
    let mut blockers = Vec::new();
    if facts.setuid || facts.setgid {
        blockers.push(InjectionBlocker::SetId {
            setuid: facts.setuid,
            setgid: facts.setgid,
        });
    }
    match platform {
        Platform::MacOs => {
            if let Some(dir) =
                macos_protected_dir(&facts.path).or_else(|| macos_protected_dir(invoked_as))
            {
                blockers.push(InjectionBlocker::ProtectedLocation { dir });
            }
            if facts.restricted_flag {
                blockers.push(InjectionBlocker::RestrictedFlag);
            }
            if let BinaryFormat::MachO(macho) = &facts.format {
                blockers.extend(macho_blockers(macho));
            }
        }
        Platform::Elf => {
            if facts.file_capabilities {
                blockers.push(InjectionBlocker::FileCapabilities);
            }
            if let BinaryFormat::Elf {
                has_interpreter: false,
            } = facts.format
            {
                blockers.push(InjectionBlocker::StaticallyLinked);
            }
        }
    }
    blockers
}

/// The Mach-O part of the macOS rules (pure; tested on both platforms).
pub fn macho_blockers(macho: &MachOFacts) -> Vec<InjectionBlocker> {
    let mut blockers = Vec::new();
    if !macho.native {
        blockers.push(InjectionBlocker::NotNative {
            arch: macho.arch.clone(),
        });
    }
    if macho.has_restrict_segment {
        blockers.push(InjectionBlocker::RestrictSegment);
    }
    if let Some(sig) = &macho.signature {
        if sig.flags & CS_RESTRICT != 0 {
            blockers.push(InjectionBlocker::RestrictedSignature);
        }
        if sig.platform != 0 {
            blockers.push(InjectionBlocker::PlatformBinary);
        }
        let hardened = sig.flags & CS_RUNTIME != 0;
        if hardened && !sig.allows_dyld_environment {
            blockers.push(InjectionBlocker::HardenedRuntimeWithoutDyldEntitlement);
        } else if (hardened || sig.flags & CS_REQUIRE_LV != 0) && !sig.disables_library_validation {
            blockers.push(InjectionBlocker::LibraryValidation);
        }
    }
    blockers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn macho(flags: u32, allow_dyld: bool, disable_lv: bool) -> BinaryFacts {
        BinaryFacts {
            path: PathBuf::from("/opt/homebrew/bin/python3.12"),
            format: BinaryFormat::MachO(MachOFacts {
                arch: "arm64".into(),
                native: true,
                has_restrict_segment: false,
                signature: Some(SignatureFacts {
                    flags,
                    allows_dyld_environment: allow_dyld,
                    disables_library_validation: disable_lv,
                    ..SignatureFacts::default()
                }),
            }),
            ..BinaryFacts::default()
        }
    }

    fn mac(facts: &BinaryFacts) -> Vec<InjectionBlocker> {
        injection_blockers(Platform::MacOs, &facts.path, facts)
    }

    #[test]
    fn protected_dirs_match_whole_components() {
        assert_eq!(
            macos_protected_dir(Path::new("/usr/bin/python3")),
            Some("/usr/bin")
        );
        assert_eq!(macos_protected_dir(Path::new("/bin/sh")), Some("/bin"));
        assert_eq!(
            macos_protected_dir(Path::new("/System/Library/Frameworks/Python.framework/x")),
            Some("/System")
        );
        assert_eq!(
            macos_protected_dir(Path::new("/usr/libexec/x")),
            Some("/usr/libexec")
        );
        assert_eq!(
            macos_protected_dir(Path::new("/usr/local/bin/python3")),
            None
        );
        assert_eq!(
            macos_protected_dir(Path::new("/usr/binaries/python3")),
            None
        );
        assert_eq!(
            macos_protected_dir(Path::new("/opt/homebrew/bin/python3")),
            None
        );
        assert_eq!(
            macos_protected_dir(Path::new("/System/Volumes/Data/opt/py/bin/python3")),
            None
        );
    }

    #[test]
    fn macos_refuses_usr_bin_python_but_elf_systems_do_not() {
        let facts = BinaryFacts {
            path: "/usr/bin/python3".into(),
            format: BinaryFormat::Elf {
                has_interpreter: true,
            },
            ..BinaryFacts::default()
        };
        assert_eq!(
            mac(&facts),
            vec![InjectionBlocker::ProtectedLocation { dir: "/usr/bin" }]
        );
        assert!(injection_blockers(Platform::Elf, &facts.path, &facts).is_empty());
        // A venv link to the protected interpreter is refused through its target.
        let through_link = injection_blockers(
            Platform::MacOs,
            Path::new("/Users/me/venv/bin/python"),
            &facts,
        );
        assert_eq!(through_link.len(), 1);
    }

    #[test]
    fn adhoc_and_linker_signed_interpreters_pass() {
        assert!(mac(&macho(0x20002, false, false)).is_empty());
        assert!(mac(&macho(0x2, false, false)).is_empty());
    }

    #[test]
    fn hardened_runtime_needs_the_dyld_entitlement_and_no_library_validation() {
        assert_eq!(
            mac(&macho(0x10000, false, true)),
            vec![InjectionBlocker::HardenedRuntimeWithoutDyldEntitlement]
        );
        assert_eq!(
            mac(&macho(0x10000, true, false)),
            vec![InjectionBlocker::LibraryValidation]
        );
        assert!(mac(&macho(0x10000, true, true)).is_empty());
        assert_eq!(
            mac(&macho(0x2002, false, false)),
            vec![InjectionBlocker::LibraryValidation]
        );
    }

    #[test]
    fn restrict_markers_and_platform_binaries_are_refused() {
        let mut facts = macho(0x800, false, false);
        facts.restricted_flag = true;
        facts.setuid = true;
        if let BinaryFormat::MachO(m) = &mut facts.format {
            m.has_restrict_segment = true;
            m.signature.as_mut().unwrap().platform = 2;
        }
        let blockers = mac(&facts);
        for expected in [
            InjectionBlocker::SetId {
                setuid: true,
                setgid: false,
            },
            InjectionBlocker::RestrictedFlag,
            InjectionBlocker::RestrictSegment,
            InjectionBlocker::RestrictedSignature,
            InjectionBlocker::PlatformBinary,
        ] {
            assert!(blockers.contains(&expected), "{expected:?} in {blockers:?}");
        }
    }

    #[test]
    fn an_intel_only_program_is_refused_on_apple_silicon() {
        let mut facts = macho(0x20002, false, false);
        if let BinaryFormat::MachO(m) = &mut facts.format {
            m.arch = "x86_64".into();
            m.native = false;
        }
        assert_eq!(
            mac(&facts),
            vec![InjectionBlocker::NotNative {
                arch: "x86_64".into()
            }]
        );
        assert!(mac(&facts)[0].to_string().contains("Rosetta"));
    }

    #[test]
    fn elf_secure_mode_and_static_binaries_are_refused() {
        let facts = BinaryFacts {
            path: "/opt/py/bin/python3".into(),
            setgid: true,
            file_capabilities: true,
            format: BinaryFormat::Elf {
                has_interpreter: false,
            },
            ..BinaryFacts::default()
        };
        assert_eq!(
            injection_blockers(Platform::Elf, &facts.path, &facts),
            vec![
                InjectionBlocker::SetId {
                    setuid: false,
                    setgid: true
                },
                InjectionBlocker::FileCapabilities,
                InjectionBlocker::StaticallyLinked
            ]
        );
    }

    #[test]
    fn every_blocker_explains_itself_in_one_line() {
        for b in [
            InjectionBlocker::ProtectedLocation { dir: "/bin" },
            InjectionBlocker::HardenedRuntimeWithoutDyldEntitlement,
            InjectionBlocker::StaticallyLinked,
        ] {
            let text = b.to_string();
            assert!(text.starts_with("it ") && !text.contains('\n'), "{text}");
        }
    }
}
