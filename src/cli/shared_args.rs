//! Arguments several commands share, defined once and flattened into each.

use metal_guard_core::forensics;
use std::path::PathBuf;

/// `--reports DIR` (repeatable): where to read panic reports.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ReportFolders {
    /// Folder of panic reports to read instead of the macOS places (repeatable).
    #[arg(long = "reports", value_name = "DIR")]
    pub reports: Vec<PathBuf>,
}

impl ReportFolders {
    /// The folders to read: these, else `METALGUARD_PANIC_REPORT_DIRS`, else the macOS places.
    pub fn dirs(&self) -> Vec<PathBuf> {
        forensics::report_dirs(&self.reports)
    }

    /// Whether the Mac's own places are read (nothing passed on the command line).
    pub fn are_the_macs_own(&self) -> bool {
        self.reports.is_empty()
    }
}

/// `--json`: print one JSON document instead of text.
#[derive(clap::Args, Debug, Clone, Copy, Default)]
pub struct JsonOutput {
    /// Print one JSON document instead of text (before or after the command).
    #[arg(long, global = true)]
    pub json: bool,
}
