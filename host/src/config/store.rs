//! The config file as the state: read with its version (the SHA-256 of its
//! text, the API's `ETag`), and written back atomically — a temporary file
//! beside it, synced, renamed over it, and the folder synced — so a crash at
//! any moment leaves either the old file or the new one, whole.

use std::io::Write as _;
use std::path::PathBuf;

use sha2::Digest as _;

/// Why the file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file or its folder cannot be written: changes are refused.
    #[error("the config file {path} is read-only: {reason}; change it where it comes from, or make it writable by this process")]
    ReadOnly {
        /// The file.
        path: String,
        /// Why it cannot be written.
        reason: String,
    },
    /// Reading or writing failed otherwise.
    #[error("config file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("the config file does not parse: {0}")]
    Parse(String),
}

/// The version of a config text: the SHA-256 of its bytes, in hex.
pub fn version_of(text: &str) -> String {
    format!("{:x}", sha2::Sha256::digest(text.as_bytes()))
}

/// One config file on disk.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    path: PathBuf,
}

impl ConfigFile {
    /// The file at `path`.
    pub fn new(path: PathBuf) -> Self {
        ConfigFile { path }
    }

    fn io(&self, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Its text and version.
    pub fn read(&self) -> Result<(String, String), StoreError> {
        let text = std::fs::read_to_string(&self.path).map_err(|e| self.io(e))?;
        let version = version_of(&text);
        Ok((text, version))
    }

    /// Replaces its text with `text` atomically. A file without write
    /// permission, or a folder where the temporary file cannot be made, is
    /// read-only.
    pub fn write(&self, text: &str) -> Result<(), StoreError> {
        let read_only = |reason: String| StoreError::ReadOnly {
            path: self.path.display().to_string(),
            reason,
        };
        let metadata = std::fs::metadata(&self.path).map_err(|e| self.io(e))?;
        if metadata.permissions().readonly() {
            return Err(read_only("it has no write permission".into()));
        }
        let folder = match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "switchyard.toml".into());
        let temporary = folder.join(format!(".{name}.{}.tmp", std::process::id()));
        let mut file = std::fs::File::create(&temporary)
            .map_err(|e| read_only(format!("cannot create {}: {e}", temporary.display())))?;
        let written = file
            .write_all(text.as_bytes())
            .and_then(|()| file.set_permissions(metadata.permissions()))
            .and_then(|()| file.sync_all())
            .and_then(|()| std::fs::rename(&temporary, &self.path));
        if let Err(error) = written {
            let _ = std::fs::remove_file(&temporary);
            return Err(self.io(error));
        }
        if let Ok(dir) = std::fs::File::open(&folder) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_the_file_whole_and_changes_its_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchyard.toml");
        std::fs::write(&path, "# mine\n").unwrap();
        let file = ConfigFile::new(path.clone());
        let (text, before) = file.read().unwrap();
        assert_eq!(text, "# mine\n");
        file.write("# mine\n[proxy]\n").unwrap();
        let (text, after) = file.read().unwrap();
        assert_eq!(text, "# mine\n[proxy]\n");
        assert_ne!(before, after);
        assert_eq!(after, version_of(&text));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["switchyard.toml"], "no temporary file is left");
    }

    #[test]
    fn a_file_without_write_permission_is_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchyard.toml");
        std::fs::write(&path, "").unwrap();
        let mut permissions = std::fs::metadata(&path).unwrap().permissions();
        permissions.set_readonly(true);
        std::fs::set_permissions(&path, permissions).unwrap();
        let error = ConfigFile::new(path).write("x").unwrap_err();
        assert!(matches!(error, StoreError::ReadOnly { .. }), "{error}");
        assert!(error.to_string().contains("is read-only"), "{error}");
    }
}
