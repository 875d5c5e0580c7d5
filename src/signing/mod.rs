//! Detached Ed25519 signatures that stock tools check, and signed model version folders.
//! A signature file is the raw 64-byte Ed25519 signature over a file's bytes: what
//! `openssl pkeyutl -sign -rawin` writes and `openssl pkeyutl -verify -rawin` checks.

mod folder;

pub use folder::{MANIFEST, MANIFEST_SIG, sign_folder, unsigned_folders, verify_folder};

use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Length of an Ed25519 signature, and so of every signature file.
pub const SIGNATURE_LEN: usize = 64;
/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE { SEQUENCE { OID
/// 1.3.101.112 }, BIT STRING (0 unused bits) }; the 32-byte key follows.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Why signing or verifying failed. Every message names the file it is about.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// A key file is unreadable, or not an Ed25519 key in the PEM form expected.
    #[error("{path}: {reason}")]
    Key { path: String, reason: String },
    /// A file to sign or check cannot be read, or a signature or manifest cannot be written.
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    /// The signature file is absent.
    #[error("unsigned: no {0}")]
    Unsigned(String),
    /// The signature file is not a raw 64-byte Ed25519 signature.
    #[error("{path}: not an Ed25519 signature ({len} bytes, expected 64)")]
    BadSignatureFile { path: String, len: u64 },
    /// No trusted key verifies the signature: another key signed, or the file changed since.
    #[error(
        "{path}: signed by a key not in {keys}, or changed since it was signed (checked {count} key(s))"
    )]
    Untrusted {
        path: String,
        keys: String,
        count: usize,
    },
    /// There is no trusted key at all, so nothing can verify.
    #[error("{path}: no trusted key in {keys}, so no signature can verify")]
    NoTrustedKeys { path: String, keys: String },
    /// The manifest is malformed (a signed manifest that still fails here was made by hand).
    #[error("{path} line {line}: {reason}")]
    Manifest {
        path: String,
        line: usize,
        reason: String,
    },
    /// A file in a signed folder differs from the manifest, is missing, or should not be
    /// there (an extra file, a symlink, a special file, a hostile name).
    #[error("{file}: {reason}")]
    Refused { file: String, reason: String },
}

fn key_error(path: &Path, reason: impl Into<String>) -> SigningError {
    SigningError::Key {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> SigningError {
    SigningError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// An Ed25519 private key, loaded from PKCS#8 PEM (`inferd keygen`'s `KID.key.pem`,
/// `inferd init`'s keys, or `openssl genpkey -algorithm ed25519`). Never printed or logged.
pub struct Signer {
    pair: Ed25519KeyPair,
    kid: String,
}

impl std::fmt::Debug for Signer {
    /// The key id only: the private key never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Reads a PKCS#8 `BEGIN PRIVATE KEY` PEM file (v1 as openssl writes it, or v2).
    pub fn load(path: &Path) -> Result<Signer, SigningError> {
        let pem = std::fs::read(path).map_err(|e| key_error(path, e.to_string()))?;
        let der = PrivatePkcs8KeyDer::from_pem_slice(&pem)
            .map_err(|_| key_error(path, "not a private key in PKCS#8 PEM (BEGIN PRIVATE KEY)"))?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_pkcs8_der())
            .map_err(|_| key_error(path, "not an Ed25519 private key"))?;
        Ok(Signer::from_pair(pair))
    }

    /// A signer for a raw 32-byte seed; for tests and for keys made in memory.
    pub fn from_seed(seed: &[u8; 32]) -> Signer {
        // Invariant: ring refuses a seed only when it is not 32 bytes long.
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).expect("a 32-byte seed");
        Signer::from_pair(pair)
    }

    fn from_pair(pair: Ed25519KeyPair) -> Signer {
        let kid = crate::auth::jwt::thumbprint(pair.public_key().as_ref());
        Signer { pair, kid }
    }

    /// The RFC 7638 thumbprint of the public key: the kid `inferd keygen` names files by.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// The raw 64-byte Ed25519 signature over `message` (pure Ed25519, no prehash).
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut out = [0u8; SIGNATURE_LEN];
        out.copy_from_slice(self.pair.sign(message).as_ref());
        out
    }

    /// Signs the bytes of `file` into `file.sig` (written atomically, mode 0644); returns the
    /// signature's path. Pure Ed25519 needs the whole message, so the file is read whole:
    /// sign manifests and checksum lists, not multi-gigabyte blobs.
    pub fn sign_file(&self, file: &Path) -> Result<PathBuf, SigningError> {
        let bytes = std::fs::read(file).map_err(|e| io_error(file, e))?;
        let sig = sig_path(file);
        crate::atomic_file::write(&sig, &self.sign(&bytes), 0o644)
            .map_err(|e| io_error(&sig, e))?;
        Ok(sig)
    }
}

/// `file` with `.sig` appended: where `sign_file` writes and `verify_file` looks by default.
pub fn sig_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

/// Ed25519 public keys trusted to sign, by key id. Loaded from a folder of `KID.pem` (SPKI
/// PEM, `BEGIN PUBLIC KEY`, as `inferd keygen` and `openssl pkey -pubout` write): the file
/// stem is the key id. Several keys at once allow rotation.
#[derive(Debug, Clone)]
pub struct TrustedKeys {
    /// Where the keys came from, for error messages.
    source: String,
    keys: BTreeMap<String, [u8; 32]>,
}

impl TrustedKeys {
    /// No keys (every verification fails with [`SigningError::NoTrustedKeys`]); `source` is
    /// what error messages call the key set.
    pub fn empty(source: &str) -> TrustedKeys {
        TrustedKeys {
            source: source.to_owned(),
            keys: BTreeMap::new(),
        }
    }

    /// Loads every `*.pem` in `dir`; dot-files and other names are skipped (editors' and
    /// atomic writers' temp files). Any unreadable or invalid `.pem`, or a private key, fails
    /// the whole load naming the file: a half-loaded set would refuse models for no stated
    /// reason. An empty folder loads as no keys.
    pub fn load(dir: &Path) -> Result<TrustedKeys, SigningError> {
        let mut keys = TrustedKeys::empty(&dir.display().to_string());
        let entries = std::fs::read_dir(dir).map_err(|e| key_error(dir, e.to_string()))?;
        let mut paths = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| key_error(dir, e.to_string()))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.len() > ".pem".len() && name.ends_with(".pem") && !name.starts_with('.') {
                paths.push(path);
            }
        }
        paths.sort();
        for path in paths {
            keys.add_file(&path)?;
        }
        Ok(keys)
    }

    /// One public key file, its stem the key id: `inferd verify --key PUB.pem`.
    pub fn from_file(path: &Path) -> Result<TrustedKeys, SigningError> {
        let mut keys = TrustedKeys::empty(&path.display().to_string());
        keys.add_file(path)?;
        Ok(keys)
    }

    fn add_file(&mut self, path: &Path) -> Result<(), SigningError> {
        let (kid, pem) = read_public_key(path)?;
        let raw = public_key_bytes(path, pem.as_bytes())?;
        self.add(&kid, raw);
        Ok(())
    }

    /// Trusts a raw 32-byte public key under `kid` (replacing any key of that kid).
    pub fn add(&mut self, kid: &str, public_key: [u8; 32]) {
        self.keys.insert(kid.to_owned(), public_key);
    }

    /// How many keys are trusted.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The id of the first trusted key under which `signature` verifies `message`. `what`
    /// names the signed file in errors.
    pub fn verify(
        &self,
        what: &str,
        message: &[u8],
        signature: &[u8],
    ) -> Result<&str, SigningError> {
        if self.keys.is_empty() {
            return Err(SigningError::NoTrustedKeys {
                path: what.to_owned(),
                keys: self.source.clone(),
            });
        }
        self.keys
            .iter()
            .find(|(_, key)| {
                UnparsedPublicKey::new(&ED25519, key)
                    .verify(message, signature)
                    .is_ok()
            })
            .map(|(kid, _)| kid.as_str())
            .ok_or_else(|| SigningError::Untrusted {
                path: what.to_owned(),
                keys: self.source.clone(),
                count: self.keys.len(),
            })
    }
}

/// Reads and checks an Ed25519 public key file: (key id = file stem without `.pem`, PEM
/// text). A private key is refused: it has no place among trusted keys.
pub fn read_public_key(path: &Path) -> Result<(String, String), SigningError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let kid = name.strip_suffix(".pem").unwrap_or(name);
    if kid.is_empty() {
        return Err(key_error(path, "no file name to take the key id from"));
    }
    let pem = std::fs::read_to_string(path).map_err(|e| key_error(path, e.to_string()))?;
    public_key_bytes(path, pem.as_bytes())?;
    Ok((kid.to_owned(), pem))
}

fn public_key_bytes(path: &Path, pem: &[u8]) -> Result<[u8; 32], SigningError> {
    if PrivatePkcs8KeyDer::from_pem_slice(pem).is_ok() {
        return Err(key_error(
            path,
            "a private key; trusted keys are public keys only (keep the private key off the device)",
        ));
    }
    let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem)
        .map_err(|_| key_error(path, "not a public key in SPKI PEM (BEGIN PUBLIC KEY)"))?;
    spki.as_ref()
        .strip_prefix(&ED25519_SPKI_PREFIX[..])
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .ok_or_else(|| key_error(path, "not an Ed25519 public key"))
}

/// Reads a signature file: exactly 64 bytes, else a clear error (absent: `Unsigned`).
pub fn read_signature(path: &Path) -> Result<[u8; SIGNATURE_LEN], SigningError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SigningError::Unsigned(path.display().to_string()));
        }
        Err(e) => return Err(io_error(path, e)),
    };
    let mut bytes = Vec::with_capacity(SIGNATURE_LEN);
    file.take(SIGNATURE_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(path, e))?;
    <[u8; SIGNATURE_LEN]>::try_from(bytes.as_slice()).map_err(|_| SigningError::BadSignatureFile {
        path: path.display().to_string(),
        len: std::fs::metadata(path)
            .map(|m| m.len())
            .unwrap_or(bytes.len() as u64),
    })
}

/// Checks `file` against its detached signature `sig` (default `file.sig`); returns the id of
/// the trusted key that signed it.
pub fn verify_file(
    file: &Path,
    sig: Option<&Path>,
    trusted: &TrustedKeys,
) -> Result<String, SigningError> {
    let sig = sig.map_or_else(|| sig_path(file), Path::to_path_buf);
    let signature = read_signature(&sig)?;
    let bytes = std::fs::read(file).map_err(|e| io_error(file, e))?;
    let kid = trusted.verify(&file.display().to_string(), &bytes, &signature)?;
    Ok(kid.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A keypair as `inferd keygen` writes it, into `dir`: returns (private path, public path).
    pub(crate) fn keygen(dir: &Path) -> (PathBuf, PathBuf, String) {
        let (private_pem, public_pem, kid) = crate::auth::jwt::keypair();
        let private = dir.join(format!("{kid}.key.pem"));
        let public = dir.join(format!("{kid}.pem"));
        std::fs::write(&private, private_pem).unwrap();
        std::fs::write(&public, public_pem).unwrap();
        (private, public, kid)
    }

    #[test]
    fn keygen_keys_sign_and_verify_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        let keys = tmp.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        let (private, public, kid) = keygen(&keys);
        let signer = Signer::load(&private).unwrap();
        assert_eq!(signer.kid(), kid);
        let file = tmp.path().join("SHA256SUMS");
        std::fs::write(&file, b"abc  inferd\n").unwrap();
        let sig = signer.sign_file(&file).unwrap();
        assert_eq!(sig, tmp.path().join("SHA256SUMS.sig"));
        assert_eq!(std::fs::read(&sig).unwrap().len(), 64);
        let trusted = TrustedKeys::from_file(&public).unwrap();
        assert_eq!(verify_file(&file, None, &trusted).unwrap(), kid);
        std::fs::write(&file, b"abd  inferd\n").unwrap();
        let err = verify_file(&file, None, &trusted).unwrap_err();
        assert!(matches!(err, SigningError::Untrusted { .. }), "{err}");
    }

    #[test]
    fn another_key_is_not_trusted() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        std::fs::write(&file, b"payload").unwrap();
        Signer::from_seed(&[1; 32]).sign_file(&file).unwrap();
        let mut trusted = TrustedKeys::empty("test keys");
        trusted.add(
            "two",
            Signer::from_seed(&[2; 32]).public_key().try_into().unwrap(),
        );
        let err = verify_file(&file, None, &trusted).unwrap_err().to_string();
        assert!(err.contains("signed by a key not in test keys"), "{err}");
        trusted.add(
            "one",
            Signer::from_seed(&[1; 32]).public_key().try_into().unwrap(),
        );
        assert_eq!(verify_file(&file, None, &trusted).unwrap(), "one");
    }

    #[test]
    fn missing_short_and_empty_key_set_are_clear_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        std::fs::write(&file, b"payload").unwrap();
        let mut trusted = TrustedKeys::empty("k");
        trusted.add(
            "one",
            Signer::from_seed(&[1; 32]).public_key().try_into().unwrap(),
        );
        let err = verify_file(&file, None, &trusted).unwrap_err();
        assert!(err.to_string().starts_with("unsigned: no "), "{err}");
        std::fs::write(sig_path(&file), [0u8; 63]).unwrap();
        let err = verify_file(&file, None, &trusted).unwrap_err();
        assert!(err.to_string().contains("(63 bytes, expected 64)"), "{err}");
        Signer::from_seed(&[1; 32]).sign_file(&file).unwrap();
        let err = verify_file(&file, None, &TrustedKeys::empty("k")).unwrap_err();
        assert!(matches!(err, SigningError::NoTrustedKeys { .. }), "{err}");
    }

    #[test]
    fn trusted_folder_refuses_bad_and_private_keys_and_skips_other_files() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(TrustedKeys::load(tmp.path()).unwrap().is_empty());
        std::fs::write(tmp.path().join("README"), "not a key").unwrap();
        std::fs::write(tmp.path().join(".k.pem.tmp.1"), "half").unwrap();
        let (private, public, kid) = keygen(tmp.path());
        let err = TrustedKeys::load(tmp.path()).unwrap_err().to_string();
        assert!(err.contains(".key.pem: a private key"), "{err}");
        std::fs::remove_file(&private).unwrap();
        let keys = TrustedKeys::load(tmp.path()).unwrap();
        assert_eq!(keys.len(), 1);
        assert!(keys.keys.contains_key(&kid));
        std::fs::write(
            tmp.path().join("bad.pem"),
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        )
        .unwrap();
        let err = TrustedKeys::load(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("bad.pem: not an Ed25519 public key"), "{err}");
        std::fs::write(tmp.path().join("bad.pem"), "hello").unwrap();
        let err = TrustedKeys::load(tmp.path()).unwrap_err().to_string();
        assert!(
            err.contains("bad.pem: not a public key in SPKI PEM"),
            "{err}"
        );
        assert!(
            TrustedKeys::load(&public).is_err(),
            "a file is not a folder"
        );
    }

    #[test]
    fn signature_matches_rfc8032_test_vector_1() {
        // RFC 8032 §7.1 TEST 1: the empty message.
        let seed: [u8; 32] =
            hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let expected = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155\
                        5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
        let sig = Signer::from_seed(&seed).sign(b"");
        let got: String = sig.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, expected);
    }

    fn hex<const N: usize>(text: &str) -> [u8; N] {
        let bytes: Vec<u8> = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect();
        bytes.try_into().unwrap()
    }
}
