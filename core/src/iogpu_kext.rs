//! The IOGPUFamily kernel extension's version, read from its bundle
//! `Info.plist` (`CFBundleVersion`, e.g. "130.15.2"). Panic reports name the
//! same version, so `diagnose` and the registry can compare them.

use std::path::Path;

/// Where macOS keeps the kext's property list.
pub const IOGPU_FAMILY_INFO_PLIST: &str =
    "/System/Library/Extensions/IOGPUFamily.kext/Contents/Info.plist";

/// `CFBundleVersion` of the plist at `path`, `None` when the file is missing,
/// unreadable or has no such key (binary plists included: Apple ships this one
/// as XML).
pub fn bundle_version_at(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    bundle_version(&text)
}

/// The installed IOGPUFamily version, if this is a Mac that has the kext.
pub fn installed_version() -> Option<String> {
    bundle_version_at(Path::new(IOGPU_FAMILY_INFO_PLIST))
}

/// Extracts `<key>CFBundleVersion</key><string>V</string>` from XML plist text.
/// A flat key lookup is enough: the key appears once, at the top level of
/// the bundle dictionary, with a plain string value.
pub fn bundle_version(xml: &str) -> Option<String> {
    let after_key = xml.split("<key>CFBundleVersion</key>").nth(1)?;
    let value = after_key.trim_start().strip_prefix("<string>")?;
    let end = value.find("</string>")?;
    let version = value[..end].trim();
    let plausible = !version.is_empty()
        && version.len() <= 32
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.');
    plausible.then(|| version.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLIST: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>CFBundleIdentifier</key>
	<string>com.apple.iokit.IOGPUFamily</string>
	<key>CFBundleShortVersionString</key>
	<string>130.15.2</string>
	<key>CFBundleVersion</key>
	<string>130.15.2</string>
</dict>
</plist>"#;

    #[test]
    fn reads_the_bundle_version() {
        assert_eq!(bundle_version(PLIST).as_deref(), Some("130.15.2"));
    }

    #[test]
    fn missing_or_odd_values_are_none() {
        assert_eq!(bundle_version("<plist><dict></dict></plist>"), None);
        assert_eq!(
            bundle_version("<key>CFBundleVersion</key><integer>3</integer>"),
            None
        );
        assert_eq!(
            bundle_version("<key>CFBundleVersion</key><string>1.0; rm</string>"),
            None
        );
        assert_eq!(
            bundle_version("<key>CFBundleVersion</key><string>1.0"),
            None
        );
    }

    #[test]
    fn a_missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(bundle_version_at(&dir.path().join("Info.plist")), None);
        let p = dir.path().join("Info.plist");
        std::fs::write(&p, PLIST).unwrap();
        assert_eq!(bundle_version_at(&p).as_deref(), Some("130.15.2"));
    }
}
