//! `scan_reports` over a DiagnosticReports-like folder of 10,000 files,
//! next to a plain directory listing of the same folder.
//!
//! The folder mixes what a Mac that runs MLX all day accumulates: app crash
//! reports (`Python-2026-...ips`, bug_type 309), hang reports
//! (`Python_2026-..._host.hang`), resource diagnostics (`.diag`), jetsam
//! events (bug_type 298) and a few kernel panics (`panic-full-*.ips`,
//! `panic-base-*.panic`, `Kernel-*.panic`) built from the repository's
//! example reports, at realistic sizes: text panics 20-65 KB, `.ips` panics
//! 120 KB-1.3 MB with the stackshot after the panic text, crashes 10-60 KB,
//! hangs 30-200 KB.
//!
//! Run: `cargo run --release -p metal-guard-bench --bin scan [-- FILES]`.
//! Target: the scan stays within 5x of the listing.

use metal_guard_core::forensics::discovery::list_candidates;
use metal_guard_core::forensics::{scan_reports, ReportScan};
use serde_json::json;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

const IOGPU_IPS: &str =
    include_str!("../../../examples/panic-reports/panic-full-2026-04-24-000000.000.ips");
const IOGPU_TEXT: &str =
    include_str!("../../../examples/panic-reports/panic-full-2026-03-29-114850.0002.panic");
const OTHER_TEXT: &str =
    include_str!("../../../examples/panic-reports/panic-full-2026-04-02-181530.0002.panic");

const DEFAULT_FILES: usize = 10_000;
/// Panics among the files: a heavy MLX user over Apple's ~30-day retention.
const PANIC_SHARE_PER_MILLE: u64 = 5;
const ROUNDS: usize = 15;
const TARGET_RATIO: f64 = 5.0;

/// Deterministic pseudo-random numbers (SplitMix64): the same folder every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// `2026-11-25-101010`, spread over the last 30 days.
fn stamp(rng: &mut Rng) -> String {
    let day = rng.range(1, 29);
    format!(
        "2026-11-{day:02}-{:02}{:02}{:02}",
        rng.range(0, 24),
        rng.range(0, 60),
        rng.range(0, 60)
    )
}

/// Filler that looks like report content (thread backtraces), `bytes` long.
fn filler(rng: &mut Rng, bytes: usize) -> String {
    let mut out = String::with_capacity(bytes + 128);
    let mut frame = 0;
    while out.len() < bytes {
        out.push_str(&format!(
            "{frame:<4}libmlx.dylib                  0x{:016x} mlx::core::metal::Device::new_buffer + {}\n",
            rng.next(),
            rng.range(16, 4096)
        ));
        frame += 1;
    }
    out
}

/// A loaded-kext list like the one at the end of every panic text.
fn kext_list(rng: &mut Rng, bytes: usize) -> String {
    let mut out = String::from("\nloaded kexts:\n");
    let mut i = 0;
    while out.len() < bytes {
        out.push_str(&format!(
            "com.apple.driver.AppleDriver{i}\t{}.{}\n",
            rng.range(1, 900),
            rng.range(0, 99)
        ));
        i += 1;
    }
    out.push_str("com.apple.iokit.IOGPUFamily\t130.13\n");
    out
}

fn crash_ips(rng: &mut Rng, process: &str) -> String {
    let header = json!({"bug_type": "309", "app_name": process, "timestamp": "2026-11-20 10:10:10.00 +0000", "os_version": "macOS 26.4.1 (25E253)"});
    let size = rng.range(10_000, 60_000) as usize;
    let body = json!({"procName": process, "exception": {"type": "EXC_CRASH", "signal": "SIGABRT"}, "threads": filler(rng, size)});
    format!("{header}\n{body:#}\n")
}

fn hang_text(rng: &mut Rng, process: &str) -> String {
    let size = rng.range(30_000, 200_000) as usize;
    format!("Date/Time:        2026-11-20 10:10:10.000 +0000\nEnd time:         2026-11-20 10:10:15.000 +0000\nOS Version:       macOS 26.4.1 (Build 25E253)\nCommand:          {process}\nDuration:         5.00s\nEvent:            hang\n\n{}", filler(rng, size))
}

/// A kernel panic `.ips` laid out as Apple writes it: header line, then a
/// body whose `panicString` (15-60 KB of kext list after the panic) comes
/// before a stackshot of every process (100 KB to 1.2 MB).
fn panic_ips(rng: &mut Rng) -> String {
    let mut lines = IOGPU_IPS.lines();
    let header = lines.next().unwrap_or("{}");
    let example: serde_json::Value =
        serde_json::from_str(&lines.collect::<Vec<_>>().join("\n")).unwrap_or_default();
    let kexts = rng.range(15_000, 60_000) as usize;
    let panic_string = format!(
        "{}{}",
        example["panicString"].as_str().unwrap_or(""),
        kext_list(rng, kexts)
    );
    let stackshot = rng.range(100_000, 1_200_000) as usize;
    let body = json!({
        "build": example["build"],
        "product": "Mac16,5",
        "socId": "8132",
        "incident": example["incident"],
        "kernel": example["kernel"],
        "date": example["date"],
        "panicString": panic_string,
        "panicFlags": "0x902",
        "otherString": "\n** Stackshot Succeeded ** Bytes Traced 412312 (Uncompressed 1203216) **\n",
        "macOSPanicFlags": "0x0",
        "macOSPanicString": "",
        "processByPid": filler(rng, stackshot),
    });
    format!("{header}\n{body:#}\n")
}

/// A text `.panic`: the example report plus a 15-60 KB loaded-kext list.
fn panic_text(rng: &mut Rng, base: &str) -> String {
    let size = rng.range(15_000, 60_000) as usize;
    format!("{base}{}", kext_list(rng, size))
}

/// Writes `count` files; returns how many are kernel panics.
fn generate(dir: &Path, count: usize) -> std::io::Result<usize> {
    let mut rng = Rng(0x5EED);
    let processes = [
        "Python",
        "python3.12",
        "mlx_lm.server",
        "Safari",
        "Code Helper (Renderer)",
        "node",
        "ollama",
    ];
    let mut panics = 0;
    for i in 0..count {
        let process = processes[(rng.next() % processes.len() as u64) as usize];
        let when = stamp(&mut rng);
        let roll = rng.range(0, 1000);
        let (name, content) = if roll < PANIC_SHARE_PER_MILLE {
            panics += 1;
            match i % 3 {
                0 => (
                    format!("panic-full-{when}.000{}.ips", i % 10),
                    panic_ips(&mut rng),
                ),
                1 => (
                    format!("panic-full-{when}.000{}.panic", i % 10),
                    panic_text(&mut rng, IOGPU_TEXT),
                ),
                _ => (
                    format!("Kernel-{when}-{i}.panic"),
                    panic_text(&mut rng, OTHER_TEXT),
                ),
            }
        } else if roll < 700 {
            (
                format!("{process}-{when}-{i}.ips"),
                crash_ips(&mut rng, process),
            )
        } else if roll < 850 {
            (
                format!("{process}_{when}-{i}_Mac-Studio.hang"),
                hang_text(&mut rng, process),
            )
        } else if roll < 950 {
            (
                format!("{process}_{when}-{i}_Mac-Studio.cpu_resource.diag"),
                hang_text(&mut rng, process),
            )
        } else {
            let header = json!({"bug_type": "298", "timestamp": "2026-11-20 10:10:10.00 +0000"});
            (
                format!("JetsamEvent-{when}-{i}.ips"),
                format!("{header}\n{}", filler(&mut rng, 20_000)),
            )
        };
        fs::write(dir.join(name), content)?;
    }
    Ok(panics)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() -> std::process::ExitCode {
    let files: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(DEFAULT_FILES);
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("scan bench: cannot create a temporary folder ({e})");
            return std::process::ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    let panics = match generate(dir.path(), files) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("scan bench: cannot write the report folder ({e}); is the disk full?");
            return std::process::ExitCode::FAILURE;
        }
    };
    let bytes: u64 = fs::read_dir(dir.path())
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    println!(
        "generated {files} report files ({panics} kernel panics, {} MB) in {:.1?}",
        bytes / (1024 * 1024),
        started.elapsed()
    );

    let scan = ReportScan::all(vec![dir.path().to_path_buf()]);
    // Warm the page cache and the directory cache for both.
    let warm = scan_reports(&scan);
    let listed = fs::read_dir(dir.path()).map(|rd| rd.count()).unwrap_or(0);

    let mut listing = Vec::with_capacity(ROUNDS);
    let mut scanning = Vec::with_capacity(ROUNDS);
    let mut selecting = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let candidates = list_candidates(dir.path(), None, true, &mut Vec::new());
        selecting.push(t.elapsed());
        std::hint::black_box(candidates);

        let t = Instant::now();
        let names: Vec<std::ffi::OsString> = fs::read_dir(dir.path())
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.file_name())).collect())
            .unwrap_or_default();
        listing.push(t.elapsed());
        std::hint::black_box(names);

        let t = Instant::now();
        let outcome = scan_reports(&scan);
        scanning.push(t.elapsed());
        std::hint::black_box(outcome);
    }
    let list_med = median(listing);
    let scan_med = median(scanning);
    let select_med = median(selecting);
    let ratio = scan_med.as_secs_f64() / list_med.as_secs_f64().max(1e-9);
    println!(
        "found {} panic reports ({} IOGPU), {} skipped, among {listed} files",
        warm.reports.len(),
        warm.iogpu_reports().count(),
        warm.skipped.len()
    );
    println!("plain directory listing (read_dir, names): {list_med:>10.2?}  (median of {ROUNDS})");
    println!("scan_reports (find, read, parse, classify): {scan_med:>10.2?}  (median of {ROUNDS})");
    println!("  of which picking candidates (listing, names, stat): {select_med:>10.2?}");
    println!(
        "ratio scan/listing: {ratio:.2}x (target: within {TARGET_RATIO}x) -> {}",
        if ratio <= TARGET_RATIO {
            "OK"
        } else {
            "OVER TARGET"
        }
    );
    std::process::ExitCode::SUCCESS
}
