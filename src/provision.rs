//! Provisioning a state folder (`inferd init`): config, a local CA and server certificate,
//! an Ed25519 token keypair, one admin API key. Every file is written atomically (temp file,
//! fsync, rename, fsync folder); files holding secrets get mode 0600.

use crate::auth::api_key::{self, KeysFile};
use crate::auth::jwt;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Why provisioning failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The folder already holds files: never overwrite a device's state.
    #[error("{0} already exists and is not empty; refusing to overwrite a state folder")]
    Exists(String),
    /// A file could not be written.
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
    /// Key or certificate generation failed.
    #[error("key generation failed: {0}")]
    Crypto(String),
    /// The keys file to update is unreadable.
    #[error("{0}")]
    Keys(String),
}

/// What `init` made, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct Provisioned {
    pub config: PathBuf,
    /// The admin key, shown once and stored only as a hash.
    pub api_key: String,
    pub ca_cert: PathBuf,
    pub token_private_key: PathBuf,
    pub token_key_id: String,
    /// The `aud` bearer tokens for this device must carry (its first DNS name).
    pub audience: String,
    /// Set up by `--require-signed-models`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_models: Option<SignedModels>,
}

/// Whether `init` makes the device refuse unsigned model folders, and whose signatures count.
#[derive(Debug, Clone, Default)]
pub enum ModelSigning {
    /// Models load unsigned (`require_signed` stays off).
    #[default]
    Off,
    /// Trust these public keys (SPKI PEM; each file stem is its key id), copied into
    /// `model_keys/`.
    Trust(Vec<PathBuf>),
    /// Make a keypair: the public half into `model_keys/`, the private half into
    /// `model-signing-key/`, to be moved off the device to the provisioning station.
    NewKey,
}

/// What `--require-signed-models` set up, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct SignedModels {
    /// `[models] trusted_keys_dir`: the public keys whose signatures are trusted.
    pub trusted_keys_dir: PathBuf,
    pub key_ids: Vec<String>,
    /// The private key `init` made (0600), if it made one: move it off the device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<PathBuf>,
    /// Model folders under the models folder without a signature: refused until signed.
    /// `init` does not sign them: a key on the device must not bless whatever it finds.
    pub unsigned: Vec<PathBuf>,
}

/// The device's name as tokens address it: the first DNS name among `names` (the
/// certificate's), else `localhost`. A token minted for one device then does not open
/// another that trusts the same station key.
pub fn device_audience(names: &[String]) -> String {
    names
        .iter()
        .find(|n| n.parse::<std::net::IpAddr>().is_err())
        .cloned()
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Options for `init`.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    pub listen: String,
    /// DNS names and IP addresses the server certificate covers.
    pub names: Vec<String>,
    pub models_dir: PathBuf,
    /// `--require-signed-models` (and `--model-key`).
    pub model_signing: ModelSigning,
}

/// Writes `bytes` to `path` atomically with `mode` (see [`crate::atomic_file`]).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), ProvisionError> {
    crate::atomic_file::write(path, bytes, mode).map_err(|e| ProvisionError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn crypto(e: impl std::fmt::Display) -> ProvisionError {
    ProvisionError::Crypto(e.to_string())
}

/// A local CA (its key is discarded after signing) and a server certificate for `names`.
/// Returns (CA PEM, server chain PEM, server key PEM).
pub fn issue_tls(names: &[String]) -> Result<(String, String, String), ProvisionError> {
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(crypto)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, "inferd local CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca =
        CertifiedIssuer::self_signed(ca, KeyPair::generate().map_err(crypto)?).map_err(crypto)?;
    let mut leaf = CertificateParams::new(names.to_vec()).map_err(crypto)?;
    leaf.distinguished_name.push(DnType::CommonName, "inferd");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let leaf_key = KeyPair::generate().map_err(crypto)?;
    let cert = leaf.signed_by(&leaf_key, &ca).map_err(crypto)?;
    Ok((
        ca.pem(),
        format!("{}{}", cert.pem(), ca.pem()),
        leaf_key.serialize_pem(),
    ))
}

/// A fresh Ed25519 token keypair: (private PEM, public PEM, kid). The kid is the RFC 7638
/// JWK thumbprint of the public key, so any party can recompute it.
pub fn token_keypair() -> Result<(String, String, String), ProvisionError> {
    Ok(jwt::keypair())
}

/// Writes a keys file holding only `entries`' hashes.
fn write_keys(path: &Path, file: &KeysFile) -> Result<(), ProvisionError> {
    let text = toml::to_string(file).map_err(|e| ProvisionError::Keys(e.to_string()))?;
    let text = format!("# inferd API keys: SHA-256 of each key, never the key itself.\n{text}");
    write_atomic(path, text.as_bytes(), 0o600)
}

/// Replaces (or adds) key `id` in a keys file with a fresh key, returned once.
pub fn rotate_key(path: &Path, id: &str, scopes: Vec<String>) -> Result<String, ProvisionError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ProvisionError::Keys(format!("{}: {e}", path.display())))?;
    let mut file: KeysFile = toml::from_str(&text).map_err(|e| {
        let reason = crate::config::toml_reason(&text, &e);
        ProvisionError::Keys(format!("{}: {reason}", path.display()))
    })?;
    let (key, entry) = api_key::generate(id, scopes).map_err(crypto)?;
    file.key.retain(|k| k.id != id);
    file.key.push(entry);
    write_keys(path, &file)?;
    Ok(key)
}

/// `inferd init DIR`: provisions a ready-to-run state folder.
pub fn init(dir: &Path, opts: &InitOptions) -> Result<Provisioned, ProvisionError> {
    let write_err = |p: &Path, e: std::io::Error| ProvisionError::Write {
        path: p.display().to_string(),
        reason: e.to_string(),
    };
    if dir.exists()
        && std::fs::read_dir(dir)
            .map_err(|e| write_err(dir, e))?
            .next()
            .is_some()
    {
        return Err(ProvisionError::Exists(dir.display().to_string()));
    }
    for sub in ["", "tls", "token", "token/trusted"] {
        let path = dir.join(sub);
        std::fs::create_dir_all(&path).map_err(|e| write_err(&path, e))?;
    }
    let audience = device_audience(&opts.names);
    let (ca_pem, chain_pem, key_pem) = issue_tls(&opts.names)?;
    write_atomic(&dir.join("tls/ca.pem"), ca_pem.as_bytes(), 0o644)?;
    write_atomic(&dir.join("tls/cert.pem"), chain_pem.as_bytes(), 0o644)?;
    write_atomic(&dir.join("tls/key.pem"), key_pem.as_bytes(), 0o600)?;
    let kid = write_token_keys(dir)?;
    let api_key = write_auth_files(dir)?;
    let models =
        std::path::absolute(&opts.models_dir).map_err(|e| write_err(&opts.models_dir, e))?;
    let signed_models = write_model_keys(dir, &opts.model_signing, &models)?;
    let model_signing = match signed_models {
        Some(_) => MODELS_SIGNED,
        None => MODELS_UNSIGNED,
    };
    let toml_string = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let config = CONFIG_TEMPLATE
        .replace("{listen}", &toml_string(&opts.listen))
        .replace("{models}", &toml_string(&models.display().to_string()))
        .replace("{audience}", &toml_string(&audience))
        .replace("{model_signing}", model_signing);
    let config_path = dir.join("inferd.toml");
    write_atomic(&config_path, config.as_bytes(), 0o640)?;
    Ok(Provisioned {
        config: config_path,
        api_key,
        ca_cert: dir.join("tls/ca.pem"),
        token_private_key: dir.join("token/signing-key.pem"),
        token_key_id: kid,
        audience,
        signed_models,
    })
}

/// `[models]` lines for `--require-signed-models`, and the hint otherwise.
const MODELS_SIGNED: &str = r#"trusted_keys_dir = "model_keys"  # public keys (KID.pem) whose model signatures are trusted
require_signed = true            # refuse unsigned, changed or differently-signed model folders
"#;
const MODELS_UNSIGNED: &str = r#"# trusted_keys_dir = "model_keys"  # with require_signed = true, load only model folders
# require_signed = true            # signed by these keys (`inferd model sign`)
"#;

/// `model_keys/` with the trusted public keys (and, for `NewKey`, the private half in
/// `model-signing-key/`, mode 0600 in a 0700 folder); `None` when signing is off.
fn write_model_keys(
    dir: &Path,
    signing: &ModelSigning,
    models: &Path,
) -> Result<Option<SignedModels>, ProvisionError> {
    let keys_dir = dir.join("model_keys");
    let (key_ids, signing_key) = match signing {
        ModelSigning::Off => return Ok(None),
        ModelSigning::Trust(keys) if keys.is_empty() => {
            return Err(ProvisionError::Keys(
                "no model key to trust: every model would be refused".into(),
            ));
        }
        ModelSigning::Trust(keys) => (copy_public_keys(&keys_dir, keys)?, None),
        ModelSigning::NewKey => {
            let (kid, private) = new_model_key(dir, &keys_dir)?;
            (vec![kid], Some(private))
        }
    };
    Ok(Some(SignedModels {
        trusted_keys_dir: keys_dir,
        key_ids,
        signing_key,
        unsigned: crate::signing::unsigned_folders(models),
    }))
}

/// Checks each public key (a private one is refused) and copies it as `keys_dir/<stem>.pem`.
fn copy_public_keys(keys_dir: &Path, keys: &[PathBuf]) -> Result<Vec<String>, ProvisionError> {
    create_dir(keys_dir, 0o755)?;
    let mut key_ids = Vec::new();
    for path in keys {
        let (kid, pem) = crate::signing::read_public_key(path)
            .map_err(|e| ProvisionError::Keys(e.to_string()))?;
        if key_ids.contains(&kid) {
            return Err(ProvisionError::Keys(format!(
                "two --model-key files are named {kid}.pem"
            )));
        }
        write_atomic(&keys_dir.join(format!("{kid}.pem")), pem.as_bytes(), 0o644)?;
        key_ids.push(kid);
    }
    Ok(key_ids)
}

/// A new model-signing keypair: the public half trusted in `keys_dir`, the private half in
/// `dir/model-signing-key/`. Returns (kid, private key path).
fn new_model_key(dir: &Path, keys_dir: &Path) -> Result<(String, PathBuf), ProvisionError> {
    let (private_pem, public_pem, kid) = jwt::keypair();
    let private_dir = dir.join("model-signing-key");
    create_dir(keys_dir, 0o755)?;
    create_dir(&private_dir, 0o700)?;
    let private = private_dir.join(format!("{kid}.key.pem"));
    write_atomic(&private, private_pem.as_bytes(), 0o600)?;
    let public = keys_dir.join(format!("{kid}.pem"));
    write_atomic(&public, public_pem.as_bytes(), 0o644)?;
    Ok((kid, private))
}

fn create_dir(path: &Path, mode: u32) -> Result<(), ProvisionError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(|e| ProvisionError::Write {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
}

/// The token signing key and its public half among the trusted keys; returns its kid.
fn write_token_keys(dir: &Path) -> Result<String, ProvisionError> {
    let (private_pem, public_pem, kid) = token_keypair()?;
    let private = dir.join("token/signing-key.pem");
    write_atomic(&private, private_pem.as_bytes(), 0o600)?;
    let public = dir.join(format!("token/trusted/{kid}.pem"));
    write_atomic(&public, public_pem.as_bytes(), 0o644)?;
    Ok(kid)
}

/// The keys file with one admin key (returned, shown once), an empty clients file and an
/// empty revocation list.
fn write_auth_files(dir: &Path) -> Result<String, ProvisionError> {
    let (api_key, entry) = api_key::generate("admin", vec!["admin".into()]).map_err(crypto)?;
    write_keys(&dir.join("api_keys.toml"), &KeysFile { key: vec![entry] })?;
    write_atomic(
        &dir.join("clients.toml"),
        b"# OAuth2 clients for POST /token: add entries printed by `inferd client new`.\n",
        0o600,
    )?;
    write_atomic(
        &dir.join("revocations.toml"),
        b"# Revoked tokens: jti = [\"...\"] and/or sub = [\"...\"]. Picked up without a restart.\njti = []\nsub = []\n",
        0o644,
    )?;
    Ok(api_key)
}

/// The config `inferd init` writes; `{listen}`, `{models}` and `{audience}` become TOML
/// strings, `{model_signing}` the `[models]` signature lines.
const CONFIG_TEMPLATE: &str = r#"# inferd configuration, written by `inferd init`. Paths are relative to this file.
listen = {listen}

[tls]
cert = "tls/cert.pem"
key = "tls/key.pem"

[limits]
max_connections = 256
# max_connections_per_ip = 64     # per client address (IPv6: per /64; via trusted proxies, per
                                  # forwarded client); default: 64, at most half max_connections
max_body_bytes = 4194304
max_inflight_body_bytes = 16777216 # request bodies held at once, all connections together; beyond: 503
header_timeout_ms = 10000
idle_timeout_ms = 30000
queue_timeout_ms = 10000          # longest wait for a worker; beyond it 503 (requests wait by time, not queue depth)

[models]
dir = {models}
{model_signing}
[auth]
api_keys_file = "api_keys.toml"
jwt_keys_dir = "token/trusted"      # one <kid>.pem per trusted signer
audience = {audience}               # tokens must name this device in aud (POST /token sets it)
revocations_file = "revocations.toml"
signing_key = "token/signing-key.pem" # enables POST /token
clients_file = "clients.toml"
leeway_s = 60
token_ttl_s = 900

[rate_limit]
default = "600/minute"            # per caller: API key id, token sub or certificate identity
failed_auth_per_ip = "10/minute"  # bad or missing credentials; beyond it 429 before any check
anonymous_per_ip = "600/minute"   # open routes (health, metadata, JWKS) and CORS preflights
token_per_ip = "60/minute"        # POST /token
# [rate_limit.keys]               # overrides by caller; also [rate_limit.scopes], [rate_limit.clients]
# "camera-1" = { rate = "50/second", burst = 100 }

[cors]
allowed_origins = []              # exact browser origins, e.g. ["https://dashboard.local:8443"]

[log]
level = "info"
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn init_writes_a_state_folder_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let opts = InitOptions {
            listen: "127.0.0.1:0".into(),
            names: vec!["localhost".into(), "127.0.0.1".into()],
            models_dir: PathBuf::from("models"),
            ..InitOptions::default()
        };
        let p = init(&dir, &opts).unwrap();
        assert!(p.api_key.starts_with("inferd_"));
        let mode = |f: &str| std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("tls/key.pem"), 0o600);
        assert_eq!(mode("token/signing-key.pem"), 0o600);
        assert_eq!(mode("api_keys.toml"), 0o600);
        let keys = std::fs::read_to_string(dir.join("api_keys.toml")).unwrap();
        assert!(
            !keys.contains(&p.api_key[7..]),
            "the key itself is never stored"
        );
        assert!(
            dir.join(format!("token/trusted/{}.pem", p.token_key_id))
                .exists()
        );
        assert!(matches!(init(&dir, &opts), Err(ProvisionError::Exists(_))));
    }

    #[test]
    fn require_signed_models_with_a_new_key_trusts_it_and_lists_unsigned_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let models = tmp.path().join("models");
        std::fs::create_dir_all(models.join("digits")).unwrap();
        std::fs::create_dir_all(models.join("text/1")).unwrap();
        std::fs::create_dir_all(models.join("text/2")).unwrap();
        let dir = tmp.path().join("state");
        let opts = InitOptions {
            listen: "127.0.0.1:0".into(),
            names: vec!["localhost".into()],
            models_dir: models.clone(),
            model_signing: ModelSigning::NewKey,
        };
        let p = init(&dir, &opts).unwrap();
        let s = p.signed_models.unwrap();
        let key = s.signing_key.unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(key.parent().unwrap()), 0o700);
        let kid = &s.key_ids[0];
        assert_eq!(key, dir.join(format!("model-signing-key/{kid}.key.pem")));
        let trusted = crate::signing::TrustedKeys::load(&s.trusted_keys_dir).unwrap();
        assert_eq!(trusted.len(), 1);
        let expected = ["digits", "text/1", "text/2"].map(|f| models.join(f));
        assert_eq!(s.unsigned, expected);
        let config = crate::config::Config::load(&p.config, |_| None).unwrap();
        assert!(config.models.require_signed);
        assert_eq!(config.models.trusted_keys_dir, Some(dir.join("model_keys")));
    }

    #[test]
    fn require_signed_models_with_given_keys_copies_only_public_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let (private_pem, public_pem, kid) = jwt::keypair();
        let public = tmp.path().join("station.pem");
        std::fs::write(&public, public_pem).unwrap();
        let private = tmp.path().join(format!("{kid}.key.pem"));
        std::fs::write(&private, private_pem).unwrap();
        let opts = |keys: Vec<PathBuf>| InitOptions {
            listen: "127.0.0.1:0".into(),
            names: vec!["localhost".into()],
            models_dir: tmp.path().join("models"),
            model_signing: ModelSigning::Trust(keys),
        };
        let err = init(&tmp.path().join("a"), &opts(vec![private])).unwrap_err();
        assert!(err.to_string().contains("a private key"), "{err}");
        let dir = tmp.path().join("b");
        let p = init(&dir, &opts(vec![public])).unwrap();
        let s = p.signed_models.unwrap();
        assert_eq!(
            (s.key_ids, s.signing_key),
            (vec!["station".to_owned()], None)
        );
        assert!(dir.join("model_keys/station.pem").is_file());
        assert!(!dir.join("model-signing-key").exists());
        assert!(init(&tmp.path().join("c"), &opts(vec![])).is_err());
        let mut new_key = opts(vec![]);
        new_key.model_signing = ModelSigning::NewKey;
        let json = serde_json::to_value(init(&tmp.path().join("d"), &new_key).unwrap()).unwrap();
        assert!(json["signed_models"]["signing_key"].is_string(), "{json}");
    }

    #[test]
    fn rotate_replaces_one_key() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("keys.toml");
        write_keys(&path, &KeysFile::default()).unwrap();
        let a = rotate_key(&path, "demo", vec!["predict".into()]).unwrap();
        let b = rotate_key(&path, "demo", vec!["predict".into()]).unwrap();
        assert_ne!(a, b);
        let ring = crate::auth::api_key::KeyRing::load(&path).unwrap();
        assert_eq!(ring.len(), 1);
        assert!(ring.verify(&b, std::time::SystemTime::now()).is_ok());
        assert!(ring.verify(&a, std::time::SystemTime::now()).is_err());
    }
}
