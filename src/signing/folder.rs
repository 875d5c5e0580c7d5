//! Signed model version folders: `MANIFEST.sha256` lists every regular file under the folder
//! with its SHA-256 in `sha256sum` format (so `sha256sum -c` checks it by hand), and
//! `MANIFEST.sha256.sig` is the manifest's detached Ed25519 signature.

use super::{Signer, SigningError, TrustedKeys, io_error, read_signature};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The manifest's file name, at the top of the signed folder.
pub const MANIFEST: &str = "MANIFEST.sha256";
/// The manifest's detached signature, beside it.
pub const MANIFEST_SIG: &str = "MANIFEST.sha256.sig";
/// More files than a model version holds: a folder beyond it is refused, not walked on.
const MAX_FILES: usize = 10_000;
/// Deeper nesting than a model version needs; bounds the walk's recursion.
const MAX_DEPTH: usize = 16;
/// A manifest of `MAX_FILES` lines of reasonable paths fits well within this.
const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// A regular file found by the walk, with the identity it had when found.
struct Found {
    /// Relative to the signed folder, `/`-separated.
    rel: String,
    path: PathBuf,
    dev: u64,
    ino: u64,
}

fn refused(file: &Path, reason: &str) -> SigningError {
    SigningError::Refused {
        file: file.display().to_string(),
        reason: reason.to_owned(),
    }
}

/// Writes `DIR/MANIFEST.sha256` (every regular file under `dir`, sorted by relative path,
/// hashed) and `DIR/MANIFEST.sha256.sig`, both atomically. Refuses a folder holding a
/// symlink, a special file or a name with a control character or backslash. Returns how
/// many files the manifest lists.
pub fn sign_folder(dir: &Path, signer: &Signer) -> Result<usize, SigningError> {
    let files = walk(dir)?;
    let mut manifest = String::new();
    for file in &files {
        manifest.push_str(&format!("{}  {}\n", hash(file)?, file.rel));
    }
    let path = dir.join(MANIFEST);
    crate::atomic_file::write(&path, manifest.as_bytes(), 0o644).map_err(|e| io_error(&path, e))?;
    let sig = dir.join(MANIFEST_SIG);
    let signature = signer.sign(manifest.as_bytes());
    crate::atomic_file::write(&sig, &signature, 0o644).map_err(|e| io_error(&sig, e))?;
    Ok(files.len())
}

/// Checks a signed folder before anything parses its files: the manifest's signature
/// verifies under a key in `trusted`, every listed file exists and hashes as listed, and no
/// other file is there (an added file, say external data a model would pull in, is refused
/// as surely as a changed one). Returns the id of the key that signed. The error names the
/// file and the reason.
pub fn verify_folder(dir: &Path, trusted: &TrustedKeys) -> Result<String, SigningError> {
    let sig_path = dir.join(MANIFEST_SIG);
    let signature = read_signature(&sig_path)?;
    let manifest_path = dir.join(MANIFEST);
    let manifest = read_manifest(&manifest_path)?;
    let what = manifest_path.display().to_string();
    let kid = trusted.verify(&what, &manifest, &signature)?.to_owned();
    // The bytes just verified are the bytes parsed: nothing is read from disk twice.
    let mut listed = parse_manifest(&manifest, &manifest_path)?;
    let files = walk(dir)?;
    for file in &files {
        if !listed.contains_key(&file.rel) {
            return Err(refused(
                &file.path,
                "not in the signed manifest (files may not be added to a signed folder)",
            ));
        }
    }
    for file in &files {
        let expected = listed.remove(&file.rel).unwrap_or_default();
        if hash(file)? != expected {
            return Err(refused(
                &file.path,
                "SHA-256 differs from the signed manifest",
            ));
        }
    }
    if let Some(missing) = listed.keys().next() {
        return Err(refused(
            &dir.join(missing),
            "listed in the signed manifest but missing",
        ));
    }
    Ok(kid)
}

/// Model folders under `models` that carry no signature: each `NAME/N/` of a model with
/// numbered versions, else `NAME/` itself. For `inferd init` to say what will be refused;
/// an unreadable `models` lists nothing.
pub fn unsigned_folders(models: &Path) -> Vec<PathBuf> {
    let subdirs = |dir: &Path| -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        dirs
    };
    let numbered = |p: &PathBuf| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let mut unsigned = Vec::new();
    for model in subdirs(models) {
        let versions: Vec<PathBuf> = subdirs(&model).into_iter().filter(numbered).collect();
        let folders = if versions.is_empty() {
            vec![model]
        } else {
            versions
        };
        unsigned.extend(
            folders
                .into_iter()
                .filter(|f| !f.join(MANIFEST_SIG).exists()),
        );
    }
    unsigned
}

fn read_manifest(path: &Path) -> Result<Vec<u8>, SigningError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SigningError::Unsigned(path.display().to_string()));
        }
        Err(e) => return Err(io_error(path, e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(path, e))?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(refused(
            path,
            "larger than 4 MiB; not a model folder's manifest",
        ));
    }
    Ok(bytes)
}

/// `<64 hex>  <path>` lines (sha256sum's text mode; its binary-mode `*` is accepted too)
/// into path -> lowercase hex. Duplicates and malformed lines are errors.
fn parse_manifest(bytes: &[u8], path: &Path) -> Result<BTreeMap<String, String>, SigningError> {
    let bad = |line: usize, reason: &str| SigningError::Manifest {
        path: path.display().to_string(),
        line,
        reason: reason.to_owned(),
    };
    let text = std::str::from_utf8(bytes).map_err(|_| bad(0, "not UTF-8"))?;
    let mut listed = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let (digest, rest) = line
            .split_at_checked(64)
            .filter(|(d, _)| d.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| bad(n, "does not start with a 64-digit hex SHA-256"))?;
        let name = rest
            .strip_prefix("  ")
            .or_else(|| rest.strip_prefix(" *"))
            .ok_or_else(|| bad(n, "expected two spaces between hash and path"))?;
        if name.is_empty() || name.contains('\\') || name.contains(char::is_control) {
            return Err(bad(
                n,
                "empty path, or a path with a backslash or control character",
            ));
        }
        if listed
            .insert(name.to_owned(), digest.to_ascii_lowercase())
            .is_some()
        {
            return Err(bad(n, "lists a path twice"));
        }
    }
    Ok(listed)
}

/// Every regular file under `dir` but the signature files themselves, sorted by relative
/// path (byte order, as `LC_ALL=C sort`). Refuses symlinks, special files and hostile names.
fn walk(dir: &Path) -> Result<Vec<Found>, SigningError> {
    let meta = std::fs::symlink_metadata(dir).map_err(|e| io_error(dir, e))?;
    if !meta.is_dir() {
        return Err(refused(dir, "not a folder"));
    }
    let mut found = Vec::new();
    walk_into(dir, "", 0, &mut found)?;
    found.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(found)
}

fn walk_into(
    dir: &Path,
    prefix: &str,
    depth: usize,
    out: &mut Vec<Found>,
) -> Result<(), SigningError> {
    if depth > MAX_DEPTH {
        return Err(refused(dir, "nested too deep for a model folder"));
    }
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let path = entry.map_err(|e| io_error(dir, e))?.path();
        let name = checked_name(&path)?;
        if depth == 0 && (name == MANIFEST || name == MANIFEST_SIG) {
            continue;
        }
        let rel = format!("{prefix}{name}");
        let meta = std::fs::symlink_metadata(&path).map_err(|e| io_error(&path, e))?;
        let kind = meta.file_type();
        if kind.is_dir() {
            walk_into(&path, &format!("{rel}/"), depth + 1, out)?;
        } else if !kind.is_file() {
            return Err(refused(&path, not_regular(kind.is_symlink())));
        } else if out.len() == MAX_FILES {
            return Err(refused(dir, "more than 10000 files; not a model folder"));
        } else {
            let (dev, ino) = (meta.dev(), meta.ino());
            out.push(Found {
                rel,
                path,
                dev,
                ino,
            });
        }
    }
    Ok(())
}

/// The entry's name, if `sha256sum` would write it unescaped: UTF-8, no backslash, no
/// newline or other control character.
fn checked_name(path: &Path) -> Result<&str, SigningError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| refused(path, "name is not UTF-8"))?;
    if name.contains('\\') || name.contains(char::is_control) {
        return Err(refused(
            path,
            "name holds a backslash, newline or other control character",
        ));
    }
    Ok(name)
}

fn not_regular(symlink: bool) -> &'static str {
    if symlink {
        "a symbolic link; a signed folder holds regular files only"
    } else {
        "a special file (device, FIFO or socket); a signed folder holds regular files only"
    }
}

/// Lowercase hex SHA-256 of a found file, streamed in 64 KiB pieces. The file opened must be
/// the one the walk found (same device and inode), not something swapped in since.
fn hash(file: &Found) -> Result<String, SigningError> {
    let mut f = std::fs::File::open(&file.path).map_err(|e| io_error(&file.path, e))?;
    let meta = f.metadata().map_err(|e| io_error(&file.path, e))?;
    if !meta.is_file() || meta.dev() != file.dev || meta.ino() != file.ino {
        return Err(refused(&file.path, "replaced while being checked"));
    }
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(|e| io_error(&file.path, e))?;
        if n == 0 {
            break;
        }
        context.update(&buf[..n]);
    }
    Ok(context
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    fn folder() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("digits/1");
        std::fs::create_dir_all(dir.join("tokenizer")).unwrap();
        std::fs::write(dir.join("model.onnx"), b"onnx bytes").unwrap();
        std::fs::write(dir.join("inferd.toml"), b"task = \"tabular\"\n").unwrap();
        std::fs::write(dir.join("tokenizer/vocab.txt"), b"a\nb\n").unwrap();
        (tmp, dir)
    }

    fn trusted(seed: u8) -> TrustedKeys {
        let mut keys = TrustedKeys::empty("model_keys");
        keys.add(
            "station",
            Signer::from_seed(&[seed; 32])
                .public_key()
                .try_into()
                .unwrap(),
        );
        keys
    }

    fn sign(dir: &Path) {
        assert_eq!(sign_folder(dir, &Signer::from_seed(&[7; 32])).unwrap(), 3);
    }

    fn refusal(dir: &Path, keys: &TrustedKeys) -> String {
        verify_folder(dir, keys).unwrap_err().to_string()
    }

    #[test]
    fn manifest_is_sha256sum_format_sorted_by_path() {
        let (_tmp, dir) = folder();
        sign(&dir);
        let manifest = std::fs::read_to_string(dir.join(MANIFEST)).unwrap();
        let paths: Vec<&str> = manifest.lines().map(|l| &l[66..]).collect();
        assert_eq!(paths, ["inferd.toml", "model.onnx", "tokenizer/vocab.txt"]);
        // SHA-256("onnx bytes"), as `sha256sum` prints it.
        let onnx = ring::digest::digest(&ring::digest::SHA256, b"onnx bytes");
        let hex: String = onnx.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert!(
            manifest.contains(&format!("{hex}  model.onnx\n")),
            "{manifest}"
        );
        assert_eq!(std::fs::read(dir.join(MANIFEST_SIG)).unwrap().len(), 64);
        assert_eq!(verify_folder(&dir, &trusted(7)).unwrap(), "station");
    }

    #[test]
    fn changed_file_is_refused_naming_it() {
        let (_tmp, dir) = folder();
        sign(&dir);
        std::fs::write(dir.join("model.onnx"), b"onnx bytez").unwrap();
        let err = refusal(&dir, &trusted(7));
        assert!(
            err.ends_with("1/model.onnx: SHA-256 differs from the signed manifest"),
            "{err}"
        );
    }

    #[test]
    fn added_and_removed_files_are_refused() {
        let (_tmp, dir) = folder();
        sign(&dir);
        std::fs::write(dir.join("model.onnx.data"), b"weights").unwrap();
        let err = refusal(&dir, &trusted(7));
        assert!(
            err.contains("model.onnx.data: not in the signed manifest"),
            "{err}"
        );
        std::fs::remove_file(dir.join("model.onnx.data")).unwrap();
        std::fs::remove_file(dir.join("tokenizer/vocab.txt")).unwrap();
        let err = refusal(&dir, &trusted(7));
        assert!(
            err.contains("tokenizer/vocab.txt: listed in the signed manifest but missing"),
            "{err}"
        );
    }

    #[test]
    fn unsigned_other_key_and_edited_manifest_are_refused() {
        let (_tmp, dir) = folder();
        let err = refusal(&dir, &trusted(7));
        assert!(
            err.starts_with("unsigned: no ") && err.ends_with(MANIFEST_SIG),
            "{err}"
        );
        sign(&dir);
        let err = refusal(&dir, &trusted(8));
        assert!(
            err.contains("MANIFEST.sha256: signed by a key not in model_keys"),
            "{err}"
        );
        let err = refusal(&dir, &TrustedKeys::empty("model_keys"));
        assert!(err.contains("no trusted key in model_keys"), "{err}");
        // Re-hash a changed file into the manifest without re-signing: the signature fails.
        std::fs::write(dir.join("model.onnx"), b"evil").unwrap();
        let text = std::fs::read_to_string(dir.join(MANIFEST)).unwrap();
        let evil = ring::digest::digest(&ring::digest::SHA256, b"evil");
        let hex: String = evil.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        let line = text.lines().find(|l| l.ends_with("model.onnx")).unwrap();
        let text = text.replace(line, &format!("{hex}  model.onnx"));
        std::fs::write(dir.join(MANIFEST), text).unwrap();
        let err = refusal(&dir, &trusted(7));
        assert!(
            err.contains("signed by a key not in model_keys, or changed since"),
            "{err}"
        );
    }

    #[test]
    fn symlinks_special_files_and_hostile_names_are_refused() {
        let (_tmp, dir) = folder();
        let key = Signer::from_seed(&[7; 32]);
        std::os::unix::fs::symlink("/etc/passwd", dir.join("labels.txt")).unwrap();
        let err = sign_folder(&dir, &key).unwrap_err().to_string();
        assert!(err.contains("labels.txt: a symbolic link"), "{err}");
        std::fs::remove_file(dir.join("labels.txt")).unwrap();
        std::fs::write(dir.join("a\nb"), b"x").unwrap();
        let err = sign_folder(&dir, &key).unwrap_err().to_string();
        assert!(err.contains("name holds a backslash, newline"), "{err}");
        std::fs::remove_file(dir.join("a\nb")).unwrap();
        std::fs::write(dir.join("a\\b"), b"x").unwrap();
        assert!(sign_folder(&dir, &key).is_err());
        std::fs::remove_file(dir.join("a\\b")).unwrap();
        let latin1 = dir.join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
        std::fs::write(&latin1, b"x").unwrap();
        let err = sign_folder(&dir, &key).unwrap_err().to_string();
        assert!(err.contains("name is not UTF-8"), "{err}");
        std::fs::remove_file(&latin1).unwrap();
        let _socket = std::os::unix::net::UnixListener::bind(dir.join("sock")).unwrap();
        let err = sign_folder(&dir, &key).unwrap_err().to_string();
        assert!(err.contains("sock: a special file"), "{err}");
        std::fs::remove_file(dir.join("sock")).unwrap();
        sign(&dir);
        std::os::unix::fs::symlink("model.onnx", dir.join("other.onnx")).unwrap();
        let err = refusal(&dir, &trusted(7));
        assert!(err.contains("other.onnx: a symbolic link"), "{err}");
    }

    #[test]
    fn malformed_manifest_lines_are_refused() {
        let path = Path::new("m");
        let ok = format!("{}  a\n{} *b/c\n", "0".repeat(64), "A".repeat(64));
        let listed = parse_manifest(ok.as_bytes(), path).unwrap();
        assert_eq!(listed["b/c"], "a".repeat(64));
        for (text, reason) in [
            ("abc  x", "64-digit hex"),
            (&format!("{}  x", "g".repeat(64)), "64-digit hex"),
            (&format!("{} x", "0".repeat(64)), "two spaces"),
            (
                &format!("{}  a\n{}  a", "0".repeat(64), "1".repeat(64)),
                "twice",
            ),
            (&format!("{}  a\\b", "0".repeat(64)), "backslash"),
        ] {
            let err = parse_manifest(text.as_bytes(), path)
                .unwrap_err()
                .to_string();
            assert!(err.contains(reason), "{text:?}: {err}");
        }
    }
}
