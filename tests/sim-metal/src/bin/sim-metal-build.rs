//! `cargo run -p metal-guard-sim-metal --bin sim-metal-build`: builds the
//! simulated Metal driver and the self-test's client library, and prints the
//! folder to pass to `metal-guard selftest --sim-driver` (or to put in
//! `METALGUARD_SIM_METAL_DIR`).

use std::process::ExitCode;

fn main() -> ExitCode {
    match sim_metal::selftest_artifacts() {
        Ok(built) => {
            println!("{}", built.dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sim-metal-build: {e}");
            ExitCode::FAILURE
        }
    }
}
