//! A reader for Mach-O files: universal (fat) containers, the 64-bit header,
//! load commands, segments and sections, dyld bind information (classic
//! opcodes and chained fixups), the export trie and the embedded code
//! signature.
//!
//! Used by the launcher (is this interpreter restricted or hardened, does it
//! carry the entitlements that let `DYLD_INSERT_LIBRARIES` through?) and by
//! the artifact checker that CI runs on the cross-built macOS files. Every
//! read is bounds-checked: a truncated or hostile file gives a
//! [`MachOError`], never a panic.
//!
//! Layouts follow Apple's `<mach-o/loader.h>`, `<mach-o/fat.h>`,
//! `<mach-o/fixup-chains.h>` and xnu's `osfmk/kern/cs_blobs.h`.

mod binds;
mod bytes;
mod chained;
mod codesign;
mod exports;

pub mod check;

pub use binds::{Bind, BindSource, LibraryOrdinal};
pub use codesign::{
    CodeDirectory, CodeSignature, HashCheck, CS_ADHOC, CS_HARD, CS_KILL, CS_LINKER_SIGNED,
    CS_REQUIRE_LV, CS_RESTRICT, CS_RUNTIME,
};
pub use exports::{Export, ExportTarget};

use bytes::Bytes;
use std::fmt;

/// `CPU_TYPE_ARM64`.
pub const CPU_TYPE_ARM64: u32 = 0x0100_000c;
/// `CPU_TYPE_X86_64`.
pub const CPU_TYPE_X86_64: u32 = 0x0100_0007;
/// `CPU_SUBTYPE_ARM64E` (pointer authentication ABI, not what Python or MLX use).
pub const CPU_SUBTYPE_ARM64E: u32 = 2;

/// `MH_TWOLEVEL`: symbols are bound to the library that defines them.
pub const MH_TWOLEVEL: u32 = 0x80;
/// `MH_FORCE_FLAT`: the image asks for flat-namespace binding.
pub const MH_FORCE_FLAT: u32 = 0x100;

const MH_MAGIC_64: u32 = 0xfeed_facf;
const MH_CIGAM_64: u32 = 0xcffa_edfe;
const MH_MAGIC_32: u32 = 0xfeed_face;
const FAT_MAGIC: u32 = 0xcafe_babe;
const FAT_MAGIC_64: u32 = 0xcafe_babf;

const LC_REQ_DYLD: u32 = 0x8000_0000;
const LC_SYMTAB: u32 = 0x2;
const LC_LOAD_DYLIB: u32 = 0xc;
const LC_ID_DYLIB: u32 = 0xd;
const LC_SEGMENT_64: u32 = 0x19;
const LC_CODE_SIGNATURE: u32 = 0x1d;
const LC_LAZY_LOAD_DYLIB: u32 = 0x20;
const LC_DYLD_INFO: u32 = 0x22;
const LC_DYLD_INFO_ONLY: u32 = 0x22 | LC_REQ_DYLD;
const LC_LOAD_WEAK_DYLIB: u32 = 0x18 | LC_REQ_DYLD;
const LC_RPATH: u32 = 0x1c | LC_REQ_DYLD;
const LC_REEXPORT_DYLIB: u32 = 0x1f | LC_REQ_DYLD;
const LC_LOAD_UPWARD_DYLIB: u32 = 0x23 | LC_REQ_DYLD;
const LC_MAIN: u32 = 0x28 | LC_REQ_DYLD;
const LC_BUILD_VERSION: u32 = 0x32;
const LC_DYLD_EXPORTS_TRIE: u32 = 0x33 | LC_REQ_DYLD;
const LC_DYLD_CHAINED_FIXUPS: u32 = 0x34 | LC_REQ_DYLD;

/// Section types (low byte of `section_64.flags`).
const SECTION_TYPE_MASK: u32 = 0xff;
const S_MOD_INIT_FUNC_POINTERS: u32 = 0x9;
const S_INTERPOSING: u32 = 0xd;
const S_INIT_FUNC_OFFSETS: u32 = 0x16;

/// Why a file could not be read as Mach-O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MachOError {
    /// The file ends (or a structure points) past the available bytes.
    Truncated { what: &'static str, offset: u64 },
    /// The first four bytes are not a Mach-O or universal magic number.
    NotMachO { magic: u32 },
    /// A 32-bit or big-endian Mach-O: nothing we ship or inspect is either.
    Unsupported { what: String },
    /// A universal file without an arm64 slice, or a thin file for another CPU.
    NoArm64 { found: Vec<String> },
    /// A structure whose fields contradict each other.
    Malformed { what: String },
}

impl fmt::Display for MachOError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MachOError::Truncated { what, offset } => {
                write!(
                    f,
                    "truncated Mach-O: {what} at offset {offset:#x} runs past the end of the file"
                )
            }
            MachOError::NotMachO { magic } => {
                write!(f, "not a Mach-O file (magic {magic:#010x})")
            }
            MachOError::Unsupported { what } => write!(f, "unsupported Mach-O: {what}"),
            MachOError::NoArm64 { found } => {
                write!(
                    f,
                    "no arm64 code in this file (found: {})",
                    found.join(", ")
                )
            }
            MachOError::Malformed { what } => write!(f, "malformed Mach-O: {what}"),
        }
    }
}

impl std::error::Error for MachOError {}

pub(crate) fn malformed(what: impl Into<String>) -> MachOError {
    MachOError::Malformed { what: what.into() }
}

/// A human name for a CPU type/subtype pair (`arm64`, `arm64e`, `x86_64`, ...).
pub fn cpu_name(cputype: u32, cpusubtype: u32) -> String {
    match cputype {
        CPU_TYPE_ARM64 if cpusubtype & 0xff == CPU_SUBTYPE_ARM64E => "arm64e".to_string(),
        CPU_TYPE_ARM64 => "arm64".to_string(),
        CPU_TYPE_X86_64 => "x86_64".to_string(),
        7 => "i386".to_string(),
        12 => "arm".to_string(),
        0x0200_000c => "arm64_32".to_string(),
        other => format!("cputype {other:#x}"),
    }
}

/// One architecture entry of a universal file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FatArch {
    pub cputype: u32,
    pub cpusubtype: u32,
    pub offset: u64,
    pub size: u64,
}

impl FatArch {
    pub fn name(&self) -> String {
        cpu_name(self.cputype, self.cpusubtype)
    }
}

/// The outer shape of a file: one Mach-O image or a universal container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Container {
    Thin { cputype: u32, cpusubtype: u32 },
    Fat(Vec<FatArch>),
}

/// Reads the container shape without parsing any image.
pub fn container(data: &[u8]) -> Result<Container, MachOError> {
    let b = Bytes::new(data);
    let magic_be = b.u32_be(0, "magic")?;
    match magic_be {
        FAT_MAGIC | FAT_MAGIC_64 => {
            let wide = magic_be == FAT_MAGIC_64;
            let count = b.u32_be(4, "fat header")?;
            // A Java class file shares 0xcafebabe; real universal files have a handful of slices.
            if count == 0 || count > 64 {
                return Err(malformed(format!(
                    "universal header claims {count} architectures"
                )));
            }
            let entry = if wide { 32 } else { 20 };
            let mut arches = Vec::with_capacity(count as usize);
            for i in 0..count as usize {
                let at = 8 + i * entry;
                let cputype = b.u32_be(at, "fat_arch")?;
                let cpusubtype = b.u32_be(at + 4, "fat_arch")?;
                let (offset, size) = if wide {
                    (
                        b.u64_be(at + 8, "fat_arch_64")?,
                        b.u64_be(at + 16, "fat_arch_64")?,
                    )
                } else {
                    (
                        u64::from(b.u32_be(at + 8, "fat_arch")?),
                        u64::from(b.u32_be(at + 12, "fat_arch")?),
                    )
                };
                let end = offset
                    .checked_add(size)
                    .ok_or_else(|| malformed("fat slice overflows"))?;
                if end > data.len() as u64 {
                    return Err(MachOError::Truncated {
                        what: "universal slice",
                        offset,
                    });
                }
                arches.push(FatArch {
                    cputype,
                    cpusubtype,
                    offset,
                    size,
                });
            }
            Ok(Container::Fat(arches))
        }
        _ => {
            let magic = b.u32_le(0, "magic")?;
            match magic {
                MH_MAGIC_64 => Ok(Container::Thin {
                    cputype: b.u32_le(4, "mach header")?,
                    cpusubtype: b.u32_le(8, "mach header")?,
                }),
                MH_MAGIC_32 => Err(MachOError::Unsupported {
                    what: "32-bit image".to_string(),
                }),
                MH_CIGAM_64 => Err(MachOError::Unsupported {
                    what: "big-endian image".to_string(),
                }),
                other => Err(MachOError::NotMachO { magic: other }),
            }
        }
    }
}

/// The bytes of the arm64 image in `data`: the file itself when thin, the
/// arm64 slice (preferred over arm64e) when universal.
pub fn arm64_image(data: &[u8]) -> Result<&[u8], MachOError> {
    match container(data)? {
        Container::Thin {
            cputype,
            cpusubtype,
        } => {
            if cputype == CPU_TYPE_ARM64 {
                Ok(data)
            } else {
                Err(MachOError::NoArm64 {
                    found: vec![cpu_name(cputype, cpusubtype)],
                })
            }
        }
        Container::Fat(arches) => {
            let pick = arches
                .iter()
                .find(|a| a.cputype == CPU_TYPE_ARM64 && a.cpusubtype & 0xff != CPU_SUBTYPE_ARM64E)
                .or_else(|| arches.iter().find(|a| a.cputype == CPU_TYPE_ARM64));
            match pick {
                Some(a) => Ok(&data[a.offset as usize..(a.offset + a.size) as usize]),
                None => Err(MachOError::NoArm64 {
                    found: arches.iter().map(FatArch::name).collect(),
                }),
            }
        }
    }
}

/// `filetype` of the Mach-O header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    Object,
    Execute,
    Dylib,
    Bundle,
    Other(u32),
}

impl FileType {
    fn from_raw(raw: u32) -> Self {
        match raw {
            1 => FileType::Object,
            2 => FileType::Execute,
            6 => FileType::Dylib,
            8 => FileType::Bundle,
            other => FileType::Other(other),
        }
    }
}

/// How an image refers to another dylib.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DylibLinkKind {
    /// `LC_LOAD_DYLIB`: launch fails if it is missing.
    Required,
    /// `LC_LOAD_WEAK_DYLIB`: launch proceeds without it.
    Weak,
    /// `LC_REEXPORT_DYLIB`.
    Reexport,
    /// `LC_LAZY_LOAD_DYLIB`.
    Lazy,
    /// `LC_LOAD_UPWARD_DYLIB`.
    Upward,
}

/// One dylib dependency, in load-command order (its 1-based position is the
/// library ordinal that binds refer to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DylibRef {
    pub kind: DylibLinkKind,
    pub install_name: String,
    pub current_version: u32,
    pub compatibility_version: u32,
}

/// A section of a 64-bit segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub segment: String,
    pub name: String,
    pub addr: u64,
    pub size: u64,
    pub file_offset: u32,
    pub flags: u32,
}

impl Section {
    /// The `S_*` type in the low byte of the flags.
    pub fn section_type(&self) -> u32 {
        self.flags & SECTION_TYPE_MASK
    }
}

/// An `LC_SEGMENT_64` with its sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub name: String,
    pub vmaddr: u64,
    pub vmsize: u64,
    pub fileoff: u64,
    pub filesize: u64,
    pub maxprot: u32,
    pub initprot: u32,
    pub sections: Vec<Section>,
}

/// A `linkedit_data_command`: a range of `__LINKEDIT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkeditRange {
    pub offset: u32,
    pub size: u32,
}

/// `LC_DYLD_INFO` / `LC_DYLD_INFO_ONLY`: the classic opcode streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DyldInfo {
    pub rebase: LinkeditRange,
    pub bind: LinkeditRange,
    pub weak_bind: LinkeditRange,
    pub lazy_bind: LinkeditRange,
    pub export: LinkeditRange,
}

/// `LC_SYMTAB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymtabRange {
    pub symoff: u32,
    pub nsyms: u32,
    pub stroff: u32,
    pub strsize: u32,
}

/// `LC_BUILD_VERSION`: platform (1 = macOS) and versions as `xxxx.yy.zz` nibbles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildVersion {
    pub platform: u32,
    pub minos: u32,
    pub sdk: u32,
}

/// Formats a packed `xxxx.yy.zz` version.
pub fn format_version(v: u32) -> String {
    format!("{}.{}.{}", v >> 16, (v >> 8) & 0xff, v & 0xff)
}

/// A parsed 64-bit little-endian Mach-O image (one slice).
#[derive(Debug, Clone)]
pub struct MachO<'a> {
    data: &'a [u8],
    pub cputype: u32,
    pub cpusubtype: u32,
    pub file_type: FileType,
    pub flags: u32,
    /// Every load command's `cmd` value, in order.
    pub load_commands: Vec<u32>,
    pub segments: Vec<Segment>,
    pub dylibs: Vec<DylibRef>,
    /// `LC_ID_DYLIB` install name.
    pub install_name: Option<String>,
    pub rpaths: Vec<String>,
    pub code_signature: Option<LinkeditRange>,
    pub dyld_info: Option<DyldInfo>,
    pub chained_fixups: Option<LinkeditRange>,
    pub exports_trie: Option<LinkeditRange>,
    pub symtab: Option<SymtabRange>,
    pub build_version: Option<BuildVersion>,
    /// `LC_MAIN` entry offset, for executables.
    pub entry_offset: Option<u64>,
}

impl<'a> MachO<'a> {
    /// Parses one thin image (use [`arm64_image`] first for universal files).
    pub fn parse(data: &'a [u8]) -> Result<Self, MachOError> {
        let b = Bytes::new(data);
        match container(data)? {
            Container::Thin { .. } => {}
            Container::Fat(_) => {
                return Err(MachOError::Unsupported {
                    what: "universal file given where one image was expected; select a slice first"
                        .to_string(),
                })
            }
        }
        let cputype = b.u32_le(4, "mach header")?;
        let cpusubtype = b.u32_le(8, "mach header")?;
        let file_type = FileType::from_raw(b.u32_le(12, "mach header")?);
        let ncmds = b.u32_le(16, "mach header")?;
        let sizeofcmds = b.u32_le(20, "mach header")?;
        let flags = b.u32_le(24, "mach header")?;
        let header_size = 32usize;
        let cmds_end = header_size
            .checked_add(sizeofcmds as usize)
            .ok_or_else(|| malformed("sizeofcmds overflows"))?;
        if cmds_end > data.len() {
            return Err(MachOError::Truncated {
                what: "load commands",
                offset: header_size as u64,
            });
        }
        let mut image = MachO {
            data,
            cputype,
            cpusubtype,
            file_type,
            flags,
            // Each command takes at least 8 bytes: do not trust `ncmds` for the allocation.
            load_commands: Vec::with_capacity((ncmds as usize).min(sizeofcmds as usize / 8)),
            segments: Vec::new(),
            dylibs: Vec::new(),
            install_name: None,
            rpaths: Vec::new(),
            code_signature: None,
            dyld_info: None,
            chained_fixups: None,
            exports_trie: None,
            symtab: None,
            build_version: None,
            entry_offset: None,
        };
        let mut at = header_size;
        for index in 0..ncmds {
            let cmd = b.u32_le(at, "load command")?;
            let cmdsize = b.u32_le(at + 4, "load command")? as usize;
            if cmdsize < 8 || at + cmdsize > cmds_end {
                return Err(malformed(format!(
                    "load command {index} ({cmd:#x}) has size {cmdsize}, outside the load-command area"
                )));
            }
            let lc = Bytes::new(&data[at..at + cmdsize]);
            image.load_commands.push(cmd);
            match cmd {
                LC_SEGMENT_64 => image.segments.push(parse_segment(&lc)?),
                LC_LOAD_DYLIB | LC_LOAD_WEAK_DYLIB | LC_REEXPORT_DYLIB | LC_LAZY_LOAD_DYLIB
                | LC_LOAD_UPWARD_DYLIB => {
                    let kind = match cmd {
                        LC_LOAD_DYLIB => DylibLinkKind::Required,
                        LC_LOAD_WEAK_DYLIB => DylibLinkKind::Weak,
                        LC_REEXPORT_DYLIB => DylibLinkKind::Reexport,
                        LC_LAZY_LOAD_DYLIB => DylibLinkKind::Lazy,
                        _ => DylibLinkKind::Upward,
                    };
                    let (install_name, current_version, compatibility_version) = parse_dylib(&lc)?;
                    image.dylibs.push(DylibRef {
                        kind,
                        install_name,
                        current_version,
                        compatibility_version,
                    });
                }
                LC_ID_DYLIB => image.install_name = Some(parse_dylib(&lc)?.0),
                LC_RPATH => image.rpaths.push(lc_string(&lc, 8)?),
                LC_CODE_SIGNATURE => image.code_signature = Some(linkedit(&lc)?),
                LC_DYLD_CHAINED_FIXUPS => image.chained_fixups = Some(linkedit(&lc)?),
                LC_DYLD_EXPORTS_TRIE => image.exports_trie = Some(linkedit(&lc)?),
                LC_DYLD_INFO | LC_DYLD_INFO_ONLY => {
                    let r = |o: usize| -> Result<LinkeditRange, MachOError> {
                        Ok(LinkeditRange {
                            offset: lc.u32_le(o, "dyld_info_command")?,
                            size: lc.u32_le(o + 4, "dyld_info_command")?,
                        })
                    };
                    image.dyld_info = Some(DyldInfo {
                        rebase: r(8)?,
                        bind: r(16)?,
                        weak_bind: r(24)?,
                        lazy_bind: r(32)?,
                        export: r(40)?,
                    });
                }
                LC_SYMTAB => {
                    image.symtab = Some(SymtabRange {
                        symoff: lc.u32_le(8, "symtab_command")?,
                        nsyms: lc.u32_le(12, "symtab_command")?,
                        stroff: lc.u32_le(16, "symtab_command")?,
                        strsize: lc.u32_le(20, "symtab_command")?,
                    })
                }
                LC_BUILD_VERSION => {
                    image.build_version = Some(BuildVersion {
                        platform: lc.u32_le(8, "build_version_command")?,
                        minos: lc.u32_le(12, "build_version_command")?,
                        sdk: lc.u32_le(16, "build_version_command")?,
                    })
                }
                LC_MAIN => image.entry_offset = Some(lc.u64_le(8, "entry_point_command")?),
                _ => {}
            }
            at += cmdsize;
        }
        Ok(image)
    }

    /// The image bytes this was parsed from.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// True for plain arm64 (not arm64e).
    pub fn is_arm64(&self) -> bool {
        self.cputype == CPU_TYPE_ARM64 && self.cpusubtype & 0xff != CPU_SUBTYPE_ARM64E
    }

    pub fn cpu_name(&self) -> String {
        cpu_name(self.cputype, self.cpusubtype)
    }

    /// True when the header asks for two-level namespace binding and does not force flat.
    pub fn is_two_level(&self) -> bool {
        self.flags & MH_TWOLEVEL != 0 && self.flags & MH_FORCE_FLAT == 0
    }

    /// The first section named `segment,section`.
    pub fn section(&self, segment: &str, section: &str) -> Option<&Section> {
        self.sections()
            .find(|s| s.segment == segment && s.name == section)
    }

    /// Every section of every segment, in file order.
    pub fn sections(&self) -> impl Iterator<Item = &Section> {
        self.segments.iter().flat_map(|s| s.sections.iter())
    }

    /// The interposing section dyld reads: `S_INTERPOSING`, or a section named
    /// `__interpose` in a `__DATA*` / `__AUTH*` segment.
    pub fn interpose_section(&self) -> Option<&Section> {
        self.sections().find(|s| {
            s.section_type() == S_INTERPOSING
                || (s.name == "__interpose"
                    && (s.segment.starts_with("__DATA") || s.segment.starts_with("__AUTH")))
        })
    }

    /// Sections holding initializers (`S_MOD_INIT_FUNC_POINTERS` or `S_INIT_FUNC_OFFSETS`).
    pub fn initializer_sections(&self) -> impl Iterator<Item = &Section> {
        self.sections().filter(|s| {
            matches!(
                s.section_type(),
                S_MOD_INIT_FUNC_POINTERS | S_INIT_FUNC_OFFSETS
            ) && s.size > 0
        })
    }

    /// True when the image has a `__RESTRICT,__restrict` section, which makes
    /// dyld ignore `DYLD_*` variables for the process.
    pub fn has_restrict_segment(&self) -> bool {
        self.section("__RESTRICT", "__restrict").is_some()
    }

    /// The install name of the dylib a bind ordinal refers to (1-based).
    pub fn dylib_for_ordinal(&self, ordinal: LibraryOrdinal) -> Option<&DylibRef> {
        match ordinal {
            LibraryOrdinal::Dylib(n) if n >= 1 => self.dylibs.get(usize::from(n) - 1),
            _ => None,
        }
    }

    /// The segment containing a virtual address.
    pub fn segment_for_address(&self, addr: u64) -> Option<(usize, &Segment)> {
        self.segments
            .iter()
            .enumerate()
            .find(|(_, s)| addr >= s.vmaddr && addr - s.vmaddr < s.vmsize)
    }

    /// The file bytes of a section (empty for zero-fill sections).
    pub fn section_bytes(&self, section: &Section) -> Result<&'a [u8], MachOError> {
        if section.file_offset == 0 {
            return Ok(&[]);
        }
        Bytes::new(self.data).slice(
            section.file_offset as usize,
            section.size as usize,
            "section contents",
        )
    }

    /// Reads the 8-byte little-endian pointer stored at a virtual address in the file.
    pub fn read_pointer(&self, addr: u64) -> Result<u64, MachOError> {
        let (_, seg) = self
            .segment_for_address(addr)
            .ok_or_else(|| malformed(format!("address {addr:#x} is in no segment")))?;
        let off = seg.fileoff + (addr - seg.vmaddr);
        Bytes::new(self.data).u64_le(off as usize, "pointer")
    }

    /// Every symbol binding dyld performs for this image: classic bind,
    /// weak-bind and lazy-bind opcodes, or chained-fixup imports.
    pub fn binds(&self) -> Result<Vec<Bind>, MachOError> {
        let mut out = Vec::new();
        if let Some(info) = self.dyld_info {
            binds::read_opcodes(self, info.bind, BindSource::Bind, &mut out)?;
            binds::read_opcodes(self, info.weak_bind, BindSource::WeakBind, &mut out)?;
            binds::read_opcodes(self, info.lazy_bind, BindSource::LazyBind, &mut out)?;
        }
        if let Some(fixups) = self.chained_fixups {
            chained::read_binds(self, fixups, &mut out)?;
        }
        Ok(out)
    }

    /// Every exported symbol, from `LC_DYLD_EXPORTS_TRIE` or `LC_DYLD_INFO`'s trie.
    pub fn exports(&self) -> Result<Vec<Export>, MachOError> {
        let range = self
            .exports_trie
            .or_else(|| self.dyld_info.map(|d| d.export));
        match range {
            Some(r) if r.size > 0 => exports::walk(self.data, r),
            _ => Ok(Vec::new()),
        }
    }

    /// The embedded code signature, if the image has `LC_CODE_SIGNATURE`.
    pub fn code_signature(&self) -> Result<Option<CodeSignature>, MachOError> {
        match self.code_signature {
            Some(r) => codesign::parse(self.data, r).map(Some),
            None => Ok(None),
        }
    }

    /// The embedded code signature without re-hashing the code pages: flags,
    /// team, platform and entitlements only (the launcher's per-start check).
    pub fn code_signature_without_page_hashes(&self) -> Result<Option<CodeSignature>, MachOError> {
        match self.code_signature {
            Some(r) => codesign::parse_without_page_hashes(self.data, r).map(Some),
            None => Ok(None),
        }
    }

    /// Names of undefined symbols in the symbol table with the library
    /// ordinal from `n_desc` (two-level namespace), for images without binds.
    pub fn undefined_symbols(&self) -> Result<Vec<(String, LibraryOrdinal)>, MachOError> {
        let Some(st) = self.symtab else {
            return Ok(Vec::new());
        };
        let b = Bytes::new(self.data);
        let strings = b.slice(st.stroff as usize, st.strsize as usize, "string table")?;
        let mut out = Vec::new();
        for i in 0..st.nsyms as usize {
            let at = st.symoff as usize + i * 16;
            let strx = b.u32_le(at, "nlist_64")? as usize;
            let n_type = b.u8(at + 4, "nlist_64")?;
            let n_desc = b.u16_le(at + 6, "nlist_64")?;
            const N_STAB: u8 = 0xe0;
            const N_TYPE: u8 = 0x0e;
            const N_UNDF: u8 = 0x0;
            const N_EXT: u8 = 0x01;
            if n_type & N_STAB != 0 || n_type & N_TYPE != N_UNDF || n_type & N_EXT == 0 {
                continue;
            }
            let name = Bytes::new(strings).cstr(strx, "symbol name")?;
            let ordinal = LibraryOrdinal::from_raw(i64::from((n_desc >> 8) as u8 as i8));
            out.push((name, ordinal));
        }
        Ok(out)
    }
}

fn fixed_name(raw: &[u8]) -> String {
    let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

fn parse_segment(lc: &Bytes<'_>) -> Result<Segment, MachOError> {
    let name = fixed_name(lc.slice(8, 16, "segment name")?);
    let nsects = lc.u32_le(64, "segment_command_64")? as usize;
    let mut sections = Vec::with_capacity(nsects.min(256));
    for i in 0..nsects {
        let at = 72 + i * 80;
        sections.push(Section {
            name: fixed_name(lc.slice(at, 16, "section name")?),
            segment: fixed_name(lc.slice(at + 16, 16, "section segment name")?),
            addr: lc.u64_le(at + 32, "section_64")?,
            size: lc.u64_le(at + 40, "section_64")?,
            file_offset: lc.u32_le(at + 48, "section_64")?,
            flags: lc.u32_le(at + 64, "section_64")?,
        });
    }
    Ok(Segment {
        name,
        vmaddr: lc.u64_le(24, "segment_command_64")?,
        vmsize: lc.u64_le(32, "segment_command_64")?,
        fileoff: lc.u64_le(40, "segment_command_64")?,
        filesize: lc.u64_le(48, "segment_command_64")?,
        maxprot: lc.u32_le(56, "segment_command_64")?,
        initprot: lc.u32_le(60, "segment_command_64")?,
        sections,
    })
}

fn lc_string(lc: &Bytes<'_>, offset_field: usize) -> Result<String, MachOError> {
    let off = lc.u32_le(offset_field, "load command string offset")? as usize;
    lc.cstr(off, "load command string")
}

fn parse_dylib(lc: &Bytes<'_>) -> Result<(String, u32, u32), MachOError> {
    Ok((
        lc_string(lc, 8)?,
        lc.u32_le(16, "dylib_command")?,
        lc.u32_le(20, "dylib_command")?,
    ))
}

fn linkedit(lc: &Bytes<'_>) -> Result<LinkeditRange, MachOError> {
    Ok(LinkeditRange {
        offset: lc.u32_le(8, "linkedit_data_command")?,
        size: lc.u32_le(12, "linkedit_data_command")?,
    })
}
