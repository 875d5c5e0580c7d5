//! Shared pieces of inferd's fuzz targets: an allocation guard, so that "allocation bounded
//! by the input, never by a size the input claims" is checked with or without a sanitizer,
//! and small helpers.
//!
//! libFuzzer's `-malloc_limit_mb` only works when a sanitizer runtime installs malloc hooks;
//! the targets are built without one (`-s none`: inferd forbids `unsafe`), so every target
//! links this counting allocator instead. One allocation above [`MAX_SINGLE_ALLOC`] aborts
//! with a message (libFuzzer saves the input as a crash), and [`Peak`] measures the highest
//! live heap growth over a region so targets can bound it by the input's length.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Largest single Rust allocation a target may make (the inputs are at most a few hundred KiB).
pub const MAX_SINGLE_ALLOC: usize = 64 << 20;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

struct Guard;

#[global_allocator]
static GUARD: Guard = Guard;

fn too_big(size: usize) -> ! {
    // No allocation here: we are inside the allocator.
    use std::io::Write;
    let mut digits = [0u8; 20];
    let mut n = size;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(b"==inferd-fuzz== single allocation of ");
    let _ = err.write_all(&digits[i..]);
    let _ = err.write_all(b" bytes exceeds the fuzz limit (input-driven allocation)\n");
    std::process::abort()
}

fn grew(size: usize) {
    let live = LIVE.fetch_add(size, Relaxed) + size;
    PEAK.fetch_max(live, Relaxed);
}

// SAFETY: forwards to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Guard {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_SINGLE_ALLOC {
            too_big(layout.size());
        }
        grew(layout.size());
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_SINGLE_ALLOC {
            too_big(layout.size());
        }
        grew(layout.size());
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > MAX_SINGLE_ALLOC {
            too_big(new_size);
        }
        if new_size >= layout.size() {
            grew(new_size - layout.size());
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Measures the peak growth of live Rust heap bytes from its creation.
pub struct Peak {
    base: usize,
}

impl Peak {
    pub fn start() -> Peak {
        let base = LIVE.load(Relaxed);
        PEAK.store(base, Relaxed);
        Peak { base }
    }

    /// Highest live heap growth since `start`, in bytes.
    pub fn growth(&self) -> usize {
        PEAK.load(Relaxed).saturating_sub(self.base)
    }
}

/// Lossy text of fuzz bytes: what a `&str` API sees.
pub fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// The fixture signing key (the same throwaway test key as
/// `tests/fixtures/jwt/signing-key.pem`; never used outside tests).
pub const SIGNING_KEY_PEM: &str = include_str!("../keys/signing-key.pem");
/// Its kid (RFC 7638 thumbprint).
pub const KID: &str = "2S-CrtHpts3cGZF1dGqSttIbZjF0gZWahjSY4djtKUI";
/// The fixture revocation list.
pub const REVOCATIONS: &str = include_str!("../keys/revocations.toml");
/// The clock the token targets verify at (the fixtures' `now`).
pub const NOW_UNIX: u64 = 1_750_000_000;

/// A verifier trusting the fixture key with the fixtures' policy (issuer, audience,
/// 60 s leeway, 8 KiB) and revocations.
pub fn fixture_verifier() -> inferd::auth::jwt::TokenVerifier {
    use inferd::auth::jwt::{Revocations, TokenPolicy, TokenVerifier, TrustedKeys};
    let signer = fixture_signer();
    assert_eq!(signer.kid(), KID);
    let mut keys = TrustedKeys::empty();
    keys.add(signer.kid(), &signer.public_key())
        .expect("fixture key");
    let policy = TokenPolicy {
        issuer: Some("https://issuer.example".into()),
        audience: Some("inferd-fleet".into()),
        leeway: std::time::Duration::from_secs(60),
        max_token_bytes: 8192,
    };
    let revocations = Revocations::parse(REVOCATIONS, std::path::Path::new("revocations.toml"))
        .expect("fixture revocations");
    TokenVerifier::new(keys, policy, revocations)
}

/// The signer of the fixture key (`TokenSigner::load` takes a path, so the PEM goes through a
/// private temporary file that is removed at once).
pub fn fixture_signer() -> inferd::auth::jwt::TokenSigner {
    let path = std::env::temp_dir().join(format!(
        "inferd-fuzz-signing-key-{}.pem",
        std::process::id()
    ));
    std::fs::write(&path, SIGNING_KEY_PEM).expect("write temporary key");
    let signer = inferd::auth::jwt::TokenSigner::load(&path);
    let _ = std::fs::remove_file(&path);
    signer.expect("fixture signing key")
}

pub fn now() -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(NOW_UNIX)
}
