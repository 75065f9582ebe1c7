//! The config file as the state: read with its version (the SHA-256 of its
//! text, the API's `ETag`), and written back atomically — a temporary file
//! beside it, synced, renamed over it, and the folder synced — so a crash at
//! any moment leaves either the old file or the new one, whole. Its text can
//! be cut into the tables of its pools ([`Sections`]), so one pool can be
//! edited without parsing or rendering the rest.

use std::collections::HashMap;
use std::io::Write as _;
use std::ops::Range;
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
    /// Another instance of the fleet wrote the shared config first.
    #[error("another instance of the fleet changed the config since revision {revision}")]
    FleetMoved {
        /// The revision the write was based on.
        revision: i64,
    },
    /// etcd, where the fleet's config lives, cannot be reached.
    #[error("the fleet's config cannot be written: {0}")]
    FleetUnavailable(String),
}

impl Clone for StoreError {
    fn clone(&self) -> Self {
        match self {
            StoreError::ReadOnly { path, reason } => StoreError::ReadOnly {
                path: path.clone(),
                reason: reason.clone(),
            },
            StoreError::Io { path, source } => StoreError::Io {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            StoreError::Parse(message) => StoreError::Parse(message.clone()),
            StoreError::FleetMoved { revision } => StoreError::FleetMoved {
                revision: *revision,
            },
            StoreError::FleetUnavailable(message) => StoreError::FleetUnavailable(message.clone()),
        }
    }
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
        let text = self.text()?;
        let version = version_of(&text);
        Ok((text, version))
    }

    /// Its text.
    pub fn text(&self) -> Result<String, StoreError> {
        std::fs::read_to_string(&self.path).map_err(|e| self.io(e))
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

/// A config text cut where its pools are: each `[[pools]]` table, with the
/// tables under it (`[[pools.endpoints]]`, `[pools.health]`, ...), is a
/// section of its own, from its header to the next header of anything
/// else. A section is a TOML document by itself (`[[pools]]` and the keys
/// of that one pool), so a change to one pool is made, checked and
/// rendered on its section alone and spliced back, and the text around it
/// is never parsed again.
#[derive(Debug, Clone)]
pub struct Sections {
    /// The text before the first pool.
    head: String,
    /// Every pool, in file order.
    pools: Vec<Section>,
    /// Pool names to their place in `pools`.
    by_name: HashMap<String, usize>,
    /// The length of the whole text.
    len: usize,
}

#[derive(Debug, Clone)]
struct Section {
    name: String,
    /// From the pool's `[[pools]]` header to the next header that is not
    /// under it.
    text: String,
    /// What follows, up to the next pool's header: other tables, comments.
    after: String,
}

impl Sections {
    /// `text` cut into pools, when its pools are written as `[[pools]]`
    /// tables, each with a name, and every table under a pool follows it
    /// before any other header; `None` otherwise (pools written as an
    /// inline array, say), or when `text` does not parse.
    pub fn cut(text: &str) -> Option<Sections> {
        let document = toml_edit::Document::parse(text).ok()?;
        let pools = document.get("pools")?.as_array_of_tables()?;
        let mut names = Vec::with_capacity(pools.len());
        for pool in pools.iter() {
            names.push(pool.get("name")?.as_str()?.to_string());
        }
        // Every header in the file, with the pool it is under, if any.
        let mut headers: Vec<(usize, Option<usize>)> = Vec::new();
        for (key, item) in document.iter() {
            let root_pools = key == "pools";
            headers_of(item, None, root_pools, &mut headers)?;
        }
        headers.sort_unstable_by_key(|&(start, _)| start);
        // Each pool's headers must be one run, opened by its own header.
        let mut starts = vec![None; names.len()];
        let mut ends = vec![None; names.len()];
        let mut previous: Option<usize> = None;
        for &(start, owner) in &headers {
            if owner != previous {
                if let Some(pool) = previous {
                    ends[pool] = Some(start);
                }
                if let Some(pool) = owner {
                    if starts[pool].is_some() {
                        return None;
                    }
                    starts[pool] = Some(start);
                }
            }
            previous = owner;
        }
        if let Some(pool) = previous {
            ends[pool] = Some(text.len());
        }
        let mut ranges: Vec<Range<usize>> = Vec::with_capacity(names.len());
        for (start, end) in starts.into_iter().zip(ends) {
            let range = start?..end?;
            if ranges.last().is_some_and(|last| last.end > range.start) {
                return None;
            }
            ranges.push(range);
        }
        let mut by_name = HashMap::with_capacity(names.len());
        let mut sections = Vec::with_capacity(names.len());
        for (index, (name, range)) in names.into_iter().zip(&ranges).enumerate() {
            if by_name.insert(name.clone(), index).is_some() {
                return None;
            }
            let next = ranges.get(index + 1).map_or(text.len(), |r| r.start);
            sections.push(Section {
                name,
                text: text.get(range.clone())?.to_string(),
                after: text.get(range.end..next)?.to_string(),
            });
        }
        let head = match ranges.first() {
            Some(first) => text.get(..first.start)?.to_string(),
            None => text.to_string(),
        };
        Some(Sections {
            head,
            pools: sections,
            by_name,
            len: text.len(),
        })
    }

    /// The place of pool `name` in file (and config) order.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// How many pools there are.
    pub fn len(&self) -> usize {
        self.pools.len()
    }

    /// Whether there are no pools.
    pub fn is_empty(&self) -> bool {
        self.pools.is_empty()
    }

    /// The section of pool `index`.
    pub fn section(&self, index: usize) -> &str {
        &self.pools[index].text
    }

    /// The name of pool `index`.
    pub fn name(&self, index: usize) -> &str {
        &self.pools[index].name
    }

    /// Puts `text` in place of pool `index`'s section; it must be the same
    /// pool (a `[[pools]]` table with the same name).
    pub fn replace(&mut self, index: usize, text: String) {
        let section = &mut self.pools[index];
        self.len = self.len - section.text.len() + text.len();
        section.text = text;
    }

    /// The whole text.
    pub fn text(&self) -> String {
        self.text_with(usize::MAX, "")
    }

    /// The whole text with `text` in place of pool `index`'s section.
    pub fn text_with(&self, index: usize, text: &str) -> String {
        let mut whole = String::with_capacity(self.len + text.len());
        whole.push_str(&self.head);
        for (at, section) in self.pools.iter().enumerate() {
            whole.push_str(if at == index { text } else { &section.text });
            whole.push_str(&section.after);
        }
        whole
    }
}

/// Adds the header of every table in `item` (and under it) to `headers`,
/// with the pool it is under: `pools` says `item` is the root's `pools`,
/// whose tables are the pools. `None` if a table has no place in the text.
fn headers_of(
    item: &toml_edit::Item,
    owner: Option<usize>,
    pools: bool,
    headers: &mut Vec<(usize, Option<usize>)>,
) -> Option<()> {
    let mut table = |table: &toml_edit::Table, owner: Option<usize>| -> Option<()> {
        if !table.is_implicit() && !table.is_dotted() {
            headers.push((table.span()?.start, owner));
        }
        for (_, child) in table.iter() {
            headers_of(child, owner, false, headers)?;
        }
        Some(())
    };
    match item {
        toml_edit::Item::Table(t) => table(t, owner),
        toml_edit::Item::ArrayOfTables(tables) => {
            for (index, t) in tables.iter().enumerate() {
                table(t, if pools { Some(index) } else { owner })?;
            }
            Some(())
        }
        _ => Some(()),
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

    const LAYOUTS: &str = r#"# Head comment.
[proxy]
workers = 2

# The web pool.
[[pools]]
name = "web" # front
endpoints = [
  { address = "10.0.0.1:80" },   # first
]
health = { interval_ms = 1000 }

[[routes]]
host = "a.example"
pool = "web"

[[pools]]
name = "api"
panic_threshold = 0.2

[[pools.endpoints]]
address = "10.0.1.1:80"
weight = 2

[pools.outlier]
enabled = false
# Trailing words about the next one.

[[pools]]
name = "last"
endpoints = [{ address = "10.0.2.1:80" }]
"#;

    #[test]
    fn a_text_is_cut_into_its_pools_and_put_back_whole() {
        let sections = Sections::cut(LAYOUTS).unwrap();
        assert_eq!(sections.text(), LAYOUTS);
        assert_eq!(sections.len(), 3);
        assert_eq!(sections.find("api"), Some(1));
        assert_eq!(sections.name(2), "last");
        let web = sections.section(0);
        assert!(web.starts_with("[[pools]]\nname = \"web\""), "{web}");
        assert!(
            web.ends_with("health = { interval_ms = 1000 }\n\n"),
            "{web}"
        );
        let api = sections.section(1);
        assert!(api.starts_with("[[pools]]\nname = \"api\""), "{api}");
        assert!(api.contains("[pools.outlier]\nenabled = false\n"), "{api}");
        assert!(
            api.ends_with("# Trailing words about the next one.\n\n"),
            "{api}"
        );
    }

    #[test]
    fn a_pool_edited_on_its_section_gives_the_text_the_whole_document_gives() {
        use crate::config::edit::{add_endpoint, remove_endpoint, update_endpoint, EndpointFields};
        let fields = EndpointFields {
            weight: Some(3),
            state: Some(crate::config::EndpointState::Draining),
            ..EndpointFields::default()
        };
        type Edit = fn(
            &mut toml_edit::DocumentMut,
            &str,
            &EndpointFields,
        ) -> Result<(), crate::config::edit::EditRefused>;
        let edits: [(&str, Edit); 6] = [
            ("web", |d, p, f| add_endpoint(d, p, "10.0.0.9:80", f)),
            ("api", |d, p, f| add_endpoint(d, p, "10.0.1.9:80", f)),
            ("last", |d, p, f| add_endpoint(d, p, "10.0.2.9:80", f)),
            ("api", |d, p, f| update_endpoint(d, p, "10.0.1.1:80", f)),
            ("web", |d, p, _| remove_endpoint(d, p, "10.0.0.1:80")),
            ("api", |d, p, _| remove_endpoint(d, p, "10.0.1.1:80")),
        ];
        let mut whole: toml_edit::DocumentMut = LAYOUTS.parse().unwrap();
        let mut sections = Sections::cut(LAYOUTS).unwrap();
        for (pool, edit) in edits {
            // As API writes did it: the file parsed, edited, written.
            whole = whole.to_string().parse().unwrap();
            edit(&mut whole, pool, &fields).unwrap();
            let index = sections.find(pool).unwrap();
            let mut alone: toml_edit::DocumentMut = sections.section(index).parse().unwrap();
            edit(&mut alone, pool, &fields).unwrap();
            sections.replace(index, alone.to_string());
            assert_eq!(sections.text(), whole.to_string(), "after {pool}");
        }
        let config = crate::config::Config::parse(&sections.text(), "edited").unwrap();
        assert_eq!(config.pools[0].endpoints[0].address, "10.0.0.9:80");
        assert_eq!(config.pools[1].endpoints.len(), 1);
        assert!(!config.pools[1].outlier.enabled);
    }

    #[test]
    fn texts_that_cannot_be_cut_are_said_so() {
        // Pools as an inline array.
        assert!(Sections::cut("pools = [{ name = \"a\" }]\n").is_none());
        // A table of the first pool after another table.
        let split =
            "[[pools]]\nname = \"a\"\n[proxy]\nworkers = 1\n[pools.outlier]\nenabled = false\n";
        assert!(crate::config::Config::parse(split, "split").is_ok());
        assert!(Sections::cut(split).is_none());
        // Twice the same name, or none.
        assert!(Sections::cut("[[pools]]\nname = \"a\"\n[[pools]]\nname = \"a\"\n").is_none());
        assert!(Sections::cut("[[pools]]\nweight = 1\n").is_none());
        assert!(Sections::cut("[[pools]\n").is_none());
        // No pools: all head.
        let none = Sections::cut("[proxy]\nworkers = 1\n");
        assert!(none.is_none());
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
