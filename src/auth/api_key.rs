//! API keys: a TOML keys file of ids, SHA-256 hashes, scopes and optional expiry. A
//! presented key is hashed and looked up by its hash (O(1) however many keys: the lookup's
//! timing depends only on the digest, which says nothing usable about the key without
//! inverting SHA-256), then confirmed with a constant-time comparison; the key itself is
//! never stored, logged or compared with `==`.

use super::{AuthError, Method, Principal};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;

/// Longest key we hash; anything longer is refused unhashed.
const MAX_KEY_LEN: usize = 256;
/// Prefix of generated keys, so that they are recognisable in secret scanners.
const KEY_PREFIX: &str = "inferd_";

/// One entry of the keys file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    pub id: String,
    /// Lower-case hex SHA-256 of the key.
    pub sha256: String,
    pub scopes: Vec<String>,
    /// Unix seconds after which the key is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysFile {
    #[serde(default)]
    pub key: Vec<KeyEntry>,
}

struct Stored {
    entry: KeyEntry,
    hash: [u8; 32],
}

/// The loaded keys, by the SHA-256 of the key.
pub struct KeyRing {
    keys: HashMap<[u8; 32], Stored>,
}

/// SHA-256 of a presented secret (keys and client secrets are 256-bit random, so a fast
/// hash is enough).
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Lower-case hex, as the keys and clients files store hashes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl KeyRing {
    /// Parses a keys file's text; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<KeyRing, AuthError> {
        let err = |reason: String| AuthError::KeysFile {
            path: path.display().to_string(),
            reason,
        };
        let file: KeysFile =
            toml::from_str(text).map_err(|e| err(crate::config::toml_reason(text, &e)))?;
        let mut keys = HashMap::with_capacity(file.key.len());
        let mut ids = std::collections::HashSet::with_capacity(file.key.len());
        for entry in file.key {
            let hash = unhex(&entry.sha256)
                .ok_or_else(|| err(format!("key {}: sha256 must be 64 hex digits", entry.id)))?;
            if entry.id.is_empty() || !ids.insert(entry.id.clone()) {
                return Err(err(format!("key id {:?} is empty or repeated", entry.id)));
            }
            if keys.contains_key(&hash) {
                return Err(err(format!(
                    "key {}: the same key (sha256) is listed under another id",
                    entry.id
                )));
            }
            keys.insert(hash, Stored { entry, hash });
        }
        Ok(KeyRing { keys })
    }

    /// Reads and parses a keys file.
    pub fn load(path: &Path) -> Result<KeyRing, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|e| AuthError::KeysFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        KeyRing::parse(&text, path)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Looks a presented key up by its hash and confirms it in constant time.
    pub fn verify(&self, presented: &str, now: SystemTime) -> Result<Principal, AuthError> {
        if presented.is_empty() || presented.len() > MAX_KEY_LEN {
            return Err(AuthError::UnknownKey);
        }
        let hash = sha256(presented.as_bytes());
        let stored = self
            .keys
            .get(&hash)
            .filter(|stored| bool::from(stored.hash.ct_eq(&hash)))
            .ok_or(AuthError::UnknownKey)?;
        if let Some(expires) = stored.entry.expires
            && now >= UNIX_EPOCH + Duration::from_secs(expires)
        {
            return Err(AuthError::ExpiredKey(stored.entry.id.clone()));
        }
        Ok(Principal {
            id: stored.entry.id.clone(),
            method: Method::ApiKey,
            scopes: stored.entry.scopes.clone(),
            client: None,
        })
    }
}

/// Makes a fresh key (256 bits from the system RNG) and its keys-file entry.
pub fn generate(
    id: &str,
    scopes: Vec<String>,
) -> Result<(String, KeyEntry), ring::error::Unspecified> {
    let mut raw = [0u8; 32];
    SystemRandom::new().fill(&mut raw)?;
    let key = format!("{KEY_PREFIX}{}", hex(&raw));
    let entry = KeyEntry {
        id: id.to_owned(),
        sha256: hex(&sha256(key.as_bytes())),
        scopes,
        expires: None,
    };
    Ok((key, entry))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_with(entry: &KeyEntry) -> KeyRing {
        let file = KeysFile {
            key: vec![entry.clone()],
        };
        KeyRing::parse(&toml::to_string(&file).unwrap(), Path::new("keys.toml")).unwrap()
    }

    #[test]
    fn generated_key_verifies_and_others_do_not() {
        let (key, entry) = generate("app", vec!["predict".into()]).unwrap();
        let ring = ring_with(&entry);
        let p = ring.verify(&key, SystemTime::now()).unwrap();
        assert_eq!(
            (p.id.as_str(), p.scopes.clone()),
            ("app", vec!["predict".to_string()])
        );
        assert!(matches!(
            ring.verify("inferd_wrong", SystemTime::now()),
            Err(AuthError::UnknownKey)
        ));
        assert!(matches!(
            ring.verify(&"a".repeat(1000), SystemTime::now()),
            Err(AuthError::UnknownKey)
        ));
        assert!(!entry.sha256.contains(&key[7..]));
    }

    #[test]
    fn expired_key_is_refused() {
        let (key, mut entry) = generate("old", vec![]).unwrap();
        entry.expires = Some(1_000);
        let ring = ring_with(&entry);
        assert!(matches!(
            ring.verify(&key, SystemTime::now()),
            Err(AuthError::ExpiredKey(_))
        ));
        assert!(
            ring.verify(&key, UNIX_EPOCH + Duration::from_secs(999))
                .is_ok()
        );
    }

    #[test]
    fn malformed_files_name_the_problem() {
        let bad = "[[key]]\nid = \"a\"\nsha256 = \"zz\"\nscopes = []\n";
        let e = KeyRing::parse(bad, Path::new("k.toml")).err().unwrap();
        assert!(e.to_string().contains("64 hex"));
        let unknown = "[[key]]\nid = \"a\"\nsha = \"zz\"\nscopes = []\n";
        assert!(KeyRing::parse(unknown, Path::new("k.toml")).is_err());
        let hash = "ab".repeat(32);
        let twice = format!(
            "[[key]]\nid = \"a\"\nsha256 = \"{hash}\"\nscopes = []\n\
             [[key]]\nid = \"b\"\nsha256 = \"{hash}\"\nscopes = []\n"
        );
        let e = KeyRing::parse(&twice, Path::new("k.toml")).err().unwrap();
        assert!(e.to_string().contains("another id"), "{e}");
    }

    #[test]
    fn many_keys_each_verify_as_their_own_id() {
        let keys: Vec<_> = (0..50)
            .map(|i| generate(&format!("k{i}"), vec!["predict".into()]).unwrap())
            .collect();
        let file = KeysFile {
            key: keys.iter().map(|(_, entry)| entry.clone()).collect(),
        };
        let ring = KeyRing::parse(&toml::to_string(&file).unwrap(), Path::new("k.toml")).unwrap();
        assert_eq!(ring.len(), 50);
        for (i, (key, _)) in keys.iter().enumerate() {
            let p = ring.verify(key, SystemTime::now()).unwrap();
            assert_eq!(p.id, format!("k{i}"));
        }
        assert!(ring.verify("inferd_nope", SystemTime::now()).is_err());
    }
}
