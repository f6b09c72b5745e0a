//! Symbol binds: which symbol dyld writes at which address, from which
//! library. Classic images carry bind opcode streams (`LC_DYLD_INFO`); newer
//! ones carry chained fixups (see `chained.rs`). Both end up as [`Bind`].

use super::bytes::Bytes;
use super::{malformed, LinkeditRange, MachO, MachOError};

/// Where dyld looks a bound symbol up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LibraryOrdinal {
    /// `BIND_SPECIAL_DYLIB_SELF` (0): this image.
    SelfImage,
    /// `BIND_SPECIAL_DYLIB_MAIN_EXECUTABLE` (-1).
    MainExecutable,
    /// `BIND_SPECIAL_DYLIB_FLAT_LOOKUP` (-2): every loaded image, in load
    /// order. What `-undefined dynamic_lookup` produces.
    FlatLookup,
    /// `BIND_SPECIAL_DYLIB_WEAK_LOOKUP` (-3): weak-definition coalescing.
    WeakLookup,
    /// A 1-based index into the image's dylib load commands.
    Dylib(u16),
    /// Any other negative value.
    Unknown(i64),
}

impl LibraryOrdinal {
    pub(crate) fn from_raw(raw: i64) -> Self {
        match raw {
            0 => LibraryOrdinal::SelfImage,
            -1 => LibraryOrdinal::MainExecutable,
            -2 => LibraryOrdinal::FlatLookup,
            -3 => LibraryOrdinal::WeakLookup,
            n if n > 0 && n <= i64::from(u16::MAX) => LibraryOrdinal::Dylib(n as u16),
            n => LibraryOrdinal::Unknown(n),
        }
    }
}

/// Which table a bind came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindSource {
    Bind,
    WeakBind,
    LazyBind,
    ChainedFixup,
}

/// One symbol dyld binds into this image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: BindSource,
    /// Virtual address of the pointer dyld writes.
    pub address: u64,
    pub symbol: String,
    pub library: LibraryOrdinal,
    /// `BIND_SYMBOL_FLAGS_WEAK_IMPORT`: a missing symbol binds to 0 instead of failing launch.
    pub weak_import: bool,
    pub addend: i64,
}

const BIND_OPCODE_MASK: u8 = 0xf0;
const BIND_IMMEDIATE_MASK: u8 = 0x0f;
const BIND_OPCODE_DONE: u8 = 0x00;
const BIND_OPCODE_SET_DYLIB_ORDINAL_IMM: u8 = 0x10;
const BIND_OPCODE_SET_DYLIB_ORDINAL_ULEB: u8 = 0x20;
const BIND_OPCODE_SET_DYLIB_SPECIAL_IMM: u8 = 0x30;
const BIND_OPCODE_SET_SYMBOL_TRAILING_FLAGS_IMM: u8 = 0x40;
const BIND_OPCODE_SET_TYPE_IMM: u8 = 0x50;
const BIND_OPCODE_SET_ADDEND_SLEB: u8 = 0x60;
const BIND_OPCODE_SET_SEGMENT_AND_OFFSET_ULEB: u8 = 0x70;
const BIND_OPCODE_ADD_ADDR_ULEB: u8 = 0x80;
const BIND_OPCODE_DO_BIND: u8 = 0x90;
const BIND_OPCODE_DO_BIND_ADD_ADDR_ULEB: u8 = 0xa0;
const BIND_OPCODE_DO_BIND_ADD_ADDR_IMM_SCALED: u8 = 0xb0;
const BIND_OPCODE_DO_BIND_ULEB_TIMES_SKIPPING_ULEB: u8 = 0xc0;
const BIND_OPCODE_THREADED: u8 = 0xd0;
const BIND_SYMBOL_FLAGS_WEAK_IMPORT: u8 = 0x1;
const POINTER_SIZE: u64 = 8;
/// More binds than any real image has (a large framework has tens of
/// thousands); stops a hostile `DO_BIND_ULEB_TIMES` count from exhausting memory.
pub(crate) const MAX_BINDS: usize = 1 << 20;

struct BindState {
    library: LibraryOrdinal,
    symbol: String,
    weak_import: bool,
    addend: i64,
    segment: Option<usize>,
    offset: u64,
}

/// Decodes one bind opcode stream into `out`.
pub(crate) fn read_opcodes(
    image: &MachO<'_>,
    range: LinkeditRange,
    source: BindSource,
    out: &mut Vec<Bind>,
) -> Result<(), MachOError> {
    if range.size == 0 {
        return Ok(());
    }
    let stream = Bytes::new(image.data()).slice(
        range.offset as usize,
        range.size as usize,
        "bind opcodes",
    )?;
    let b = Bytes::new(stream);
    let mut st = BindState {
        library: LibraryOrdinal::SelfImage,
        symbol: String::new(),
        weak_import: false,
        addend: 0,
        segment: None,
        offset: 0,
    };
    let mut at = 0usize;
    while at < b.len() {
        let byte = b.u8(at, "bind opcode")?;
        at += 1;
        let imm = byte & BIND_IMMEDIATE_MASK;
        match byte & BIND_OPCODE_MASK {
            BIND_OPCODE_DONE => {
                // Lazy-bind streams are a sequence of DONE-terminated entries.
                if source != BindSource::LazyBind {
                    break;
                }
            }
            BIND_OPCODE_SET_DYLIB_ORDINAL_IMM => st.library = LibraryOrdinal::from_raw(imm.into()),
            BIND_OPCODE_SET_DYLIB_ORDINAL_ULEB => {
                let n = b.uleb(&mut at, "bind dylib ordinal")?;
                st.library = LibraryOrdinal::from_raw(i64::try_from(n).unwrap_or(i64::MAX));
            }
            BIND_OPCODE_SET_DYLIB_SPECIAL_IMM => {
                // Sign-extend the 4-bit immediate: 0 stays 0, 0xe becomes -2.
                let raw = if imm == 0 {
                    0
                } else {
                    i64::from((BIND_OPCODE_MASK | imm) as i8)
                };
                st.library = LibraryOrdinal::from_raw(raw);
            }
            BIND_OPCODE_SET_SYMBOL_TRAILING_FLAGS_IMM => {
                let (name, len) = b.cstr_with_len(at, "bind symbol name")?;
                at += len;
                st.symbol = name;
                st.weak_import = imm & BIND_SYMBOL_FLAGS_WEAK_IMPORT != 0;
            }
            BIND_OPCODE_SET_TYPE_IMM => {}
            BIND_OPCODE_SET_ADDEND_SLEB => st.addend = b.sleb(&mut at, "bind addend")?,
            BIND_OPCODE_SET_SEGMENT_AND_OFFSET_ULEB => {
                st.segment = Some(usize::from(imm));
                st.offset = b.uleb(&mut at, "bind segment offset")?;
            }
            BIND_OPCODE_ADD_ADDR_ULEB => {
                st.offset = st
                    .offset
                    .wrapping_add(b.uleb(&mut at, "bind address delta")?);
            }
            BIND_OPCODE_DO_BIND => {
                emit(image, &st, source, out)?;
                st.offset = st.offset.wrapping_add(POINTER_SIZE);
            }
            BIND_OPCODE_DO_BIND_ADD_ADDR_ULEB => {
                emit(image, &st, source, out)?;
                let delta = b.uleb(&mut at, "bind address delta")?;
                st.offset = st.offset.wrapping_add(delta).wrapping_add(POINTER_SIZE);
            }
            BIND_OPCODE_DO_BIND_ADD_ADDR_IMM_SCALED => {
                emit(image, &st, source, out)?;
                st.offset = st
                    .offset
                    .wrapping_add(u64::from(imm) * POINTER_SIZE + POINTER_SIZE);
            }
            BIND_OPCODE_DO_BIND_ULEB_TIMES_SKIPPING_ULEB => {
                let count = b.uleb(&mut at, "bind repeat count")?;
                let skip = b.uleb(&mut at, "bind repeat skip")?;
                for _ in 0..count {
                    emit(image, &st, source, out)?;
                    st.offset = st.offset.wrapping_add(skip).wrapping_add(POINTER_SIZE);
                }
            }
            BIND_OPCODE_THREADED => {
                return Err(MachOError::Unsupported {
                    what: "threaded bind opcodes (arm64e pre-chained-fixups format)".to_string(),
                })
            }
            other => {
                return Err(malformed(format!(
                    "unknown bind opcode {other:#04x} at offset {:#x}",
                    range.offset as usize + at - 1
                )))
            }
        }
    }
    Ok(())
}

fn emit(
    image: &MachO<'_>,
    st: &BindState,
    source: BindSource,
    out: &mut Vec<Bind>,
) -> Result<(), MachOError> {
    let seg_index = st
        .segment
        .ok_or_else(|| malformed("bind before any SET_SEGMENT_AND_OFFSET opcode"))?;
    let seg = image.segments.get(seg_index).ok_or_else(|| {
        malformed(format!(
            "bind names segment {seg_index}, but the image has {}",
            image.segments.len()
        ))
    })?;
    if st.offset >= seg.vmsize {
        return Err(malformed(format!(
            "bind of {} at offset {:#x} lies outside segment {}",
            st.symbol, st.offset, seg.name
        )));
    }
    if out.len() >= MAX_BINDS {
        return Err(malformed(format!("more than {MAX_BINDS} binds")));
    }
    out.push(Bind {
        source,
        address: seg.vmaddr + st.offset,
        symbol: st.symbol.clone(),
        library: st.library,
        weak_import: st.weak_import,
        addend: st.addend,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_ordinals_decode() {
        assert_eq!(LibraryOrdinal::from_raw(-2), LibraryOrdinal::FlatLookup);
        assert_eq!(LibraryOrdinal::from_raw(-1), LibraryOrdinal::MainExecutable);
        assert_eq!(LibraryOrdinal::from_raw(3), LibraryOrdinal::Dylib(3));
        assert_eq!(LibraryOrdinal::from_raw(-9), LibraryOrdinal::Unknown(-9));
    }
}
