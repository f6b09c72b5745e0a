//! Every reader of a state file, fed random bytes, JSON of the wrong shape
//! and every number edge: none panics, each answers (a value or a one-line
//! warning), and what it writes back is valid.

use metal_guard_core::cadence::load_file::check_and_mark_at;
use metal_guard_core::cadence::rule::CadencePolicy;
use metal_guard_core::forensics::panic_ledger;
use metal_guard_core::gates::mlx_lock::{lock_status, LockPaths};
use metal_guard_core::gates::{breaker, sentinel};
use metal_guard_core::orphans;
use metal_guard_core::warnings::Warnings;
use proptest::prelude::*;
use time::OffsetDateTime;

/// Bytes a state file may hold after damage: random, or JSON-ish with the
/// keys our files use and values of every kind.
fn damaged() -> impl Strategy<Value = Vec<u8>> {
    let value = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("\"\"".to_string()),
        Just("\"9999-12-31T23:59:59Z\"".to_string()),
        Just("1e308".to_string()),
        Just("-1e308".to_string()),
        Just("18446744073709551615".to_string()),
        Just("-9223372036854775808".to_string()),
        Just("[1, 2]".to_string()),
        Just("{}".to_string()),
        any::<f64>().prop_map(|f| if f.is_finite() {
            f.to_string()
        } else {
            "0".into()
        }),
        "[a-z0-9 :\\-]{0,24}".prop_map(|s| format!("\"{s}\"")),
    ];
    let key = prop_oneof![
        Just("pid"),
        Just("started_at"),
        Just("label"),
        Just("cooldown_until"),
        Just("created_at"),
        Just("entered_at"),
        Just("panic_count"),
        Just("window_sec"),
        Just("threshold"),
        Just("ts"),
        Just("signature"),
        Just("m"),
    ];
    let object = prop::collection::vec((key, value), 0..8).prop_map(|kv| {
        let body: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
        format!("{{{}}}", body.join(", ")).into_bytes()
    });
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        object.clone(),
        prop::collection::vec(object, 0..4).prop_map(|lines| lines.join(&b"\n"[..])),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_state_reader_answers_whatever_the_file_holds(bytes in damaged()) {
        let dir = tempfile::tempdir().unwrap();
        let p = |name: &str| dir.path().join(name);
        let now = OffsetDateTime::now_utc();
        for name in ["s.json", "b.json", "c.json", "l.jsonl", "lock", "log"] {
            std::fs::write(p(name), &bytes).unwrap();
        }
        let _ = sentinel::read_sentinel(&p("s.json"), now);
        let _ = breaker::read_breaker(&p("b.json"));
        let _ = panic_ledger::recorded_panics(&p("l.jsonl"));
        let _ = orphans::read_log(&p("log"));
        let _ = lock_status(&LockPaths::for_record(p("lock")));
        // The cadence check reads, decides and writes back a valid file.
        let mut w = Warnings::new();
        let check = check_and_mark_at(&p("c.json"), "m", &CadencePolicy::default(), now, &mut w);
        prop_assert!(check.is_ok(), "{check:?}");
        prop_assert!(w.iter().all(|l| !l.contains('\n')));
        let back: Result<serde_json::Value, _> =
            serde_json::from_slice(&std::fs::read(p("c.json")).unwrap());
        prop_assert!(back.is_ok());
    }
}
