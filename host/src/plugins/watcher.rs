//! Watches the plugin folder and (re)loads files when they change, debounced
//! per file, compiling on a blocking thread so the workers never wait for it.
//!
//! Written on `notify` directly rather than a debouncer crate: the host must
//! ignore the read-access events its own loads cause (inotify reports opens
//! and reads), or every load would trigger the next.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecursiveMode, Watcher as _};
use tokio::time::Instant;

use super::{candidate_name, plugin_name, PluginRuntime};

/// Whether an event can mean the file's content or presence changed.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// The folder watch; dropping it stops watching.
pub type Watcher = notify::RecommendedWatcher;

/// Watches `runtime`'s folder until the returned watcher is dropped. A file
/// is loaded once it has been quiet for `debounce`. Must be called within a
/// tokio runtime.
pub fn watch(runtime: PluginRuntime, debounce: Duration) -> anyhow::Result<Watcher> {
    let dir = runtime.dir().to_path_buf();
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let mut watcher =
        notify::recommended_watcher(move |result: notify::Result<Event>| match result {
            Ok(event) if is_change(&event.kind) => {
                for path in event.paths {
                    if plugin_name(&path).is_some() || candidate_name(&path).is_some() {
                        let _ = sender.send(path);
                    }
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!("plugin folder watch error: {error}"),
        })
        .context("cannot start watching the plugin folder")?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch plugin folder {}", dir.display()))?;

    tokio::spawn(async move {
        let mut pending: HashMap<PathBuf, Instant> = HashMap::new();
        loop {
            let next_due = pending.values().min().copied();
            tokio::select! {
                received = receiver.recv() => match received {
                    Some(path) => {
                        pending.insert(path, Instant::now() + debounce);
                    }
                    None => break,
                },
                () = tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {
                    let now = Instant::now();
                    let due: Vec<PathBuf> = pending
                        .iter()
                        .filter(|(_, at)| **at <= now)
                        .map(|(path, _)| path.clone())
                        .collect();
                    for path in due {
                        pending.remove(&path);
                        reload(runtime.clone(), path).await;
                    }
                }
            }
        }
    });
    Ok(watcher)
}

async fn reload(runtime: PluginRuntime, path: PathBuf) {
    let outcome = tokio::task::spawn_blocking(move || {
        // Outcomes are logged and recorded in the slot.
        let candidate = candidate_name(&path).is_some();
        match (path.exists(), candidate) {
            (true, false) => drop(runtime.load(&path)),
            (true, true) => drop(runtime.load_candidate(&path)),
            (false, false) => runtime.file_removed(&path),
            (false, true) => runtime.candidate_removed(&path),
        }
    })
    .await;
    if let Err(error) = outcome {
        tracing::error!("plugin reload task failed: {error}");
    }
}
