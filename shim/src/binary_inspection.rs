//! Reading the facts `injection_rules` decides on from a program file:
//! mode bits, file flags, extended attributes, and the ELF or Mach-O headers
//! and code signature.
//!
//! This runs on every launch, so it reads only what it needs: the headers,
//! the load commands and the code-signature blob. A Mach-O interpreter can be
//! tens of megabytes; the rest of the file is never read, and page hashes are
//! not re-computed (the kernel does that when it maps the pages).

use crate::elf;
use crate::injection_rules::{
    BinaryFacts, BinaryFormat, MachOFacts, SignatureFacts, ALLOW_DYLD_ENV,
    DISABLE_LIBRARY_VALIDATION,
};
use metal_guard_macho as macho;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;

const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;
/// How much of a file is read first (headers and, for thin images, load commands).
const HEAD_LEN: usize = 64 * 1024;
/// Larger files are not Mach-O programs worth mapping.
const MAX_MACHO_LEN: u64 = 4 << 30;

/// Read the facts about the program at `path` (symlinks are followed; `facts.path` is the real file).
pub fn inspect_binary(path: &Path) -> io::Result<BinaryFacts> {
    let real = std::fs::canonicalize(path)?;
    let file = File::open(&real)?;
    let meta = file.metadata()?;
    let mode = meta.permissions().mode();
    let mut head = Vec::with_capacity(HEAD_LEN.min(meta.len() as usize));
    (&file).take(HEAD_LEN as u64).read_to_end(&mut head)?;

    let format = if head.starts_with(b"#!") {
        BinaryFormat::Script
    } else if head.starts_with(b"\x7fELF") {
        match elf::read_elf_facts(&real) {
            Some(f) => BinaryFormat::Elf {
                has_interpreter: f.has_interpreter,
            },
            None => BinaryFormat::Unreadable {
                why: "malformed ELF headers".to_owned(),
            },
        }
    } else if looks_like_macho(&head) {
        match read_macho_facts(&file, meta.len(), &head) {
            Ok(facts) => BinaryFormat::MachO(facts),
            Err(why) => BinaryFormat::Unreadable { why },
        }
    } else {
        BinaryFormat::Other
    };

    Ok(BinaryFacts {
        restricted_flag: restricted_flag(&meta),
        file_capabilities: has_file_capabilities(&real),
        path: real,
        setuid: mode & S_ISUID != 0,
        setgid: mode & S_ISGID != 0,
        format,
    })
}

fn looks_like_macho(head: &[u8]) -> bool {
    let Some(magic) = head.get(..4) else {
        return false;
    };
    matches!(
        magic,
        [0xcf, 0xfa, 0xed, 0xfe]
            | [0xce, 0xfa, 0xed, 0xfe]
            | [0xfe, 0xed, 0xfa, 0xcf]
            | [0xca, 0xfe, 0xba, 0xbe]
            | [0xca, 0xfe, 0xba, 0xbf]
    )
}

/// The Mach-O facts of the slice this machine would run.
///
/// The file is laid out in a zero-filled buffer of its full length (large
/// zeroed allocations are mapped lazily, so untouched pages cost nothing) and
/// only the header, the load commands and the signature blob are read into it.
fn read_macho_facts(file: &File, len: u64, head: &[u8]) -> Result<MachOFacts, String> {
    if len > MAX_MACHO_LEN {
        return Err(format!("{len} bytes is too large for a Mach-O program"));
    }
    let mut buf = vec![0u8; len as usize];
    buf[..head.len()].copy_from_slice(head);
    let (start, end) = match macho::container(&buf).map_err(|e| e.to_string())? {
        macho::Container::Thin { .. } => (0usize, buf.len()),
        macho::Container::Fat(arches) => {
            let preferred = preferred_cputype();
            let pick = arches
                .iter()
                .find(|a| {
                    a.cputype == preferred && a.cpusubtype & 0xff != macho::CPU_SUBTYPE_ARM64E
                })
                .or_else(|| arches.iter().find(|a| a.cputype == preferred))
                .or_else(|| arches.first())
                .ok_or("universal file without slices")?;
            (pick.offset as usize, (pick.offset + pick.size) as usize)
        }
    };
    // Header, then the load commands it announces.
    fill(file, &mut buf, start, 32.min(end - start))?;
    let sizeofcmds = buf
        .get(start + 20..start + 24)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or("truncated Mach-O header")?;
    fill(file, &mut buf, start, (32 + sizeofcmds).min(end - start))?;
    let signature_range = {
        let image = macho::MachO::parse(&buf[start..end]).map_err(|e| e.to_string())?;
        image.code_signature
    };
    if let Some(range) = signature_range {
        let at = start + range.offset as usize;
        fill(
            file,
            &mut buf,
            at,
            (range.size as usize).min(end.saturating_sub(at)),
        )?;
    }
    let image = macho::MachO::parse(&buf[start..end]).map_err(|e| e.to_string())?;
    let signature = image
        .code_signature_without_page_hashes()
        .map_err(|e| e.to_string())?
        .and_then(|sig| {
            let cd = sig.primary()?;
            Some(SignatureFacts {
                flags: cd.flags,
                platform: cd.platform,
                team_id: cd.team_id.clone(),
                allows_dyld_environment: sig.entitlement_enabled(ALLOW_DYLD_ENV),
                disables_library_validation: sig.entitlement_enabled(DISABLE_LIBRARY_VALIDATION),
                flags_text: cd.describe_flags(),
            })
        });
    Ok(MachOFacts {
        arch: image.cpu_name(),
        native: image.cputype == preferred_cputype(),
        has_restrict_segment: image.has_restrict_segment(),
        signature,
    })
}

fn preferred_cputype() -> u32 {
    if cfg!(all(target_os = "macos", target_arch = "x86_64")) {
        macho::CPU_TYPE_X86_64
    } else {
        macho::CPU_TYPE_ARM64
    }
}

fn fill(file: &File, buf: &mut [u8], at: usize, len: usize) -> Result<(), String> {
    let end = at.checked_add(len).ok_or("range overflows")?;
    let target = buf.get_mut(at..end).ok_or("range outside the file")?;
    file.read_exact_at(target, at as u64)
        .map_err(|e| format!("cannot read {len} bytes at {at}: {e}"))
}

#[cfg(target_os = "macos")]
fn restricted_flag(meta: &std::fs::Metadata) -> bool {
    use std::os::macos::fs::MetadataExt;
    const SF_RESTRICTED: u32 = 0x0008_0000;
    meta.st_flags() & SF_RESTRICTED != 0
}

#[cfg(not(target_os = "macos"))]
fn restricted_flag(_meta: &std::fs::Metadata) -> bool {
    false
}

#[cfg(target_os = "linux")]
fn has_file_capabilities(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: both strings are NUL-terminated and outlive the call; a null
    // buffer with size 0 asks only for the attribute's length.
    let len = unsafe {
        libc::getxattr(
            c_path.as_ptr(),
            c"security.capability".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    len > 0
}

#[cfg(not(target_os = "linux"))]
fn has_file_capabilities(_path: &Path) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_elf_program_is_read() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let facts = inspect_binary(&std::env::current_exe().unwrap()).unwrap();
        assert_eq!(
            facts.format,
            BinaryFormat::Elf {
                has_interpreter: true
            }
        );
        assert!(!facts.setuid && !facts.setgid && !facts.file_capabilities);
    }

    #[test]
    fn scripts_and_mode_bits_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let script = tmp.path().join("tool");
        std::fs::write(&script, "#!/bin/sh\necho\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o6755)).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&script, &link).unwrap();
        let facts = inspect_binary(&link).unwrap();
        assert_eq!(facts.format, BinaryFormat::Script);
        assert_eq!(facts.path, std::fs::canonicalize(&script).unwrap());
        assert!(facts.setuid && facts.setgid);
    }

    #[test]
    fn garbage_with_a_macho_magic_is_unreadable_not_a_crash() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("bad");
        let mut bytes = vec![0xcf, 0xfa, 0xed, 0xfe, 0x0c, 0, 0, 1];
        bytes.extend([0xff; 40]);
        std::fs::write(&file, bytes).unwrap();
        match inspect_binary(&file).unwrap().format {
            BinaryFormat::Unreadable { why } => assert!(!why.is_empty()),
            other => panic!("expected unreadable, got {other:?}"),
        }
    }
}
