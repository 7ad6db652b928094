//! Tests that need something the machine may lack (a capability, a binary) either run or say
//! so: they fail, naming what is missing and how to provide it, unless the `FERRISDB_SKIP_*`
//! variable named for that need is `1`. A skipped test prints why and appends a line to the
//! file named by `FERRISDB_SKIP_REPORT` (set by `scripts/test.sh`), which counts it as
//! skipped, not passed. CI sets no skip variable: there everything runs.

#![allow(dead_code)]

use std::io::Write;

/// Call once a test's need is known to be unmet: returns `true` (the caller returns at once)
/// after reporting the skip when `skip_var` is `1`, and panics otherwise. `test` names the
/// test, `why` says what is missing and how to provide it.
pub fn skip_or_fail(test: &str, skip_var: &str, why: &str) -> bool {
    if std::env::var(skip_var).as_deref() != Ok("1") {
        panic!("{test}: {why} (set {skip_var}=1 to skip this test where that is impossible)");
    }
    eprintln!("SKIPPED {test}: {why} ({skip_var}=1)");
    if let Some(report) = std::env::var_os("FERRISDB_SKIP_REPORT") {
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&report)
            .and_then(|mut f| writeln!(f, "{test}: {why}"));
        if let Err(e) = appended {
            eprintln!(
                "cannot record the skip in {}: {e}",
                report.to_string_lossy()
            );
        }
    }
    true
}
