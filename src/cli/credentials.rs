//! `inferd apikey new` and `inferd client new`: a fresh secret, printed once, and its entry
//! (a hash, never the secret). With `--config`, the entry is appended to the keys or
//! clients file that config names, atomically and keeping the file's comments, owner and
//! mode; the running server picks it up within a second (`auth::watch`).

use super::{CliError, load_config};
use crate::auth::api_key::{self, KeyRing, KeysFile};
use crate::auth::client::{self, ClientsFile};
use crate::provision::ProvisionError;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Mode of a keys or clients file this command creates.
const NEW_FILE_MODE: u32 = 0o600;

fn entry_err(path: &Path, reason: impl std::fmt::Display) -> CliError {
    CliError::Entry {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn rng_failed<E>(_: E) -> CliError {
    ProvisionError::Crypto("system RNG failed".into()).into()
}

fn check_id(id: &str) -> Result<(), CliError> {
    if id.trim().is_empty() || id.chars().any(char::is_control) {
        return Err(CliError::Usage(format!(
            "--id {id:?}: give a non-empty name without control characters"
        )));
    }
    Ok(())
}

/// `inferd apikey new`: prints the key once; with a config, adds its entry to the keys file.
pub fn apikey_new(id: &str, scopes: Vec<String>, config: Option<&Path>) -> Result<(), CliError> {
    check_id(id)?;
    let (key, entry) = api_key::generate(id, scopes).map_err(rng_failed)?;
    let entry_toml = toml::to_string(&KeysFile { key: vec![entry] }).unwrap_or_default();
    let Some(config) = config else {
        println!("key (shown once): {key}\n\n# add to the keys file:\n{entry_toml}");
        return Ok(());
    };
    let path = load_config(config)?.auth.api_keys_file;
    append(&path, &entry_toml, |text| {
        let file: KeysFile = parse(text, &path)?;
        if file.key.iter().filter(|k| k.id == id).count() > 1 {
            return Err(entry_err(&path, format!("key id {id:?} is already in use")));
        }
        KeyRing::parse(text, &path)
            .map(drop)
            .map_err(|e| entry_err(&path, e))
    })?;
    println!(
        "key (shown once, stored only as a hash): {key}\nadded key {id:?} to {} (the server \
         picks it up within a second)",
        path.display()
    );
    Ok(())
}

/// `inferd client new`: prints the secret once; with a config, adds the client's entry to
/// the clients file (`[auth] clients_file`).
pub fn client_new(id: &str, scopes: Vec<String>, config: Option<&Path>) -> Result<(), CliError> {
    check_id(id)?;
    let (secret, entry) = client::generate(id, scopes).map_err(rng_failed)?;
    let entry_toml = toml::to_string(&ClientsFile {
        client: vec![entry],
    })
    .unwrap_or_default();
    let Some(config) = config else {
        println!(
            "client secret (shown once): {secret}\n\n# add to the clients file:\n{entry_toml}"
        );
        return Ok(());
    };
    let loaded = load_config(config)?;
    let Some(issuing) = loaded.auth.issuing else {
        return Err(entry_err(
            config,
            "no [auth] clients_file: this server issues no tokens (POST /token is off); \
             set [auth] signing_key and clients_file to enable it",
        ));
    };
    let path = issuing.clients_file;
    append(&path, &entry_toml, |text| {
        let file: ClientsFile = parse(text, &path)?;
        if file.client.iter().filter(|c| c.id == id).count() > 1 {
            return Err(entry_err(
                &path,
                format!("client id {id:?} is already in use"),
            ));
        }
        Ok(())
    })?;
    println!(
        "client id: {id}\nclient secret (shown once, stored only as a hash): {secret}\nadded \
         client {id:?} to {} (the server picks it up within a second)",
        path.display()
    );
    Ok(())
}

fn parse<T: serde::de::DeserializeOwned>(text: &str, path: &Path) -> Result<T, CliError> {
    toml::from_str(text).map_err(|e| entry_err(path, crate::config::toml_reason(text, &e)))
}

/// Appends `entry` to the TOML file at `path` (created 0600 when missing), keeping every
/// byte already there. `check` sees the whole new text and may refuse it (a repeated id);
/// the file is then left as it was. Written atomically with the old file's mode and, when
/// this process may set it, its owner.
fn append(
    path: &Path,
    entry: &str,
    check: impl Fn(&str) -> Result<(), CliError>,
) -> Result<(), CliError> {
    let (old, meta) = match std::fs::read_to_string(path) {
        Ok(text) => (
            text,
            Some(std::fs::metadata(path).map_err(|e| entry_err(path, e))?),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), None),
        Err(e) => return Err(entry_err(path, e)),
    };
    // The file must be valid before we add to it: never build on a broken one.
    if !old.trim().is_empty() {
        check(&old)?;
    }
    let separator = match old.as_str() {
        "" => "",
        s if s.ends_with("\n\n") => "",
        s if s.ends_with('\n') => "\n",
        _ => "\n\n",
    };
    let text = format!("{old}{separator}{entry}");
    check(&text)?;
    let mode = meta
        .as_ref()
        .map_or(NEW_FILE_MODE, |m| m.permissions().mode() & 0o7777);
    crate::atomic_file::write(path, text.as_bytes(), mode).map_err(|e| entry_err(path, e))?;
    if let Some(m) = meta
        && let Err(e) = std::os::unix::fs::chown(path, Some(m.uid()), Some(m.gid()))
    {
        eprintln!(
            "warning: {} is now owned by this user, not uid {} gid {} as before ({e}); the \
             server must still be able to read it",
            path.display(),
            m.uid(),
            m.gid()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_keeps_comments_and_mode_and_refuses_what_check_refuses() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("keys.toml");
        std::fs::write(
            &path,
            "# my comment\n[[key]] # inline\nid = \"a\"\nsha256 = \"ab\"\nscopes = []",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        append(&path, "[[key]]\nid = \"b\"\n", |_| Ok(())).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# my comment\n[[key]] # inline\n"),
            "{text}"
        );
        assert!(
            text.ends_with("scopes = []\n\n[[key]]\nid = \"b\"\n"),
            "{text}"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let refuse = |_: &str| Err(entry_err(Path::new("x"), "no"));
        assert!(append(&path, "[[key]]\n", refuse).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        let fresh = tmp.path().join("new.toml");
        append(&fresh, "[[key]]\n", |_| Ok(())).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, NEW_FILE_MODE);
    }
}
