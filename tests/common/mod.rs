//! Helpers shared by the end-to-end tests: the real panic reports of
//! `../shared/fixtures/`, placed at a chosen time.
#![allow(dead_code)] // each test file uses the helpers it needs

use std::path::{Path, PathBuf};
use time::macros::format_description;
use time::OffsetDateTime;

/// The labelled real panic reports.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/panics")
}

pub fn apple_time(t: OffsetDateTime) -> String {
    t.format(format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second].00 +0000"
    ))
    .unwrap()
}

/// Copies an `.ips` fixture with its timestamps (header `timestamp`, body
/// `date`) moved to `when`, by text replacement: verbatim reports are not
/// always strict JSON.
pub fn ips_at(fixture: &str, dest: &Path, when: OffsetDateTime) -> PathBuf {
    let mut text = std::fs::read_to_string(fixtures().join(fixture)).unwrap();
    let head: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let stamp = head["timestamp"].as_str().unwrap().to_string();
    text = text.replace(&stamp, &apple_time(when));
    for key in ["\"date\" : \"", "\"date\":\""] {
        if let Some(start) = text.find(key) {
            let from = start + key.len();
            let end = from + text[from..].find('"').unwrap();
            text.replace_range(from..end, &apple_time(when));
        }
    }
    let name = format!(
        "Kernel-{}.ips",
        when.format(format_description!(
            "[year]-[month]-[day]-[hour][minute][second]"
        ))
        .unwrap()
    );
    let path = dest.join(name);
    std::fs::write(&path, text).unwrap();
    path
}
