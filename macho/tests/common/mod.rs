//! Builds small, well-formed arm64 Mach-O images in memory (header, load
//! commands, bind opcodes, an ad-hoc code signature with real SHA-256 page
//! hashes) so the checker can be tested on good files and on files broken
//! in exactly one way, without an Apple toolchain.

#![allow(dead_code)] // each test file uses part of the builder

use sha2::{Digest, Sha256};

pub const CPU_TYPE_ARM64: u32 = 0x0100_000c;
pub const CPU_TYPE_X86_64: u32 = 0x0100_0007;
pub const MH_EXECUTE: u32 = 2;
pub const MH_DYLIB: u32 = 6;
pub const MH_TWOLEVEL: u32 = 0x80;
pub const LC_LOAD_DYLIB: u32 = 0xc;
pub const LC_LOAD_WEAK_DYLIB: u32 = 0x8000_0018;
pub const METAL: &str = "/System/Library/Frameworks/Metal.framework/Versions/A/Metal";
pub const LIBSYSTEM: &str = "/usr/lib/libSystem.B.dylib";

const PAGE: usize = 0x4000;
const TEXT_CODE_AT: u64 = 0x1000;
const DATA_VM: u64 = 0x4000;
const LINKEDIT_VM: u64 = 0x8000;

/// One bind of an imported symbol into `__DATA` at `data_offset`.
#[derive(Clone, Debug)]
pub struct BindSpec {
    pub symbol: String,
    /// Positive: 1-based dylib ordinal; 0 and negatives: the special ordinals (-2 = flat).
    pub ordinal: i8,
    pub weak_import: bool,
    pub data_offset: u64,
}

#[derive(Clone, Debug)]
pub struct ImageSpec {
    pub cputype: u32,
    pub filetype: u32,
    pub flags: u32,
    pub install_name: Option<String>,
    pub dylibs: Vec<(u32, String)>,
    pub binds: Vec<BindSpec>,
    /// Name of the section holding the interpose tuples (`__interpose` when good).
    pub interpose_section: Option<String>,
    pub interpose_tuples: u64,
    pub initializer: bool,
    pub entry_point: bool,
    pub signed: bool,
    pub signature_flags: u32,
    /// Classic bind opcodes (`LC_DYLD_INFO_ONLY`, what zig's linker writes) or
    /// chained fixups (`LC_DYLD_CHAINED_FIXUPS`, what Apple's linker writes).
    pub fixups: FixupStyle,
    /// Exported `(name, offset)` pairs, written as an export trie.
    pub exports: Vec<(String, u64)>,
    /// `LC_BUILD_VERSION` minimum macOS (packed `xxxx.yy.zz`); `None` omits the command.
    pub min_macos: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FixupStyle {
    Opcodes,
    Chained,
}

impl ImageSpec {
    /// A dylib that passes every check for `libmetal_guard_inject.dylib`.
    pub fn good_dylib() -> Self {
        ImageSpec {
            cputype: CPU_TYPE_ARM64,
            filetype: MH_DYLIB,
            flags: MH_TWOLEVEL,
            install_name: Some("@rpath/libmetal_guard_inject.dylib".to_string()),
            dylibs: vec![
                (LC_LOAD_DYLIB, LIBSYSTEM.to_string()),
                (LC_LOAD_WEAK_DYLIB, METAL.to_string()),
            ],
            binds: vec![
                BindSpec {
                    symbol: "_MTLCreateSystemDefaultDevice".to_string(),
                    ordinal: 2,
                    weak_import: true,
                    data_offset: 8,
                },
                BindSpec {
                    symbol: "_MTLCopyAllDevices".to_string(),
                    ordinal: 2,
                    weak_import: true,
                    data_offset: 24,
                },
                BindSpec {
                    symbol: "_free".to_string(),
                    ordinal: 1,
                    weak_import: false,
                    data_offset: 0x40,
                },
            ],
            interpose_section: Some("__interpose".to_string()),
            interpose_tuples: 2,
            initializer: true,
            entry_point: false,
            signed: true,
            signature_flags: 0x0002_0002,
            fixups: FixupStyle::Opcodes,
            exports: vec![("_metal_guard_inject_version".to_string(), TEXT_CODE_AT)],
            min_macos: Some(0x000b_0000),
        }
    }

    /// An executable that passes the executable checks.
    pub fn good_executable() -> Self {
        ImageSpec {
            cputype: CPU_TYPE_ARM64,
            filetype: MH_EXECUTE,
            flags: MH_TWOLEVEL | 0x0020_0000,
            install_name: None,
            dylibs: vec![(LC_LOAD_DYLIB, LIBSYSTEM.to_string())],
            binds: vec![BindSpec {
                symbol: "_free".to_string(),
                ordinal: 1,
                weak_import: false,
                data_offset: 0x40,
            }],
            interpose_section: None,
            interpose_tuples: 0,
            initializer: false,
            entry_point: true,
            signed: true,
            signature_flags: 0x0002_0002,
            fixups: FixupStyle::Opcodes,
            exports: Vec::new(),
            min_macos: Some(0x000b_0000),
        }
    }

    pub fn build(&self) -> Vec<u8> {
        let fixups = match self.fixups {
            FixupStyle::Opcodes => self.bind_opcodes(),
            FixupStyle::Chained => self.chained_fixups_blob(),
        };
        let trie = export_trie(&self.exports);
        // __LINKEDIT: fixups, then the export trie, then the signature.
        let fixups_at = LINKEDIT_VM as usize;
        let trie_at = align(fixups_at + fixups.len(), 8);
        let sig_at = align(trie_at + trie.len(), 16);
        let layout = LinkeditLayout {
            fixups_at,
            fixups_len: fixups.len(),
            trie_at,
            trie_len: trie.len(),
            sig_at,
            sig_len: if self.signed {
                code_signature(&[0u8; 0], 0, self.signature_flags).len()
                    + (sig_at.div_ceil(4096)) * 32
            } else {
                0
            },
        };
        let mut file = vec![0u8; sig_at];
        // __TEXT code: a few `ret` instructions.
        for i in 0..4 {
            file[TEXT_CODE_AT as usize + i * 4..TEXT_CODE_AT as usize + i * 4 + 4]
                .copy_from_slice(&0xd65f_03c0u32.to_le_bytes());
        }
        for (offset, value) in self.data_pointers() {
            let at = DATA_VM as usize + offset as usize;
            file[at..at + 8].copy_from_slice(&value.to_le_bytes());
        }
        file[fixups_at..fixups_at + fixups.len()].copy_from_slice(&fixups);
        file[trie_at..trie_at + trie.len()].copy_from_slice(&trie);
        let commands = self.load_commands(&layout);
        let header = self.header(&commands);
        file[..header.len()].copy_from_slice(&header);
        file[header.len()..header.len() + commands.bytes.len()].copy_from_slice(&commands.bytes);
        assert!(header.len() + commands.bytes.len() < TEXT_CODE_AT as usize);
        if self.signed {
            let sig = code_signature(&file, sig_at, self.signature_flags);
            assert_eq!(sig.len(), layout.sig_len);
            file.extend_from_slice(&sig);
        }
        file
    }

    /// Rebased pointers in `__DATA` (offset, target): interpose replacements
    /// and the initializer.
    fn rebases(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = (0..self.interpose_tuples)
            .map(|t| (t * 16, TEXT_CODE_AT + 4 * t))
            .collect();
        if self.initializer {
            out.push((0x20, TEXT_CODE_AT));
        }
        out
    }

    /// The 8-byte values stored in `__DATA`: plain addresses for opcode-style
    /// images; encoded chain entries for chained fixups.
    fn data_pointers(&self) -> Vec<(u64, u64)> {
        match self.fixups {
            FixupStyle::Opcodes => self.rebases(),
            FixupStyle::Chained => {
                // DYLD_CHAINED_PTR_64_OFFSET: bind = bit 63 | ordinal (24 bits);
                // rebase = target offset (36 bits); next (in 4-byte strides) at bit 51.
                let mut slots: Vec<(u64, u64)> = self.rebases();
                for (i, b) in self.binds.iter().enumerate() {
                    slots.push((b.data_offset, (1u64 << 63) | i as u64));
                }
                slots.sort();
                let mut out = Vec::new();
                for (k, (offset, value)) in slots.iter().enumerate() {
                    let next = slots.get(k + 1).map_or(0, |(n, _)| (n - offset) / 4);
                    out.push((*offset, value | (next << 51)));
                }
                out
            }
        }
    }

    /// `LC_DYLD_CHAINED_FIXUPS` payload: header, starts for `__DATA` (one
    /// page), `DYLD_CHAINED_IMPORT` entries, symbol names.
    fn chained_fixups_blob(&self) -> Vec<u8> {
        let starts_offset = 32u32;
        let seg_count = 3u32; // __TEXT, __DATA, __LINKEDIT
        let seg_info = 4 + 4 * seg_count; // __DATA's starts, relative to starts_in_image
        let first = self
            .rebases()
            .iter()
            .map(|(o, _)| *o)
            .chain(self.binds.iter().map(|b| b.data_offset))
            .min();
        let starts_len = 24u32;
        let imports_offset = starts_offset + seg_info + starts_len;
        let symbols_offset = imports_offset + 4 * self.binds.len() as u32;
        let mut symbols = vec![0u8];
        let mut imports = Vec::new();
        for b in &self.binds {
            let name_offset = symbols.len() as u32;
            symbols.extend_from_slice(b.symbol.as_bytes());
            symbols.push(0);
            let ordinal = u32::from(b.ordinal as u8); // 0xfe = flat lookup
            imports.extend_from_slice(
                &(ordinal | (u32::from(b.weak_import) << 8) | (name_offset << 9)).to_le_bytes(),
            );
        }
        let mut out = Vec::new();
        for v in [
            0u32,
            starts_offset,
            imports_offset,
            symbols_offset,
            self.binds.len() as u32,
            1, // DYLD_CHAINED_IMPORT
            0, // uncompressed symbols
            0, // padding to starts_offset
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&seg_count.to_le_bytes());
        for v in [0u32, seg_info, 0] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&starts_len.to_le_bytes());
        out.extend_from_slice(&(PAGE as u16).to_le_bytes());
        out.extend_from_slice(&6u16.to_le_bytes()); // DYLD_CHAINED_PTR_64_OFFSET
        out.extend_from_slice(&DATA_VM.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&(first.map_or(0xffff, |o| o as u16)).to_le_bytes());
        assert_eq!(out.len() as u32, imports_offset);
        out.extend_from_slice(&imports);
        out.extend_from_slice(&symbols);
        out
    }

    fn header(&self, commands: &Commands) -> Vec<u8> {
        let mut h = Vec::new();
        for v in [
            0xfeed_facfu32,
            self.cputype,
            0,
            self.filetype,
            commands.count,
            commands.bytes.len() as u32,
            self.flags,
            0,
        ] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        h
    }

    fn bind_opcodes(&self) -> Vec<u8> {
        let mut ops = Vec::new();
        for b in &self.binds {
            if b.ordinal > 0 {
                ops.push(0x10 | b.ordinal as u8);
            } else {
                ops.push(0x30 | (b.ordinal as u8 & 0x0f));
            }
            ops.push(0x40 | u8::from(b.weak_import));
            ops.extend_from_slice(b.symbol.as_bytes());
            ops.push(0);
            ops.push(0x51); // pointer
            ops.push(0x70 | 1); // segment 1 (__DATA)
            uleb(&mut ops, b.data_offset);
            ops.push(0x90); // DO_BIND
        }
        ops.push(0x00);
        ops
    }

    fn load_commands(&self, layout: &LinkeditLayout) -> Commands {
        let mut c = Commands::default();
        let linkedit_size = (layout.sig_at + layout.sig_len - LINKEDIT_VM as usize) as u64;
        c.segment(
            "__TEXT",
            0,
            PAGE as u64,
            5,
            &[("__text", TEXT_CODE_AT, 16, 0x8000_0400)],
        );
        let mut data_sections: Vec<(&str, u64, u64, u32)> = Vec::new();
        if let Some(name) = &self.interpose_section {
            data_sections.push((name.as_str(), DATA_VM, self.interpose_tuples * 16, 0));
        }
        if self.initializer {
            data_sections.push(("__mod_init_func", DATA_VM + 0x20, 8, 0x9));
        }
        data_sections.push(("__got", DATA_VM + 0x40, 8, 0x6));
        c.segment("__DATA", DATA_VM, PAGE as u64, 3, &data_sections);
        c.segment_sized("__LINKEDIT", LINKEDIT_VM, linkedit_size, 1);
        if let Some(name) = &self.install_name {
            c.dylib(0xd, name);
        }
        for (cmd, name) in &self.dylibs {
            c.dylib(*cmd, name);
        }
        let linkedit = |off: usize, len: usize| {
            let mut body = (off as u32).to_le_bytes().to_vec();
            body.extend_from_slice(&(len as u32).to_le_bytes());
            body
        };
        match self.fixups {
            FixupStyle::Opcodes => {
                // LC_DYLD_INFO_ONLY: the bind stream and the export trie.
                let mut info = vec![0u8; 40];
                info[8..16].copy_from_slice(&linkedit(layout.fixups_at, layout.fixups_len));
                info[32..40].copy_from_slice(&linkedit(layout.trie_at, layout.trie_len));
                c.raw(0x8000_0022, &info);
            }
            FixupStyle::Chained => {
                c.raw(0x8000_0034, &linkedit(layout.fixups_at, layout.fixups_len));
                c.raw(0x8000_0033, &linkedit(layout.trie_at, layout.trie_len));
            }
        }
        if let Some(minos) = self.min_macos {
            // platform macOS, minos, sdk 14.0, no tools
            let mut body = Vec::new();
            for v in [1u32, minos, 0x000e_0000, 0] {
                body.extend_from_slice(&v.to_le_bytes());
            }
            c.raw(0x32, &body);
        }
        if self.entry_point {
            let mut main = TEXT_CODE_AT.to_le_bytes().to_vec();
            main.extend_from_slice(&0u64.to_le_bytes());
            c.raw(0x8000_0028, &main);
        }
        if self.signed {
            c.raw(0x1d, &linkedit(layout.sig_at, layout.sig_len));
        }
        c
    }
}

struct LinkeditLayout {
    fixups_at: usize,
    fixups_len: usize,
    trie_at: usize,
    trie_len: usize,
    sig_at: usize,
    sig_len: usize,
}

/// An export trie: a root whose edges are the whole names, one terminal node each.
pub fn export_trie(exports: &[(String, u64)]) -> Vec<u8> {
    if exports.is_empty() {
        return Vec::new();
    }
    let nodes: Vec<Vec<u8>> = exports
        .iter()
        .map(|(_, addr)| {
            let mut info = vec![0u8]; // flags: regular
            uleb(&mut info, *addr);
            let mut node = Vec::new();
            uleb(&mut node, info.len() as u64);
            node.extend_from_slice(&info);
            node.push(0); // no children
            node
        })
        .collect();
    // The root's size depends on the ULEB widths of the child offsets: iterate.
    let mut root_len = 2 + exports.iter().map(|(n, _)| n.len() + 2).sum::<usize>();
    loop {
        let mut root = vec![0u8, exports.len() as u8];
        let mut at = root_len;
        for ((name, _), node) in exports.iter().zip(&nodes) {
            root.extend_from_slice(name.as_bytes());
            root.push(0);
            uleb(&mut root, at as u64);
            at += node.len();
        }
        if root.len() == root_len {
            for node in &nodes {
                root.extend_from_slice(node);
            }
            return root;
        }
        root_len = root.len();
    }
}

#[derive(Default)]
struct Commands {
    count: u32,
    bytes: Vec<u8>,
}

impl Commands {
    fn raw(&mut self, cmd: u32, body: &[u8]) {
        let size = align(8 + body.len(), 8);
        self.bytes.extend_from_slice(&cmd.to_le_bytes());
        self.bytes.extend_from_slice(&(size as u32).to_le_bytes());
        self.bytes.extend_from_slice(body);
        self.bytes
            .resize(self.bytes.len() + size - 8 - body.len(), 0);
        self.count += 1;
    }

    fn segment(
        &mut self,
        name: &str,
        vm: u64,
        size: u64,
        prot: u32,
        sections: &[(&str, u64, u64, u32)],
    ) {
        let mut body = Vec::new();
        body.extend_from_slice(&fixed16(name));
        for v in [vm, size, vm, size] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        for v in [prot, prot, sections.len() as u32, 0] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        for (sect, addr, len, flags) in sections {
            body.extend_from_slice(&fixed16(sect));
            body.extend_from_slice(&fixed16(name));
            body.extend_from_slice(&addr.to_le_bytes());
            body.extend_from_slice(&len.to_le_bytes());
            // file offset == vm address in this layout
            for v in [*addr as u32, 0, 0, 0, *flags, 0, 0, 0] {
                body.extend_from_slice(&v.to_le_bytes());
            }
        }
        self.raw(0x19, &body);
    }

    fn segment_sized(&mut self, name: &str, vm: u64, size: u64, prot: u32) {
        self.segment(name, vm, size, prot, &[]);
    }

    fn dylib(&mut self, cmd: u32, name: &str) {
        let mut body = Vec::new();
        for v in [24u32, 2, 0x0001_0000, 0x0001_0000] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        self.raw(cmd, &body);
    }
}

fn fixed16(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..name.len()].copy_from_slice(name.as_bytes());
    out
}

fn align(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

pub fn uleb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A SuperBlob with one CodeDirectory (v0x20400, SHA-256, 4 KiB pages) over `file[..limit]`.
pub fn code_signature(file: &[u8], limit: usize, flags: u32) -> Vec<u8> {
    let ident = b"libmetal_guard_inject\0";
    let pages = limit.div_ceil(4096);
    let cd_header = 88usize;
    let hash_offset = cd_header + ident.len();
    let cd_len = hash_offset + pages * 32;
    let mut cd = Vec::with_capacity(cd_len);
    for v in [
        0xfade_0c02u32,
        cd_len as u32,
        0x20400,
        flags,
        hash_offset as u32,
        cd_header as u32,
        0,
        pages as u32,
        limit as u32,
    ] {
        cd.extend_from_slice(&v.to_be_bytes());
    }
    cd.extend_from_slice(&[32, 2, 0, 12]); // hashSize, hashType SHA-256, platform, 2^12 pages
    cd.extend_from_slice(&[0u8; 4]); // spare2
    cd.extend_from_slice(&[0u8; 4]); // scatterOffset
    cd.extend_from_slice(&[0u8; 4]); // teamOffset
    cd.extend_from_slice(&[0u8; 4]); // spare3
    cd.extend_from_slice(&0u64.to_be_bytes()); // codeLimit64
    cd.extend_from_slice(&0u64.to_be_bytes()); // execSegBase
    cd.extend_from_slice(&0x4000u64.to_be_bytes()); // execSegLimit
    cd.extend_from_slice(&0u64.to_be_bytes()); // execSegFlags
    assert_eq!(cd.len(), cd_header);
    cd.extend_from_slice(ident);
    for p in 0..pages {
        let end = ((p + 1) * 4096).min(limit);
        cd.extend_from_slice(&Sha256::digest(&file[p * 4096..end]));
    }
    let mut sb = Vec::new();
    for v in [0xfade_0cc0u32, (20 + cd.len()) as u32, 1, 0, 20] {
        sb.extend_from_slice(&v.to_be_bytes());
    }
    sb.extend_from_slice(&cd);
    sb
}

/// A universal file holding the given `(cputype, image)` slices.
pub fn fat(slices: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xcafe_babeu32.to_be_bytes());
    out.extend_from_slice(&(slices.len() as u32).to_be_bytes());
    let mut offset = align(8 + 20 * slices.len(), PAGE);
    let mut layout = Vec::new();
    for (cputype, image) in slices {
        for v in [*cputype, 0, offset as u32, image.len() as u32, 14] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        layout.push(offset);
        offset = align(offset + image.len(), PAGE);
    }
    for ((_, image), at) in slices.iter().zip(layout) {
        out.resize(at, 0);
        out.extend_from_slice(image);
    }
    out
}
