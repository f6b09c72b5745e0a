//! Breadcrumb lines: `[timestamp] TAG: payload | key=value ...`, the format
//! shared with the Python tool, written by the injected library and read back
//! by `orphan-scan` and `postmortem`.
