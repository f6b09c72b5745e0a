//! The one ELF fact the launcher needs: does the program have a dynamic
//! loader (`PT_INTERP`)? A statically linked program never runs `ld.so`, so
//! `LD_PRELOAD` is silently ignored, and the guard would not load.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

const PT_INTERP: u32 = 3;

/// What the ELF header and program headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfFacts {
    /// A `PT_INTERP` program header is present: `ld.so` runs and honours `LD_PRELOAD`.
    pub has_interpreter: bool,
}

/// Read the program headers of the ELF file at `path`. `None` when it is not a well-formed ELF file.
pub fn read_elf_facts(path: &Path) -> Option<ElfFacts> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut header = [0u8; 64];
    file.read_exact(&mut header[..52]).ok()?;
    let _ = file.read(&mut header[52..]);
    let layout = ElfLayout::from_ident(&header)?;
    let (phoff, entsize, count) = layout.program_header_table(&header)?;
    let table_len = entsize.checked_mul(count)?;
    if table_len > 1 << 20 {
        return None;
    }
    let mut table = vec![0u8; table_len];
    file.seek(SeekFrom::Start(phoff)).ok()?;
    file.read_exact(&mut table).ok()?;
    Some(elf_facts_from_table(&layout, &table, entsize))
}

/// Parse the ELF header and program-header table held in memory (pure, for tests).
pub fn elf_facts_from_bytes(bytes: &[u8]) -> Option<ElfFacts> {
    let layout = ElfLayout::from_ident(bytes)?;
    let (phoff, entsize, count) = layout.program_header_table(bytes)?;
    let start = usize::try_from(phoff).ok()?;
    let table = bytes.get(start..start.checked_add(entsize.checked_mul(count)?)?)?;
    Some(elf_facts_from_table(&layout, table, entsize))
}

fn elf_facts_from_table(layout: &ElfLayout, table: &[u8], entsize: usize) -> ElfFacts {
    let has_interpreter = table
        .chunks_exact(entsize)
        .any(|ph| layout.u32_at(ph, 0) == Some(PT_INTERP));
    ElfFacts { has_interpreter }
}

struct ElfLayout {
    is_64: bool,
    big_endian: bool,
}

impl ElfLayout {
    fn from_ident(bytes: &[u8]) -> Option<ElfLayout> {
        if bytes.get(..4)? != b"\x7fELF" {
            return None;
        }
        let is_64 = match bytes.get(4)? {
            1 => false,
            2 => true,
            _ => return None,
        };
        let big_endian = match bytes.get(5)? {
            1 => false,
            2 => true,
            _ => return None,
        };
        Some(ElfLayout { is_64, big_endian })
    }

    /// (offset, entry size, entry count) of the program-header table.
    fn program_header_table(&self, header: &[u8]) -> Option<(u64, usize, usize)> {
        let (phoff, entsize, count) = if self.is_64 {
            (
                self.u64_at(header, 0x20)?,
                self.u16_at(header, 0x36)?,
                self.u16_at(header, 0x38)?,
            )
        } else {
            (
                u64::from(self.u32_at(header, 0x1c)?),
                self.u16_at(header, 0x2a)?,
                self.u16_at(header, 0x2c)?,
            )
        };
        let min_entry = if self.is_64 { 56 } else { 32 };
        if usize::from(entsize) < min_entry {
            return None;
        }
        Some((phoff, usize::from(entsize), usize::from(count)))
    }

    fn u16_at(&self, b: &[u8], at: usize) -> Option<u16> {
        let raw: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
        Some(if self.big_endian {
            u16::from_be_bytes(raw)
        } else {
            u16::from_le_bytes(raw)
        })
    }

    fn u32_at(&self, b: &[u8], at: usize) -> Option<u32> {
        let raw: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(if self.big_endian {
            u32::from_be_bytes(raw)
        } else {
            u32::from_le_bytes(raw)
        })
    }

    fn u64_at(&self, b: &[u8], at: usize) -> Option<u64> {
        let raw: [u8; 8] = b.get(at..at + 8)?.try_into().ok()?;
        Some(if self.big_endian {
            u64::from_be_bytes(raw)
        } else {
            u64::from_le_bytes(raw)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal little-endian ELF64 image with the given program-header types.
    fn elf64(types: &[u32]) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&(types.len() as u16).to_le_bytes());
        for t in types {
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&t.to_le_bytes());
            b.extend(ph);
        }
        b
    }

    #[test]
    fn interpreter_header_is_found() {
        assert_eq!(
            elf_facts_from_bytes(&elf64(&[6, 3, 1, 2])),
            Some(ElfFacts {
                has_interpreter: true
            })
        );
        assert_eq!(
            elf_facts_from_bytes(&elf64(&[1, 1, 2])),
            Some(ElfFacts {
                has_interpreter: false
            })
        );
    }

    #[test]
    fn malformed_input_is_not_elf() {
        assert_eq!(elf_facts_from_bytes(b"#!/bin/sh\n"), None);
        let mut truncated = elf64(&[3]);
        truncated.truncate(80);
        assert_eq!(elf_facts_from_bytes(&truncated), None);
        let mut bad_class = elf64(&[3]);
        bad_class[4] = 9;
        assert_eq!(elf_facts_from_bytes(&bad_class), None);
    }

    #[test]
    fn this_test_binary_is_dynamic() {
        let me = std::env::current_exe().unwrap();
        if cfg!(target_os = "linux") {
            assert_eq!(
                read_elf_facts(&me),
                Some(ElfFacts {
                    has_interpreter: true
                })
            );
        }
    }
}
