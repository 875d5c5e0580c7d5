//! OAuth2 clients for `POST /token` (client credentials grant): a TOML file of client ids,
//! SHA-256 hashes of their secrets and the scopes each may ask for. Secrets are generated
//! with 256 bits of entropy, so a fast hash is enough; comparison is constant-time.

use super::AuthError;
use super::api_key::{hex, sha256};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use std::path::Path;
use subtle::ConstantTimeEq;

/// One client in the clients file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientEntry {
    pub id: String,
    /// Lower-case hex SHA-256 of the secret.
    pub secret_sha256: String,
    /// Scopes this client may be granted.
    pub scopes: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientsFile {
    #[serde(default)]
    pub client: Vec<ClientEntry>,
}

/// The loaded clients.
pub struct Clients {
    clients: Vec<(ClientEntry, [u8; 32])>,
}

impl Clients {
    /// Reads and checks a clients file.
    pub fn load(path: &Path) -> Result<Clients, AuthError> {
        let err = |reason: String| AuthError::KeysFile {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let file: ClientsFile =
            toml::from_str(&text).map_err(|e| err(crate::config::toml_reason(&text, &e)))?;
        let mut clients = Vec::with_capacity(file.client.len());
        for entry in file.client {
            let hash = super::api_key::unhex(&entry.secret_sha256).ok_or_else(|| {
                err(format!(
                    "client {}: secret_sha256 must be 64 hex digits",
                    entry.id
                ))
            })?;
            if entry.id.is_empty()
                || clients
                    .iter()
                    .any(|(c, _): &(ClientEntry, _)| c.id == entry.id)
            {
                return Err(err(format!(
                    "client id {:?} is empty or repeated",
                    entry.id
                )));
            }
            clients.push((entry, hash));
        }
        Ok(Clients { clients })
    }

    /// The client's allowed scopes when `secret` is its secret. The secret is hashed and
    /// compared in constant time even for an unknown id.
    pub fn verify(&self, id: &str, secret: &str) -> Option<&[String]> {
        let presented = sha256(secret.as_bytes());
        let found = self
            .clients
            .iter()
            .find(|(c, _)| c.id.as_bytes().ct_eq(id.as_bytes()).into());
        let expected = found.map_or([0u8; 32], |(_, h)| *h);
        let ok = bool::from(presented.ct_eq(&expected)) && found.is_some();
        found.filter(|_| ok).map(|(c, _)| c.scopes.as_slice())
    }
}

/// A fresh client secret and its clients-file entry.
pub fn generate(
    id: &str,
    scopes: Vec<String>,
) -> Result<(String, ClientEntry), ring::error::Unspecified> {
    let mut raw = [0u8; 32];
    SystemRandom::new().fill(&mut raw)?;
    let secret = hex(&raw);
    let entry = ClientEntry {
        id: id.to_owned(),
        secret_sha256: hex(&sha256(secret.as_bytes())),
        scopes,
    };
    Ok((secret, entry))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_the_right_secret_only() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, entry) = generate("cam", vec!["predict".into()]).unwrap();
        let path = dir.path().join("clients.toml");
        std::fs::write(
            &path,
            toml::to_string(&ClientsFile {
                client: vec![entry],
            })
            .unwrap(),
        )
        .unwrap();
        let clients = Clients::load(&path).unwrap();
        assert_eq!(
            clients.verify("cam", &secret),
            Some(&["predict".to_string()][..])
        );
        assert_eq!(clients.verify("cam", "wrong"), None);
        assert_eq!(clients.verify("other", &secret), None);
    }
}
