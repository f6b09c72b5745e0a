//! Link set-up for the macOS build of the injected library, done without an
//! Apple SDK (see `docs/macos.md`):
//!
//! - system symbols resolve against the text-based stubs in `macos-stubs/`
//!   (install names and symbol names only), found through `-F` (frameworks)
//!   and `-L` (plain libraries, should one ever be linked directly: today the
//!   Objective-C and Blocks runtimes are reached through `dlsym`);
//! - Metal is weak-linked (`LC_LOAD_WEAK_DYLIB`), so a process without it
//!   still starts, and is named only here: a `#[link(kind = "framework")]`
//!   attribute anywhere would make the link strong;
//! - the dylib gets an `@rpath`-relative install name;
//! - nothing is left to `-undefined dynamic_lookup`: a symbol missing from
//!   the stubs fails the link here instead of failing a user's launch.
//!
//! Other targets need nothing from this script.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=macos-stubs");
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os != "macos" {
        return;
    }
    let stubs =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
            .join("macos-stubs");
    println!("cargo:rustc-link-search=native={}", stubs.display());
    println!("cargo:rustc-link-search=framework={}", stubs.display());
    println!("cargo:rustc-cdylib-link-arg=-weak_framework");
    println!("cargo:rustc-cdylib-link-arg=Metal");
    // The `libc` crate asks for `-liconv` on Apple targets; we use none of it,
    // so drop every dylib nothing binds to (only libSystem and Metal remain).
    println!("cargo:rustc-cdylib-link-arg=-Wl,-dead_strip_dylibs");
    println!("cargo:rustc-cdylib-link-arg=-install_name");
    println!("cargo:rustc-cdylib-link-arg=@rpath/libmetal_guard_inject.dylib");
}
