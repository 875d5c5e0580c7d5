//! Atomic file writes: readers see the old file or the new one, never half of either, and
//! a crash leaves no partial file in place (temporary file, fsync, rename, fsync of the
//! folder).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes `bytes` to `path` atomically, the file created with `mode`.
pub fn write(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    // A bare file name's parent is "", which cannot be opened to fsync: it means ".".
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_whole_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.toml");
        write(&path, b"one", 0o600).unwrap();
        write(&path, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(write(&dir.path().join("no/such/dir/f"), b"x", 0o600).is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_bare_file_name_is_written_in_the_current_folder() {
        // The temporary file and the fsync both go to ".", not to "" (which cannot be opened).
        let name = format!("inferd-atomic-test.{}", std::process::id());
        let here = std::env::current_dir().unwrap().join(&name);
        write(Path::new(&name), b"bare", 0o644).unwrap();
        assert_eq!(std::fs::read(&here).unwrap(), b"bare");
        std::fs::remove_file(&here).unwrap();
    }
}
