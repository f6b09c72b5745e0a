//! Composing the preload variable: our library first, then whatever the user
//! already preloads, each library once.

use crate::launch_env::Platform;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

/// The variable the dynamic loader reads on `platform`.
pub fn preload_variable(platform: Platform) -> &'static str {
    match platform {
        Platform::MacOs => "DYLD_INSERT_LIBRARIES",
        Platform::Elf => "LD_PRELOAD",
    }
}

/// `library` followed by the entries of `existing`, without empty entries and
/// without other mentions of `library` (the same path, or another path to the
/// same file). dyld separates entries with `:`; ld.so accepts `:` and spaces.
pub fn compose_preload(platform: Platform, existing: Option<&OsStr>, library: &Path) -> OsString {
    let ours = library.as_os_str().as_bytes();
    let ours_real = std::fs::canonicalize(library).ok();
    let mut out: Vec<u8> = ours.to_vec();
    if let Some(existing) = existing {
        let separators: &[u8] = match platform {
            Platform::MacOs => b":",
            Platform::Elf => b": ",
        };
        for entry in existing
            .as_bytes()
            .split(|b| separators.contains(b))
            .filter(|e| !e.is_empty())
        {
            let same = entry == ours
                || ours_real.as_ref().is_some_and(|real| {
                    std::fs::canonicalize(OsStr::from_bytes(entry))
                        .ok()
                        .as_ref()
                        == Some(real)
                });
            if !same {
                out.push(b':');
                out.extend_from_slice(entry);
            }
        }
    }
    OsString::from_vec(out)
}

/// `existing` without any entry whose file name is `file_name` (our library,
/// passed down by a guarded parent); empty when nothing else remains.
pub fn without_library(platform: Platform, existing: &OsStr, file_name: &str) -> OsString {
    let separators: &[u8] = match platform {
        Platform::MacOs => b":",
        Platform::Elf => b": ",
    };
    let kept: Vec<&[u8]> = existing
        .as_bytes()
        .split(|b| separators.contains(b))
        .filter(|e| !e.is_empty())
        .filter(|e| Path::new(OsStr::from_bytes(e)).file_name() != Some(OsStr::new(file_name)))
        .collect();
    OsString::from_vec(kept.join(&b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ours_comes_first_and_the_users_entries_stay() {
        let lib = Path::new("/opt/mg/lib/libmetal_guard_inject.so");
        assert_eq!(
            compose_preload(Platform::Elf, None, lib),
            OsString::from("/opt/mg/lib/libmetal_guard_inject.so")
        );
        assert_eq!(
            compose_preload(
                Platform::Elf,
                Some(OsStr::new("libjemalloc.so /x/y.so")),
                lib
            ),
            OsString::from("/opt/mg/lib/libmetal_guard_inject.so:libjemalloc.so:/x/y.so")
        );
        assert_eq!(
            compose_preload(
                Platform::MacOs,
                Some(OsStr::new("/a b/capture.dylib::")),
                Path::new("/opt/mg/lib/libmetal_guard_inject.dylib")
            ),
            OsString::from("/opt/mg/lib/libmetal_guard_inject.dylib:/a b/capture.dylib")
        );
    }

    #[test]
    fn an_inherited_guard_is_taken_out_for_no_inject() {
        let name = "libmetal_guard_inject.so";
        assert_eq!(
            without_library(
                Platform::Elf,
                OsStr::new("/opt/mg/lib/libmetal_guard_inject.so:libjemalloc.so /x/y.so"),
                name
            ),
            OsString::from("libjemalloc.so:/x/y.so")
        );
        assert_eq!(
            without_library(
                Platform::Elf,
                OsStr::new("/a/libmetal_guard_inject.so"),
                name
            ),
            OsString::new()
        );
    }

    #[test]
    fn no_duplicates_by_path_or_by_link() {
        let tmp = tempfile::tempdir().unwrap();
        let lib = tmp.path().join("libmetal_guard_inject.so");
        std::fs::write(&lib, "x").unwrap();
        let link = tmp.path().join("alias.so");
        std::os::unix::fs::symlink(&lib, &link).unwrap();
        let existing = format!("{}:/other.so:{}", lib.display(), link.display());
        assert_eq!(
            compose_preload(Platform::Elf, Some(OsStr::new(&existing)), &lib),
            OsString::from(format!("{}:/other.so", lib.display()))
        );
        assert_eq!(preload_variable(Platform::MacOs), "DYLD_INSERT_LIBRARIES");
        assert_eq!(preload_variable(Platform::Elf), "LD_PRELOAD");
    }
}
