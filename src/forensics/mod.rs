//! Panic-report forensics: find macOS panic reports, parse both layouts
//! (`.panic` text and `.ips` JSON), classify the IOGPUFamily signature and
//! explain it in plain words.
