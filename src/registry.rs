//! The known-panic-model registry and version advisories, compiled in.
