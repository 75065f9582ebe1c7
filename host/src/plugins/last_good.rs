//! The last file of each plugin that configured successfully for every pool
//! using it, kept beside the compiled cache: a restart whose plugin file is
//! rejected serves that version instead of failing to start.

use std::io::Write as _;
use std::path::PathBuf;

/// Copies of the last good files, one per plugin name.
#[derive(Debug, Clone)]
pub struct LastGood {
    dir: PathBuf,
}

impl LastGood {
    /// A store in `dir` (created on first write).
    pub fn new(dir: PathBuf) -> Self {
        LastGood { dir }
    }

    /// Where the copy of plugin `name` lives.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.wasm"))
    }

    /// Keeps `bytes` as the last good file of `name`: written beside, synced,
    /// then renamed over, so a crash leaves the old copy or the new one.
    pub fn keep(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let temporary = self.dir.join(format!(".{name}.wasm.tmp"));
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, self.path(name))?;
        if let Ok(dir) = std::fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// The last good file of `name`, if one was kept.
    pub fn read(&self, name: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path(name)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_file_is_read_back_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = LastGood::new(dir.path().join("last-good"));
        assert_eq!(store.read("p2c"), None);
        store.keep("p2c", b"first").unwrap();
        store.keep("p2c", b"second").unwrap();
        assert_eq!(store.read("p2c").as_deref(), Some(&b"second"[..]));
        let names: Vec<_> = std::fs::read_dir(dir.path().join("last-good"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["p2c.wasm"], "no temporary file is left");
    }
}
