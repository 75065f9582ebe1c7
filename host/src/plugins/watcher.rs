//! Watches the plugin folder and (re)loads files when they change, debounced,
//! compiling on a blocking thread so the workers never wait for it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use notify_debouncer_mini::{new_debouncer, DebounceEventResult};

use super::{plugin_name, PluginRuntime};

/// Watches `runtime`'s folder until the returned guard is dropped.
pub fn watch(runtime: PluginRuntime, debounce: Duration) -> anyhow::Result<impl Drop> {
    let dir = runtime.dir().to_path_buf();
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let mut debouncer = new_debouncer(debounce, move |result: DebounceEventResult| match result {
        Ok(events) => {
            for event in events {
                if plugin_name(&event.path).is_some() {
                    let _ = sender.send(event.path);
                }
            }
        }
        Err(error) => tracing::warn!("plugin folder watch error: {error}"),
    })
    .context("cannot start watching the plugin folder")?;
    debouncer
        .watcher()
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch plugin folder {}", dir.display()))?;

    tokio::spawn(async move {
        while let Some(path) = receiver.recv().await {
            let runtime = runtime.clone();
            let outcome = tokio::task::spawn_blocking(move || {
                if path.exists() {
                    // The outcome is logged and recorded in the slot.
                    let _ = runtime.load(&path);
                } else {
                    runtime.file_removed(&path);
                }
            })
            .await;
            if let Err(error) = outcome {
                tracing::error!("plugin reload task failed: {error}");
            }
        }
    });
    Ok(debouncer)
}
