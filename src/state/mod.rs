//! State files: atomic writes (temp + fsync + rename), versioned JSON and
//! tolerant reads that warn and reset instead of crashing.
