//! The audit trail: every API write, accepted or refused — when, which
//! token, from where, the method and path, what was asked, the config
//! versions before and after, the status and error code — kept in memory
//! for `GET /v1/audit` and, with `control.audit_log`, appended to a file as
//! JSON lines, synced before the answer leaves, and rotated by size.

use std::collections::VecDeque;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;

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
    file: Option<Mutex<AuditFile>>,
}

#[derive(Debug)]
struct AuditFile {
    path: PathBuf,
    max_bytes: u64,
    file: std::fs::File,
    size: u64,
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
                Some(Mutex::new(AuditFile {
                    path,
                    max_bytes,
                    file,
                    size,
                }))
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
            let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
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
    fn append(&mut self, entry: &AuditEntry) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            let rotated = self.path.with_extension(match self.path.extension() {
                Some(extension) => format!("{}.1", extension.to_string_lossy()),
                None => "1".into(),
            });
            std::fs::rename(&self.path, &rotated)?;
            self.file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.size = 0;
        }
        self.file.write_all(&line)?;
        self.file.sync_data()?;
        self.size += line.len() as u64;
        Ok(())
    }
}

/// Records every request that is not a read, after it is answered and
/// before the answer leaves.
pub(super) async fn record(Extract(state): State, request: Request, next: Next) -> Response {
    if request.method() == Method::GET || request.method() == Method::HEAD {
        return next.run(request).await;
    }
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let from = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.to_string());
    let (parts, body) = request.into_parts();
    let version_before = state.reloader.version().await;
    let (asked, response) = match to_bytes(body, REQUEST_LIMIT).await {
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
                format!(
                    "the body could not be read whole (at most {REQUEST_LIMIT} bytes): {error}"
                ),
            )
            .into_response(),
        ),
    };
    let status = response.status();
    let token = response
        .extensions()
        .get::<Caller>()
        .map(|c| c.name.clone());
    let version_after = response
        .headers()
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_matches('"').to_string());
    let (parts, body) = response.into_parts();
    // The API's own answer, read whole to find its error code.
    let bytes = to_bytes(body, usize::MAX).await.unwrap_or_default();
    let config_changes = version_after
        .as_deref()
        .filter(|_| status.is_success())
        .and_then(|version| state.reloader.edit_changes(version));
    let error = (!status.is_success())
        .then(|| {
            as_json(&bytes)["error"]["code"]
                .as_str()
                .map(str::to_string)
        })
        .flatten();
    state.audit.record(AuditEntry {
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
    });
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
