//! The audit trail: every API write, accepted or refused — when, which
//! token, from where, the method and path, what was asked, the config
//! versions before and after, the status and error code — kept in memory
//! for `GET /v1/audit` and, with `control.audit_log`, appended to a file as
//! JSON lines, synced before the answer leaves (one sync for every line
//! appended while the one before ran), and rotated by size.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::{to_bytes, Body};
use axum::extract::{ConnectInfo, Request, State as Extract};
use axum::http::header::ETAG;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::{Caller, State};
use crate::engine::unix_ms;

/// Entries kept in memory.
pub const AUDIT_HISTORY: usize = 1_000;
/// Request bodies larger than this are recorded by their size only.
const BODY_LIMIT: usize = 64 * 1024;
/// The largest request body a write may send (a route table of 10,000
/// routes is about 600 KiB as JSON).
const REQUEST_LIMIT: usize = 16 * 1024 * 1024;

/// What a write to the config did, put on its answer by the handler for
/// its entry: the versions around its batch and its own lines.
#[derive(Debug, Clone)]
pub(super) struct ConfigWrite {
    /// The file's version before the batch the write was in.
    pub version_before: String,
    /// The file's version after it.
    pub version_after: String,
    /// The lines of the file this write removed and added.
    pub changes: crate::reload::LineChanges,
}

/// One API write.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditEntry {
    /// When, in ms since the Unix epoch.
    at_unix_ms: u64,
    /// The token's name; none when the API is open or no known token came.
    token: Option<String>,
    /// The client's address.
    from: Option<String>,
    /// The method.
    method: String,
    /// The path.
    path: String,
    /// The request body, as JSON when it is JSON.
    #[schema(value_type = Object)]
    request: serde_json::Value,
    /// The config version before, when the write was to the config.
    version_before: Option<String>,
    /// The config version after, when the write changed it.
    version_after: Option<String>,
    /// The lines of the config file the write removed and added.
    config_changes: Option<crate::reload::LineChanges>,
    /// The status answered.
    status: u16,
    /// `accepted` (2xx) or `refused`.
    outcome: &'static str,
    /// The error code of a refusal.
    error: Option<String>,
}

/// The trail: in memory, and in a file when one is configured.
#[derive(Debug)]
pub struct AuditLog {
    recent: Mutex<VecDeque<AuditEntry>>,
    file: Option<AuditFile>,
}

#[derive(Debug)]
struct AuditFile {
    path: PathBuf,
    max_bytes: u64,
    appending: Mutex<Appending>,
    /// How many lines are known to be on disk; held while syncing, so who
    /// waits for it finds whether the sync before took its line too.
    synced: Mutex<u64>,
}

/// The file lines are appended to.
#[derive(Debug)]
struct Appending {
    file: Arc<File>,
    size: u64,
    /// Lines appended since the log was opened, to this file or those
    /// rotated before it.
    lines: u64,
}

impl AuditLog {
    /// A trail appended to `path` (created if missing), rotated past
    /// `max_bytes`; with no path, in memory only.
    pub fn open(path: Option<PathBuf>, max_bytes: u64) -> std::io::Result<AuditLog> {
        let file = match path {
            Some(path) => {
                if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(folder)?;
                }
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)?;
                let size = file.metadata()?.len();
                Some(AuditFile {
                    path,
                    max_bytes,
                    appending: Mutex::new(Appending {
                        file: Arc::new(file),
                        size,
                        lines: 0,
                    }),
                    synced: Mutex::new(0),
                })
            }
            None => None,
        };
        Ok(AuditLog {
            recent: Mutex::new(VecDeque::new()),
            file,
        })
    }

    /// Records `entry`: synced to the file (if any) before it returns.
    fn record(&self, entry: AuditEntry) {
        if let Some(file) = &self.file {
            if let Err(error) = file.append(&entry) {
                tracing::error!(
                    "cannot write the audit log {}: {error}",
                    file.path.display()
                );
            }
        }
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == AUDIT_HISTORY {
            recent.pop_front();
        }
        recent.push_back(entry);
    }

    /// The kept entries, oldest first.
    pub fn recent(&self) -> Vec<AuditEntry> {
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

impl AuditFile {
    /// Appends `entry` as a line and returns once it is on disk. Writers
    /// that come while a sync runs are synced together by the next.
    fn append(&self, entry: &AuditEntry) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mine = {
            let mut appending = self
                .appending
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if appending.size > 0 && appending.size + line.len() as u64 > self.max_bytes {
                // What the old file holds is on disk before it is set aside.
                appending.file.sync_data()?;
                let rotated = self.path.with_extension(match self.path.extension() {
                    Some(extension) => format!("{}.1", extension.to_string_lossy()),
                    None => "1".into(),
                });
                std::fs::rename(&self.path, &rotated)?;
                appending.file = Arc::new(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&self.path)?,
                );
                appending.size = 0;
            }
            (&*appending.file).write_all(&line)?;
            appending.size += line.len() as u64;
            appending.lines += 1;
            appending.lines
        };
        let mut synced = self.synced.lock().unwrap_or_else(PoisonError::into_inner);
        if *synced >= mine {
            return Ok(());
        }
        let (file, upto) = {
            let appending = self
                .appending
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            (Arc::clone(&appending.file), appending.lines)
        };
        file.sync_data()?;
        *synced = upto;
        Ok(())
    }
}

/// Records every request that is not a read, after it is answered and
/// before the answer leaves. The write and its record run in a task of
/// their own: a client that goes away does not stop a change it asked for
/// half way, nor keep it out of the trail.
pub(super) async fn record(Extract(state): State, request: Request, next: Next) -> Response {
    if request.method() == Method::GET || request.method() == Method::HEAD {
        return next.run(request).await;
    }
    match tokio::spawn(record_write(state, request, next)).await {
        Ok(response) => response,
        Err(error) => {
            tracing::error!("an API write failed: {error}");
            axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn record_write(state: Arc<super::ControlState>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let from = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.to_string());
    let (parts, body) = request.into_parts();
    let version_before = state
        .reloader
        .version()
        .map(|version| super::endpoints::version_tag(&state, &version));
    // A plugin component is the one large body a write sends.
    let limit = if path.ends_with("/candidate") {
        super::rollouts::MAX_CANDIDATE_BYTES
    } else {
        REQUEST_LIMIT
    };
    let response = match to_bytes(body, limit).await {
        Ok(bytes) => {
            let asked = match bytes.len() {
                0..=BODY_LIMIT => as_json(&bytes),
                size => serde_json::json!({ "not_kept_bytes": size }),
            };
            let response = next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
            (asked, response)
        }
        Err(error) => (
            serde_json::Value::Null,
            super::ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body could not be read whole (at most {limit} bytes): {error}"),
            )
            .into_response(),
        ),
    };
    let (asked, response) = response;
    let status = response.status();
    let token = response
        .extensions()
        .get::<Caller>()
        .map(|c| c.name.clone());
    let write = response.extensions().get::<ConfigWrite>().cloned();
    let (version_before, version_after, config_changes) = match write {
        Some(write) => (
            Some(write.version_before),
            Some(write.version_after),
            Some(write.changes),
        ),
        None => (
            version_before,
            response
                .headers()
                .get(ETAG)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim_matches('"').to_string()),
            None,
        ),
    };
    let (parts, body) = response.into_parts();
    // The API's own answer, read whole to find its error code.
    let bytes = to_bytes(body, usize::MAX).await.unwrap_or_default();
    let error = (!status.is_success())
        .then(|| {
            as_json(&bytes)["error"]["code"]
                .as_str()
                .map(str::to_string)
        })
        .flatten();
    let entry = AuditEntry {
        at_unix_ms: unix_ms(),
        token,
        from,
        method,
        path,
        request: asked,
        version_before,
        version_after,
        config_changes,
        status: status.as_u16(),
        outcome: if status.is_success() {
            "accepted"
        } else {
            "refused"
        },
        error,
    };
    // The sync blocks: off the runtime's threads.
    let recorder = Arc::clone(&state);
    if let Err(error) = tokio::task::spawn_blocking(move || recorder.audit.record(entry)).await {
        tracing::error!("an audit entry was not recorded: {error}");
    }
    Response::from_parts(parts, Body::from(bytes))
}

fn as_json(bytes: &[u8]) -> serde_json::Value {
    if bytes.is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// The last 1,000 API writes, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct AuditView {
    entries: Vec<AuditEntry>,
}

/// The last 1,000 API writes, accepted or refused, oldest first.
#[utoipa::path(get, path = "/v1/audit", tag = "config",
    responses((status = 200, description = "The kept entries", body = AuditView)))]
pub(super) async fn list(Extract(state): State) -> Json<AuditView> {
    Json(AuditView {
        entries: state.audit.recent(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> AuditEntry {
        AuditEntry {
            at_unix_ms: 1,
            token: None,
            from: None,
            method: "POST".into(),
            path: path.into(),
            request: serde_json::Value::Null,
            version_before: None,
            version_after: None,
            config_changes: None,
            status: 200,
            outcome: "accepted",
            error: None,
        }
    }

    #[test]
    fn the_file_is_rotated_past_its_size_and_memory_keeps_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(Some(path.clone()), 300).unwrap();
        for n in 0..3 {
            log.record(entry(&format!("/v1/reload/{n}")));
        }
        let current = std::fs::read_to_string(&path).unwrap();
        let rotated = std::fs::read_to_string(dir.path().join("audit.jsonl.1")).unwrap();
        // Each entry outgrows 300 bytes with the one before: one rotation
        // per write, and one rotated file kept.
        assert!(
            current.contains("/v1/reload/2") && current.lines().count() == 1,
            "{current}"
        );
        assert!(
            rotated.contains("/v1/reload/1") && rotated.lines().count() == 1,
            "{rotated}"
        );
        assert_eq!(log.recent().len(), 3);
    }
}
