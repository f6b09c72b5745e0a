//! The embedded code signature (`LC_CODE_SIGNATURE`): a big-endian SuperBlob
//! holding CodeDirectories, requirements, entitlements and an optional CMS
//! signature. Layouts and flag values from xnu `osfmk/kern/cs_blobs.h`.

use super::bytes::Bytes;
use super::{malformed, LinkeditRange, MachOError};
use sha2::{Digest, Sha256};

const CSMAGIC_EMBEDDED_SIGNATURE: u32 = 0xfade_0cc0;
const CSMAGIC_CODEDIRECTORY: u32 = 0xfade_0c02;
const CSMAGIC_REQUIREMENTS: u32 = 0xfade_0c01;
const CSMAGIC_EMBEDDED_ENTITLEMENTS: u32 = 0xfade_7171;
const CSMAGIC_EMBEDDED_DER_ENTITLEMENTS: u32 = 0xfade_7172;
const CSMAGIC_BLOBWRAPPER: u32 = 0xfade_0b01;

const CSSLOT_CODEDIRECTORY: u32 = 0;
const CSSLOT_REQUIREMENTS: u32 = 2;
const CSSLOT_ENTITLEMENTS: u32 = 5;
const CSSLOT_DER_ENTITLEMENTS: u32 = 7;
const CSSLOT_ALTERNATE_CODEDIRECTORIES: u32 = 0x1000;
const CSSLOT_ALTERNATE_CODEDIRECTORY_LIMIT: u32 = 0x1005;
const CSSLOT_SIGNATURESLOT: u32 = 0x10000;

const CS_HASHTYPE_SHA256: u8 = 2;

/// Ad-hoc signed: no certificate chain, identity is the hash alone.
pub const CS_ADHOC: u32 = 0x0000_0002;
/// Kill the process if it becomes invalid.
pub const CS_HARD: u32 = 0x0000_0100;
pub const CS_KILL: u32 = 0x0000_0200;
/// Restrict dyld loading (makes dyld ignore `DYLD_*`).
pub const CS_RESTRICT: u32 = 0x0000_0800;
/// Library validation required.
pub const CS_REQUIRE_LV: u32 = 0x0000_2000;
/// Hardened runtime.
pub const CS_RUNTIME: u32 = 0x0001_0000;
/// Signed by the linker at link time (`ld -adhoc_codesign`).
pub const CS_LINKER_SIGNED: u32 = 0x0002_0000;

/// Whether the page hashes in a CodeDirectory match the bytes they cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashCheck {
    /// Every code page hashes to its slot.
    Match { pages: u32 },
    /// The first page whose hash differs (the file was changed after signing).
    Mismatch { page: u32 },
    /// A hash type we do not verify (only SHA-256 is checked).
    NotChecked { hash_type: u8 },
    /// The caller asked not to re-hash the pages (the launcher reads flags and
    /// entitlements on every start and cannot afford hashing a whole interpreter).
    Skipped,
}

/// One CodeDirectory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeDirectory {
    pub version: u32,
    pub flags: u32,
    pub identifier: String,
    pub team_id: Option<String>,
    /// Nonzero for Apple platform binaries.
    pub platform: u8,
    pub hash_type: u8,
    pub hash_size: u8,
    pub page_size_log2: u8,
    pub code_limit: u64,
    pub n_code_slots: u32,
    pub n_special_slots: u32,
    pub exec_seg_flags: Option<u64>,
    /// Result of re-hashing the image's pages against this directory.
    pub hashes: HashCheck,
}

impl CodeDirectory {
    pub fn is_adhoc(&self) -> bool {
        self.flags & CS_ADHOC != 0
    }
    pub fn is_linker_signed(&self) -> bool {
        self.flags & CS_LINKER_SIGNED != 0
    }
    pub fn has_hardened_runtime(&self) -> bool {
        self.flags & CS_RUNTIME != 0
    }
    /// `flags=0x20002(adhoc,linker-signed)` in `codesign -dv` notation.
    pub fn describe_flags(&self) -> String {
        let names: Vec<&str> = [
            (CS_ADHOC, "adhoc"),
            (CS_HARD, "hard"),
            (CS_KILL, "kill"),
            (CS_RESTRICT, "restrict"),
            (CS_REQUIRE_LV, "library-validation"),
            (CS_RUNTIME, "runtime"),
            (CS_LINKER_SIGNED, "linker-signed"),
        ]
        .iter()
        .filter(|(bit, _)| self.flags & bit != 0)
        .map(|(_, name)| *name)
        .collect();
        format!("{:#x}({})", self.flags, names.join(","))
    }
}

/// The parsed SuperBlob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeSignature {
    /// The primary CodeDirectory first, then alternates.
    pub code_directories: Vec<CodeDirectory>,
    /// The XML entitlements plist (`0xfade7171`), if any.
    pub entitlements_xml: Option<String>,
    pub has_der_entitlements: bool,
    pub has_requirements: bool,
    /// A CMS blob with content: signed with a certificate, not ad-hoc.
    pub has_cms_signature: bool,
}

impl CodeSignature {
    /// The primary CodeDirectory (slot 0).
    pub fn primary(&self) -> Option<&CodeDirectory> {
        self.code_directories.first()
    }

    /// True when the XML entitlements set `key` to `<true/>`.
    pub fn entitlement_enabled(&self, key: &str) -> bool {
        self.entitlements_xml
            .as_deref()
            .is_some_and(|xml| plist_key_is_true(xml, key))
    }
}

/// Looks for `<key>KEY</key>` directly followed (after whitespace) by `<true/>`.
/// Entitlement plists are flat dictionaries of booleans and string arrays,
/// which this reads correctly; anything else reads as "not enabled".
fn plist_key_is_true(xml: &str, key: &str) -> bool {
    let needle = format!("<key>{key}</key>");
    let mut rest = xml;
    while let Some(pos) = rest.find(&needle) {
        rest = &rest[pos + needle.len()..];
        if rest.trim_start().starts_with("<true/>") {
            return true;
        }
    }
    false
}

/// Parses the SuperBlob at `range` and re-hashes the pages of `image`.
pub(crate) fn parse(image: &[u8], range: LinkeditRange) -> Result<CodeSignature, MachOError> {
    parse_with(image, range, true)
}

/// Parses the SuperBlob at `range` without re-hashing the pages
/// (every CodeDirectory's `hashes` is [`HashCheck::Skipped`]).
pub(crate) fn parse_without_page_hashes(
    image: &[u8],
    range: LinkeditRange,
) -> Result<CodeSignature, MachOError> {
    parse_with(image, range, false)
}

fn parse_with(
    image: &[u8],
    range: LinkeditRange,
    verify_pages: bool,
) -> Result<CodeSignature, MachOError> {
    let blob = Bytes::new(Bytes::new(image).slice(
        range.offset as usize,
        range.size as usize,
        "code signature",
    )?);
    let magic = blob.u32_be(0, "code signature SuperBlob")?;
    if magic != CSMAGIC_EMBEDDED_SIGNATURE {
        return Err(malformed(format!(
            "code signature starts with {magic:#010x}, not the embedded-signature magic 0xfade0cc0"
        )));
    }
    let count = blob.u32_be(8, "code signature SuperBlob")? as usize;
    if count > 64 {
        return Err(malformed(format!("code signature claims {count} blobs")));
    }
    let mut sig = CodeSignature {
        code_directories: Vec::new(),
        entitlements_xml: None,
        has_der_entitlements: false,
        has_requirements: false,
        has_cms_signature: false,
    };
    let mut primary_found = false;
    for i in 0..count {
        let slot = blob.u32_be(12 + i * 8, "blob index")?;
        let offset = blob.u32_be(16 + i * 8, "blob index")? as usize;
        let blob_magic = blob.u32_be(offset, "blob header")?;
        let length = blob.u32_be(offset + 4, "blob header")? as usize;
        let body = Bytes::new(blob.slice(offset, length, "blob")?);
        match slot {
            CSSLOT_CODEDIRECTORY
            | CSSLOT_ALTERNATE_CODEDIRECTORIES..=CSSLOT_ALTERNATE_CODEDIRECTORY_LIMIT => {
                if blob_magic != CSMAGIC_CODEDIRECTORY {
                    return Err(malformed(format!(
                        "slot {slot:#x} holds {blob_magic:#010x}, not a CodeDirectory"
                    )));
                }
                let cd = parse_code_directory(&body, image, verify_pages)?;
                if slot == CSSLOT_CODEDIRECTORY {
                    primary_found = true;
                    sig.code_directories.insert(0, cd);
                } else {
                    sig.code_directories.push(cd);
                }
            }
            CSSLOT_REQUIREMENTS if blob_magic == CSMAGIC_REQUIREMENTS => {
                sig.has_requirements = true
            }
            CSSLOT_ENTITLEMENTS if blob_magic == CSMAGIC_EMBEDDED_ENTITLEMENTS => {
                let xml = body.slice(8, length.saturating_sub(8), "entitlements")?;
                sig.entitlements_xml = Some(String::from_utf8_lossy(xml).into_owned());
            }
            CSSLOT_DER_ENTITLEMENTS if blob_magic == CSMAGIC_EMBEDDED_DER_ENTITLEMENTS => {
                sig.has_der_entitlements = true
            }
            // An ad-hoc signature made by `codesign -s -` carries an empty wrapper (8 bytes).
            CSSLOT_SIGNATURESLOT if blob_magic == CSMAGIC_BLOBWRAPPER => {
                sig.has_cms_signature = length > 8
            }
            _ => {}
        }
    }
    if !primary_found {
        return Err(malformed("code signature has no CodeDirectory in slot 0"));
    }
    Ok(sig)
}

fn parse_code_directory(
    cd: &Bytes<'_>,
    image: &[u8],
    verify_pages: bool,
) -> Result<CodeDirectory, MachOError> {
    let what = "CodeDirectory";
    let version = cd.u32_be(8, what)?;
    let flags = cd.u32_be(12, what)?;
    let hash_offset = cd.u32_be(16, what)? as usize;
    let ident_offset = cd.u32_be(20, what)? as usize;
    let n_special_slots = cd.u32_be(24, what)?;
    let n_code_slots = cd.u32_be(28, what)?;
    let code_limit32 = cd.u32_be(32, what)?;
    let hash_size = cd.u8(36, what)?;
    let hash_type = cd.u8(37, what)?;
    let platform = cd.u8(38, what)?;
    let page_size_log2 = cd.u8(39, what)?;
    let team_offset = if version >= 0x20200 {
        cd.u32_be(48, what)? as usize
    } else {
        0
    };
    let code_limit = if version >= 0x20300 {
        match cd.u64_be(56, what)? {
            0 => u64::from(code_limit32),
            wide => wide,
        }
    } else {
        u64::from(code_limit32)
    };
    let exec_seg_flags = if version >= 0x20400 {
        Some(cd.u64_be(80, what)?)
    } else {
        None
    };
    let identifier = cd.cstr(ident_offset, "CodeDirectory identifier")?;
    let team_id = if team_offset != 0 {
        Some(cd.cstr(team_offset, "CodeDirectory team id")?)
    } else {
        None
    };
    let hashes = if !verify_pages {
        HashCheck::Skipped
    } else if hash_type == CS_HASHTYPE_SHA256 && hash_size == 32 {
        check_pages(
            cd,
            image,
            hash_offset,
            n_code_slots,
            code_limit,
            page_size_log2,
        )?
    } else {
        HashCheck::NotChecked { hash_type }
    };
    Ok(CodeDirectory {
        version,
        flags,
        identifier,
        team_id,
        platform,
        hash_type,
        hash_size,
        page_size_log2,
        code_limit,
        n_code_slots,
        n_special_slots,
        exec_seg_flags,
        hashes,
    })
}

fn check_pages(
    cd: &Bytes<'_>,
    image: &[u8],
    hash_offset: usize,
    n_code_slots: u32,
    code_limit: u64,
    page_size_log2: u8,
) -> Result<HashCheck, MachOError> {
    if code_limit > image.len() as u64 {
        return Err(malformed(format!(
            "CodeDirectory covers {code_limit} bytes, but the image has {}",
            image.len()
        )));
    }
    let page = if page_size_log2 == 0 {
        code_limit.max(1)
    } else if page_size_log2 < 32 {
        1u64 << page_size_log2
    } else {
        return Err(malformed(format!(
            "CodeDirectory page size 2^{page_size_log2}"
        )));
    };
    let expected_slots = code_limit.div_ceil(page);
    if u64::from(n_code_slots) != expected_slots {
        return Err(malformed(format!(
            "CodeDirectory has {n_code_slots} page hashes for {code_limit} bytes ({expected_slots} expected)"
        )));
    }
    for i in 0..n_code_slots {
        let start = u64::from(i) * page;
        let end = (start + page).min(code_limit);
        let digest = Sha256::digest(&image[start as usize..end as usize]);
        let stored = cd.slice(hash_offset + i as usize * 32, 32, "page hash")?;
        if digest.as_slice() != stored {
            return Ok(HashCheck::Mismatch { page: i });
        }
    }
    Ok(HashCheck::Match {
        pages: n_code_slots,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entitlement_lookup_needs_true_right_after_the_key() {
        let xml = r#"<?xml version="1.0"?><plist><dict>
            <key>com.apple.security.cs.allow-dyld-environment-variables</key>
            <true/>
            <key>com.apple.security.cs.disable-library-validation</key><false/>
        </dict></plist>"#;
        assert!(plist_key_is_true(
            xml,
            "com.apple.security.cs.allow-dyld-environment-variables"
        ));
        assert!(!plist_key_is_true(
            xml,
            "com.apple.security.cs.disable-library-validation"
        ));
        assert!(!plist_key_is_true(xml, "com.apple.security.get-task-allow"));
    }
}
