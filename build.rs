//! Records when this binary was built, as a floor for the clock-sanity check: a device
//! whose clock reads earlier than its own build is certainly wrong (honours
//! SOURCE_DATE_EPOCH for reproducible builds), and the commit it was built from, for
//! `inferd --version` (from git, or SOURCE_COMMIT when building outside a checkout).

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// `git` with `args` in the crate's folder, its output when it succeeds.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The commit, and the files whose change means another commit (HEAD, the branch ref,
/// packed refs) so that cargo re-runs this script when it moves.
fn commit() -> String {
    println!("cargo:rerun-if-env-changed=SOURCE_COMMIT");
    if let Some(commit) = std::env::var("SOURCE_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
    {
        return commit;
    }
    for path in ["HEAD", "packed-refs"] {
        if let Some(p) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(p) = git(&["rev-parse", "--git-path", &branch])
    {
        println!("cargo:rerun-if-changed={p}");
    }
    git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_owned())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let built = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    println!("cargo:rustc-env=BUILT_AT_UNIX={built}");
    // Not an INFERD_ name: cargo also sets it for `cargo test` and `cargo run`, children
    // inherit it, and the server refuses unknown INFERD_* variables.
    println!("cargo:rustc-env=BUILD_COMMIT={}", commit());
}
