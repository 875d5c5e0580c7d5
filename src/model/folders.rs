//! The repository on disk: model folders under `[models] dir`, each holding numbered version
//! folders (`NAME/1/`, `NAME/2/`, ...) or, in the single-folder layout, one version itself
//! (`NAME/model.toml`: its manifest's `version`, else 1). Nothing here loads a model.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Longest model name the repository takes (a folder name, and a URL path segment).
const MAX_NAME: usize = 128;

/// Whether `name` can be a model folder: ASCII letters, digits, `_`, `-` and `.`, not
/// starting with `.` (staging folders and `..` are never models), at most 128 bytes.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// A numbered version folder's number: digits without a leading zero, 1 or above.
fn version_number(name: &str) -> Option<u64> {
    let n: u64 = name.parse().ok()?;
    (n >= 1 && n.to_string() == name).then_some(n)
}

/// The model folders under `dir`, by name, sorted: folders with a valid name that hold a
/// `model.toml` or a numbered version folder.
pub fn model_names(dir: &Path) -> Result<Vec<String>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| valid_name(n) && is_model(&dir.join(n)))
        .collect();
    names.sort();
    Ok(names)
}

fn is_model(folder: &Path) -> bool {
    folder.join("model.toml").is_file()
        || numbered(folder).is_ok_and(|versions| !versions.is_empty())
}

/// The numbered version folders directly under `folder`.
fn numbered(folder: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(folder)?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let n = version_number(e.file_name().to_str()?)?;
            Some((n, e.path()))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// A model's versions on disk, ascending, each with its folder.
pub fn versions(folder: &Path) -> Result<Vec<(u64, PathBuf)>, String> {
    let shown = folder.display();
    if folder.join("model.toml").is_file() {
        return Ok(vec![(single_version(folder)?, folder.to_path_buf())]);
    }
    match numbered(folder) {
        Ok(found) if !found.is_empty() => Ok(found),
        Ok(_) => Err(format!(
            "{shown}: no model.toml and no version folders (1/, 2/, ...)"
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("{shown}: no such model folder"))
        }
        Err(e) => Err(format!("{shown}: {e}")),
    }
}

/// The single-folder layout's version: its manifest's `version` (a number in a string),
/// else 1. The manifest itself is checked when the model loads.
fn single_version(folder: &Path) -> Result<u64, String> {
    let path = folder.join("model.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))?;
    match table.get("version") {
        None => Ok(1),
        Some(toml::Value::String(v)) => version_number(v).ok_or_else(|| {
            format!(
                "{}: version {v:?} must be a whole number, 1 or above",
                path.display()
            )
        }),
        Some(other) => Err(format!(
            "{}: version must be a string like \"1\", not {other}",
            path.display()
        )),
    }
}

/// What a version folder's files look like now: relative path, size and modification time
/// of each (sorted). A version whose stamp is unchanged is not loaded again on reload.
pub type Stamp = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// Deepest folder nesting a stamp follows inside a version folder.
const STAMP_DEPTH: usize = 4;

pub fn stamp(folder: &Path) -> Result<Stamp, String> {
    let mut files = Vec::new();
    walk(folder, Path::new(""), STAMP_DEPTH, &mut files)
        .map_err(|e| format!("{}: {e}", folder.display()))?;
    files.sort();
    Ok(files)
}

fn walk(base: &Path, rel: &Path, depth: usize, out: &mut Stamp) -> std::io::Result<()> {
    for entry in std::fs::read_dir(base.join(rel))? {
        let entry = entry?;
        let path = rel.join(entry.file_name());
        let meta = std::fs::symlink_metadata(base.join(&path))?;
        if meta.is_dir() && depth > 0 {
            walk(base, &path, depth - 1, out)?;
        } else {
            out.push((path, meta.len(), meta.modified().ok()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn names_and_versions_in_both_layouts() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        touch(
            &d.join("flat/model.toml"),
            "name = \"flat\"\nversion = \"3\"\n",
        );
        touch(&d.join("plain/model.toml"), "name = \"plain\"\n");
        touch(&d.join("multi/1/model.toml"), "");
        touch(&d.join("multi/10/model.toml"), "");
        touch(&d.join("multi/02/model.toml"), "");
        touch(&d.join("multi/latest/model.toml"), "");
        touch(&d.join(".staging/1/model.toml"), "");
        touch(&d.join("empty/readme"), "");
        assert_eq!(model_names(d).unwrap(), vec!["flat", "multi", "plain"]);
        let numbers = |name: &str| -> Vec<u64> {
            versions(&d.join(name))
                .unwrap()
                .into_iter()
                .map(|(v, _)| v)
                .collect()
        };
        assert_eq!(numbers("flat"), vec![3]);
        assert_eq!(numbers("plain"), vec![1]);
        assert_eq!(numbers("multi"), vec![1, 10]);
        assert!(
            versions(&d.join("empty"))
                .unwrap_err()
                .contains("no model.toml")
        );
        assert!(versions(&d.join("absent")).unwrap_err().contains("no such"));
        touch(&d.join("bad/model.toml"), "version = \"v2\"\n");
        assert!(
            versions(&d.join("bad"))
                .unwrap_err()
                .contains("whole number")
        );
    }

    #[test]
    fn names_that_could_leave_the_folder_are_not_models() {
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "a\\b",
            "x y",
            &"n".repeat(129),
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        for good in ["digits", "sentiment-v2", "a.b_c", "0"] {
            assert!(valid_name(good), "{good}");
        }
    }

    #[test]
    fn a_stamp_changes_with_any_file() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("model.onnx"), "abc");
        let before = stamp(dir.path()).unwrap();
        assert_eq!(before, stamp(dir.path()).unwrap());
        touch(&dir.path().join("extra/data.bin"), "x");
        assert_ne!(before, stamp(dir.path()).unwrap());
    }
}
