//! `LC_DYLD_CHAINED_FIXUPS`: the import table and the per-page pointer
//! chains that newer linkers emit instead of bind opcodes. We walk every
//! chain and report each bind (a pointer that names an import) as a [`Bind`].

use super::binds::{Bind, BindSource, LibraryOrdinal};
use super::bytes::Bytes;
use super::{malformed, LinkeditRange, MachO, MachOError};

const DYLD_CHAINED_IMPORT: u32 = 1;
const DYLD_CHAINED_IMPORT_ADDEND: u32 = 2;
const DYLD_CHAINED_IMPORT_ADDEND64: u32 = 3;

const DYLD_CHAINED_PTR_ARM64E: u16 = 1;
const DYLD_CHAINED_PTR_64: u16 = 2;
const DYLD_CHAINED_PTR_64_OFFSET: u16 = 6;
const DYLD_CHAINED_PTR_ARM64E_KERNEL: u16 = 7;
const DYLD_CHAINED_PTR_ARM64E_USERLAND: u16 = 9;
const DYLD_CHAINED_PTR_ARM64E_FIRMWARE: u16 = 10;
const DYLD_CHAINED_PTR_ARM64E_USERLAND24: u16 = 12;

const DYLD_CHAINED_PTR_START_NONE: u16 = 0xffff;
const DYLD_CHAINED_PTR_START_MULTI: u16 = 0x8000;

struct Import {
    library: LibraryOrdinal,
    weak_import: bool,
    name: String,
    addend: i64,
}

fn ordinal_from_narrow(raw: u64, bits: u32) -> LibraryOrdinal {
    // Ordinals are stored unsigned in `bits` bits; the top values are the
    // negative specials (0xff = -1, 0xfe = -2, 0xfd = -3).
    let max = (1u64 << bits) - 1;
    if raw > max - 16 {
        LibraryOrdinal::from_raw(raw as i64 - (max as i64 + 1))
    } else {
        LibraryOrdinal::from_raw(raw as i64)
    }
}

fn read_imports(fx: &Bytes<'_>) -> Result<Vec<Import>, MachOError> {
    let version = fx.u32_le(0, "dyld_chained_fixups_header")?;
    if version != 0 {
        return Err(MachOError::Unsupported {
            what: format!("chained fixups version {version}"),
        });
    }
    let imports_offset = fx.u32_le(8, "dyld_chained_fixups_header")? as usize;
    let symbols_offset = fx.u32_le(12, "dyld_chained_fixups_header")? as usize;
    let imports_count = fx.u32_le(16, "dyld_chained_fixups_header")? as usize;
    let imports_format = fx.u32_le(20, "dyld_chained_fixups_header")?;
    let symbols_format = fx.u32_le(24, "dyld_chained_fixups_header")?;
    if symbols_format != 0 {
        return Err(MachOError::Unsupported {
            what: "compressed chained-fixup symbol names".to_string(),
        });
    }
    let entry = match imports_format {
        DYLD_CHAINED_IMPORT => 4,
        DYLD_CHAINED_IMPORT_ADDEND => 8,
        DYLD_CHAINED_IMPORT_ADDEND64 => 16,
        other => {
            return Err(MachOError::Unsupported {
                what: format!("chained import format {other}"),
            })
        }
    };
    if imports_count.saturating_mul(entry) > fx.len() {
        return Err(malformed(format!(
            "chained fixups claim {imports_count} imports, more than fit"
        )));
    }
    let mut imports = Vec::with_capacity(imports_count);
    for i in 0..imports_count {
        let at = imports_offset + i * entry;
        let (library, weak_import, name_offset, addend) =
            if imports_format == DYLD_CHAINED_IMPORT_ADDEND64 {
                let raw = fx.u64_le(at, "chained import")?;
                (
                    ordinal_from_narrow(raw & 0xffff, 16),
                    raw & (1 << 16) != 0,
                    (raw >> 32) as usize,
                    fx.u64_le(at + 8, "chained import addend")? as i64,
                )
            } else {
                let raw = u64::from(fx.u32_le(at, "chained import")?);
                let addend = if imports_format == DYLD_CHAINED_IMPORT_ADDEND {
                    i64::from(fx.u32_le(at + 4, "chained import addend")? as i32)
                } else {
                    0
                };
                (
                    ordinal_from_narrow(raw & 0xff, 8),
                    raw & (1 << 8) != 0,
                    (raw >> 9) as usize,
                    addend,
                )
            };
        let name = fx.cstr(symbols_offset + name_offset, "chained import name")?;
        imports.push(Import {
            library,
            weak_import,
            name,
            addend,
        });
    }
    Ok(imports)
}

/// Decodes the fixups and appends every bind to `out`.
pub(crate) fn read_binds(
    image: &MachO<'_>,
    range: LinkeditRange,
    out: &mut Vec<Bind>,
) -> Result<(), MachOError> {
    let data = Bytes::new(image.data());
    let fx =
        Bytes::new(data.slice(range.offset as usize, range.size as usize, "chained fixups")?);
    let imports = read_imports(&fx)?;
    let starts_offset = fx.u32_le(4, "dyld_chained_fixups_header")? as usize;
    let seg_count = fx.u32_le(starts_offset, "dyld_chained_starts_in_image")? as usize;
    for seg_index in 0..seg_count {
        let info_offset = fx.u32_le(starts_offset + 4 + seg_index * 4, "segment starts offset")?;
        if info_offset == 0 {
            continue;
        }
        let s = starts_offset + info_offset as usize;
        let page_size = u64::from(fx.u16_le(s + 4, "dyld_chained_starts_in_segment")?);
        let pointer_format = fx.u16_le(s + 6, "dyld_chained_starts_in_segment")?;
        let page_count = fx.u16_le(s + 20, "dyld_chained_starts_in_segment")? as usize;
        let seg = image.segments.get(seg_index).ok_or_else(|| {
            malformed(format!(
                "chained fixups describe segment {seg_index}, but the image has {}",
                image.segments.len()
            ))
        })?;
        let (stride, is_arm64e) = match pointer_format {
            DYLD_CHAINED_PTR_64 | DYLD_CHAINED_PTR_64_OFFSET => (4u64, false),
            DYLD_CHAINED_PTR_ARM64E
            | DYLD_CHAINED_PTR_ARM64E_USERLAND
            | DYLD_CHAINED_PTR_ARM64E_USERLAND24 => (8u64, true),
            DYLD_CHAINED_PTR_ARM64E_KERNEL | DYLD_CHAINED_PTR_ARM64E_FIRMWARE => (4u64, true),
            other => {
                return Err(MachOError::Unsupported {
                    what: format!("chained pointer format {other} in segment {}", seg.name),
                })
            }
        };
        for page in 0..page_count {
            let start = fx.u16_le(s + 22 + page * 2, "chained page start")?;
            if start == DYLD_CHAINED_PTR_START_NONE {
                continue;
            }
            if start & DYLD_CHAINED_PTR_START_MULTI != 0 {
                return Err(MachOError::Unsupported {
                    what: "multiple chain starts per page (32-bit formats)".to_string(),
                });
            }
            let mut offset_in_seg = page as u64 * page_size + u64::from(start);
            // Bounded: a chain cannot have more links than a page has pointer slots.
            for _ in 0..=(page_size / stride.min(4)) {
                let file_at = seg
                    .fileoff
                    .checked_add(offset_in_seg)
                    .ok_or_else(|| malformed("chain pointer offset overflows"))?;
                let raw = data.u64_le(file_at as usize, "chained pointer")?;
                let (bind, next) = if is_arm64e {
                    let is_bind = raw >> 62 & 1 == 1;
                    let ordinal_bits = if pointer_format == DYLD_CHAINED_PTR_ARM64E_USERLAND24 {
                        0xff_ffff
                    } else {
                        0xffff
                    };
                    let addend = if raw >> 63 & 1 == 1 {
                        0
                    } else {
                        // 19-bit signed addend at bit 32 for plain arm64e binds.
                        (((raw >> 32) & 0x7_ffff) as i64) << 45 >> 45
                    };
                    (
                        is_bind.then_some(((raw & ordinal_bits) as usize, addend)),
                        (raw >> 51) & 0x7ff,
                    )
                } else {
                    let is_bind = raw >> 63 == 1;
                    (
                        is_bind
                            .then_some(((raw & 0xff_ffff) as usize, ((raw >> 24) & 0xff) as i64)),
                        (raw >> 51) & 0xfff,
                    )
                };
                if let Some((ordinal, addend)) = bind {
                    if out.len() >= super::binds::MAX_BINDS {
                        return Err(malformed(format!(
                            "more than {} binds",
                            super::binds::MAX_BINDS
                        )));
                    }
                    let import = imports.get(ordinal).ok_or_else(|| {
                        malformed(format!(
                            "chained bind in {} names import {ordinal} of {}",
                            seg.name,
                            imports.len()
                        ))
                    })?;
                    out.push(Bind {
                        source: BindSource::ChainedFixup,
                        address: seg.vmaddr + offset_in_seg,
                        symbol: import.name.clone(),
                        library: import.library,
                        weak_import: import.weak_import,
                        addend: import.addend + addend,
                    });
                }
                if next == 0 {
                    break;
                }
                offset_in_seg += next * stride;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_ordinals_map_to_specials() {
        assert_eq!(ordinal_from_narrow(0xfe, 8), LibraryOrdinal::FlatLookup);
        assert_eq!(ordinal_from_narrow(0xff, 8), LibraryOrdinal::MainExecutable);
        assert_eq!(ordinal_from_narrow(0xfffd, 16), LibraryOrdinal::WeakLookup);
        assert_eq!(ordinal_from_narrow(2, 8), LibraryOrdinal::Dylib(2));
        assert_eq!(ordinal_from_narrow(0, 8), LibraryOrdinal::SelfImage);
    }
}
