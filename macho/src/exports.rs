//! The export trie (`LC_DYLD_EXPORTS_TRIE` or the export range of
//! `LC_DYLD_INFO`): a prefix tree of exported symbol names.

use super::bytes::Bytes;
use super::{malformed, LinkeditRange, MachOError};

const EXPORT_SYMBOL_FLAGS_KIND_MASK: u64 = 0x03;
const EXPORT_SYMBOL_FLAGS_KIND_THREAD_LOCAL: u64 = 0x01;
const EXPORT_SYMBOL_FLAGS_KIND_ABSOLUTE: u64 = 0x02;
const EXPORT_SYMBOL_FLAGS_WEAK_DEFINITION: u64 = 0x04;
const EXPORT_SYMBOL_FLAGS_REEXPORT: u64 = 0x08;
const EXPORT_SYMBOL_FLAGS_STUB_AND_RESOLVER: u64 = 0x10;
/// Deeper than any real symbol name; stops cycles in a hostile trie.
const MAX_DEPTH: usize = 4096;

/// What an exported name resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportTarget {
    /// Offset from the image's mach header.
    Address(u64),
    ThreadLocal(u64),
    Absolute(u64),
    /// Re-exported from the dylib with this ordinal, possibly under another name.
    Reexport {
        ordinal: u64,
        name: Option<String>,
    },
    /// A stub plus a resolver function (offsets).
    Resolver {
        stub: u64,
        resolver: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub name: String,
    pub target: ExportTarget,
    pub weak_definition: bool,
}

/// Walks the whole trie.
pub(crate) fn walk(data: &[u8], range: LinkeditRange) -> Result<Vec<Export>, MachOError> {
    let trie = Bytes::new(Bytes::new(data).slice(
        range.offset as usize,
        range.size as usize,
        "export trie",
    )?);
    let mut out = Vec::new();
    // Explicit stack of (node offset, prefix) so a deep trie cannot overflow ours.
    let mut stack: Vec<(usize, Vec<u8>)> = vec![(0, Vec::new())];
    // A trie is a tree: every node is reached by exactly one edge. Refusing a
    // second visit stops cycles and bounds the work by the trie's size.
    let mut reached = vec![false; trie.len()];
    reached[0] = true;
    while let Some((node, prefix)) = stack.pop() {
        if prefix.len() > MAX_DEPTH {
            return Err(malformed("export trie is deeper than any symbol name"));
        }
        let mut at = node;
        let terminal_size = trie.uleb(&mut at, "export trie node")? as usize;
        let children_at = at
            .checked_add(terminal_size)
            .ok_or_else(|| malformed("export trie node size overflows"))?;
        if terminal_size > 0 {
            let flags = trie.uleb(&mut at, "export flags")?;
            let name = String::from_utf8_lossy(&prefix).into_owned();
            let target = if flags & EXPORT_SYMBOL_FLAGS_REEXPORT != 0 {
                let ordinal = trie.uleb(&mut at, "re-export ordinal")?;
                let (import, _) = trie.cstr_with_len(at, "re-export name")?;
                ExportTarget::Reexport {
                    ordinal,
                    name: (!import.is_empty()).then_some(import),
                }
            } else if flags & EXPORT_SYMBOL_FLAGS_STUB_AND_RESOLVER != 0 {
                let stub = trie.uleb(&mut at, "export stub")?;
                let resolver = trie.uleb(&mut at, "export resolver")?;
                ExportTarget::Resolver { stub, resolver }
            } else {
                let addr = trie.uleb(&mut at, "export address")?;
                match flags & EXPORT_SYMBOL_FLAGS_KIND_MASK {
                    EXPORT_SYMBOL_FLAGS_KIND_THREAD_LOCAL => ExportTarget::ThreadLocal(addr),
                    EXPORT_SYMBOL_FLAGS_KIND_ABSOLUTE => ExportTarget::Absolute(addr),
                    _ => ExportTarget::Address(addr),
                }
            };
            out.push(Export {
                name,
                target,
                weak_definition: flags & EXPORT_SYMBOL_FLAGS_WEAK_DEFINITION != 0,
            });
        }
        let mut at = children_at;
        let child_count = trie.u8(at, "export trie child count")?;
        at += 1;
        for _ in 0..child_count {
            let (label, len) = trie.cstr_with_len(at, "export trie edge")?;
            at += len;
            let child = trie.uleb(&mut at, "export trie child offset")? as usize;
            if child == 0 || child >= trie.len() {
                return Err(malformed(format!(
                    "export trie edge '{label}' points to offset {child:#x}, outside the trie"
                )));
            }
            if std::mem::replace(&mut reached[child], true) {
                return Err(malformed(format!(
                    "export trie node {child:#x} is reached twice (a cycle or a shared node)"
                )));
            }
            let mut p = prefix.clone();
            p.extend_from_slice(label.as_bytes());
            stack.push((child, p));
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(len: usize) -> LinkeditRange {
        LinkeditRange {
            offset: 0,
            size: len as u32,
        }
    }

    #[test]
    fn a_cycle_is_an_error() {
        // Root (no terminal) with one edge "_a" back to offset 4, whose node
        // has an edge "b" back to itself.
        let trie = [0u8, 1, b'_', b'a', 0, 7, 0, 0, 1, b'b', 0, 7];
        let err = walk(&trie, range(trie.len())).unwrap_err();
        assert!(err.to_string().contains("reached twice"), "{err}");
    }

    #[test]
    fn reexports_and_resolvers_are_decoded() {
        // root: 2 edges; "_r" -> re-export from dylib 1 as "_x"; "_s" -> stub+resolver.
        let mut t = vec![0u8, 2];
        t.extend_from_slice(b"_r\0");
        t.push(10);
        t.extend_from_slice(b"_s\0");
        t.push(17);
        assert_eq!(t.len(), 10);
        // node at 10: terminal size 5: flags 0x08, ordinal 1, "_x\0"; 0 children
        t.extend_from_slice(&[5, 0x08, 1, b'_', b'x', 0, 0]);
        assert_eq!(t.len(), 17);
        // node at 17: terminal size 3: flags 0x10, stub 0x10, resolver 0x20; 0 children
        t.extend_from_slice(&[3, 0x10, 0x10, 0x20, 0]);
        let exports = walk(&t, range(t.len())).unwrap();
        assert_eq!(
            exports[0].target,
            ExportTarget::Reexport {
                ordinal: 1,
                name: Some("_x".to_string())
            }
        );
        assert_eq!(
            exports[1].target,
            ExportTarget::Resolver {
                stub: 0x10,
                resolver: 0x20
            }
        );
    }
}
