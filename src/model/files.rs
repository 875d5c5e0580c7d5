//! A model's files stay inside its folder: the checks the loader runs before tract sees a
//! graph, whatever the model's source (`model add`, a copy by hand, an unpacked archive).
//! A size cap on `model.onnx`, and every path the model names (external tensor data, the
//! tokenizer) relative, without `..`, symlinks or anything resolving outside the folder.

use super::onnx;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// Largest `model.onnx` inferd reads (1 GiB). Read whole before parsing, and protobuf
/// decoding holds about as much again: a device loading a bigger file would run out of
/// memory instead of refusing it. ONNX's own single-file format ends at 2 GiB.
pub const MAX_ONNX_BYTES: u64 = 1 << 30;

/// Reads a `model.onnx`, refusing one above [`MAX_ONNX_BYTES`] before reading it (and one
/// that grows past it while being read).
pub fn read_onnx(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    let too_big = || {
        format!(
            "the file is larger than inferd's limit of {} MiB for model.onnx",
            MAX_ONNX_BYTES >> 20
        )
    };
    if size > MAX_ONNX_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(MAX_ONNX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_ONNX_BYTES {
        return Err(too_big());
    }
    Ok(bytes)
}

/// Checks that every external-data file the ONNX bytes name stays inside `dir` (the
/// model's version folder): see [`inside`]. Also fails on bytes that are not ONNX.
pub fn check_files(dir: &Path, onnx_bytes: &[u8]) -> Result<(), String> {
    let summary = onnx::read(onnx_bytes)?;
    for external in &summary.external {
        let location = external.location.as_deref().ok_or_else(|| {
            format!(
                "tensor {:?} keeps its data in an external file but names no location",
                external.tensor
            )
        })?;
        inside(dir, location).map_err(|reason| {
            format!(
                "tensor {:?}: external data {location:?} refused: {reason}",
                external.tensor
            )
        })?;
    }
    Ok(())
}

/// The file `relative` names inside `dir`, when it is one: a relative path of plain
/// components (no `..`, no root, not empty), no component a symlink, an existing regular
/// file whose canonical path is under `dir`'s. For any path a model's files name (external
/// tensor data, `[text] tokenizer`).
pub fn inside(dir: &Path, relative: &str) -> Result<PathBuf, String> {
    let path = Path::new(relative);
    if relative.is_empty() || relative.contains('\0') {
        return Err("empty path".into());
    }
    if path.is_absolute() {
        return Err("an absolute path; it must be relative to the model's folder".into());
    }
    if path
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err("a path with `..`; it must stay inside the model's folder".into());
    }
    let mut at = dir.to_path_buf();
    for component in path.components() {
        at.push(component);
        let meta = std::fs::symlink_metadata(&at).map_err(|e| format!("{}: {e}", at.display()))?;
        if meta.file_type().is_symlink() {
            return Err(format!("{} is a symlink", at.display()));
        }
    }
    if !std::fs::metadata(&at).map_err(|e| e.to_string())?.is_file() {
        return Err(format!("{} is not a regular file", at.display()));
    }
    let root = dir.canonicalize().map_err(|e| e.to_string())?;
    let resolved = at.canonicalize().map_err(|e| e.to_string())?;
    if !resolved.starts_with(&root) {
        return Err(format!(
            "{} resolves outside {}",
            resolved.display(),
            root.display()
        ));
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::onnx::write::*;

    fn model_with_external(location: &str) -> Vec<u8> {
        let mut g = Vec::new();
        bytes(&mut g, 5, &external_tensor("w", location));
        bytes(&mut g, 1, &node("id", "Identity", &["w"], &["y"]));
        bytes(&mut g, 12, &value("y", 1, &[1]));
        model(&g)
    }

    #[test]
    fn external_data_inside_the_folder_passes() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("data")).unwrap();
        std::fs::write(tmp.path().join("data/w.bin"), [0u8; 4]).unwrap();
        check_files(tmp.path(), &model_with_external("data/w.bin")).unwrap();
        check_files(tmp.path(), &model_with_external("./data/w.bin")).unwrap();
    }

    #[test]
    fn external_data_escaping_the_folder_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("m/1");
        std::fs::create_dir_all(&dir).unwrap();
        let outside = tmp.path().join("secret.bin");
        std::fs::write(&outside, b"secret").unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("link.bin")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), dir.join("up")).unwrap();
        for (location, says) in [
            ("../../secret.bin", "`..`"),
            (outside.to_str().unwrap(), "absolute"),
            ("link.bin", "symlink"),
            ("up/secret.bin", "symlink"),
            ("missing.bin", "No such file"),
            ("", "empty"),
        ] {
            let e = check_files(&dir, &model_with_external(location)).unwrap_err();
            assert!(e.contains(says), "{location:?}: {e}");
            assert!(e.contains("tensor \"w\""), "{e}");
        }
    }

    #[test]
    fn a_folder_is_not_a_file_and_garbage_is_not_onnx() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("d")).unwrap();
        assert!(
            inside(tmp.path(), "d")
                .unwrap_err()
                .contains("regular file")
        );
        assert!(check_files(tmp.path(), b"\xff\xff").is_err());
    }

    #[test]
    fn reads_within_the_cap() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("model.onnx");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(read_onnx(&path).unwrap(), b"abc");
        let big = std::fs::File::create(tmp.path().join("big.onnx")).unwrap();
        big.set_len(MAX_ONNX_BYTES + 1).unwrap(); // sparse: no disk used
        let e = read_onnx(&tmp.path().join("big.onnx")).unwrap_err();
        assert!(e.contains("1024 MiB"), "{e}");
    }
}
