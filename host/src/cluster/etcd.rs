//! A client of etcd's v3 API through its JSON gateway (`/v3/kv/range`,
//! `/v3/kv/txn`, `/v3/watch`, `/v3/lease/*`, `/v3/auth/authenticate`),
//! over the hyper the proxy already uses.
//!
//! The gRPC clients of etcd for Rust generate their code from etcd's
//! `.proto` files when they are built, which needs `protoc` on every
//! machine that builds Switchyard; the gateway is the same API, served on
//! the same port by every etcd since 3.4, and needs nothing new. Each call
//! goes to the member that answered last, and to the next one when it does
//! not answer, so a member going down (the leader included) costs a call
//! one retry.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Why a call to etcd failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EtcdError {
    /// No member answered: the cluster is unreachable from here.
    #[error("etcd is unreachable: {0}")]
    Unreachable(String),
    /// A member answered with an error.
    #[error("etcd refused the call: {0}")]
    Refused(String),
    /// A watch started from a revision etcd has compacted away.
    #[error("etcd has compacted revision {0}: read the key again")]
    Compacted(i64),
}

/// How to reach an etcd cluster.
#[derive(Debug, Clone)]
pub struct EtcdSettings {
    /// `http://host:port` or `https://host:port`, one per member.
    pub endpoints: Vec<String>,
    /// How long one call to one member may take.
    pub request_timeout: Duration,
    /// `user` and `password`, when etcd's auth is on.
    pub credentials: Option<(String, String)>,
    /// The TLS client settings for `https` members.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// One key's value and revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// Its value.
    pub value: Vec<u8>,
    /// The revision of its last change.
    pub mod_revision: i64,
    /// The lease it is attached to, 0 for none.
    pub lease: i64,
}

/// One change a watch saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// The key was written.
    Put(KeyValue),
    /// The key was deleted (or its lease expired) at this revision.
    Delete {
        /// The key.
        key: String,
        /// The revision of the deletion.
        mod_revision: i64,
    },
}

/// A client of one etcd cluster; cheap to clone.
#[derive(Debug, Clone)]
pub struct Etcd {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: EtcdSettings,
    members: Vec<Member>,
    /// The member that answered last: tried first.
    preferred: AtomicUsize,
    /// The auth token, once authenticated.
    token: Mutex<Option<String>>,
}

#[derive(Debug, Clone)]
struct Member {
    tls: bool,
    /// `host:port`.
    authority: String,
    host: String,
}

/// Reads an int64 of the gateway's JSON, which sends them as strings.
fn int(value: &Value) -> i64 {
    match value {
        Value::String(text) => text.parse().unwrap_or(0),
        Value::Number(number) => number.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn encode(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

fn key_value(value: &Value) -> KeyValue {
    let bytes = |field: &str| {
        value[field]
            .as_str()
            .and_then(|text| BASE64.decode(text).ok())
            .unwrap_or_default()
    };
    KeyValue {
        key: String::from_utf8_lossy(&bytes("key")).into_owned(),
        value: bytes("value"),
        mod_revision: int(&value["mod_revision"]),
        lease: int(&value["lease"]),
    }
}

/// The end of a key range holding every key that starts with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl Etcd {
    /// A client of the members `settings` names; it connects on first use.
    pub fn new(settings: EtcdSettings) -> Result<Etcd, String> {
        let mut members = Vec::new();
        for endpoint in &settings.endpoints {
            let (tls, rest) = if let Some(rest) = endpoint.strip_prefix("https://") {
                (true, rest)
            } else if let Some(rest) = endpoint.strip_prefix("http://") {
                (false, rest)
            } else {
                return Err(format!(
                    "`{endpoint}` is not an http:// or https:// address"
                ));
            };
            let authority = rest.trim_end_matches('/').to_string();
            if authority.is_empty() || authority.contains('/') {
                return Err(format!("`{endpoint}` is not `scheme://host:port`"));
            }
            if tls && settings.tls.is_none() {
                return Err(format!(
                    "`{endpoint}` is https, but no TLS settings are given"
                ));
            }
            let host = crate::proxy::host_without_port(&authority).to_string();
            members.push(Member {
                tls,
                authority,
                host,
            });
        }
        if members.is_empty() {
            return Err("no etcd member is named".into());
        }
        Ok(Etcd {
            inner: Arc::new(Inner {
                settings,
                members,
                preferred: AtomicUsize::new(0),
                token: Mutex::new(None),
            }),
        })
    }

    /// Sends `body` to `path` on one member: the response's status and body
    /// (whole), or the connection's failure.
    async fn exchange(
        &self,
        member: &Member,
        path: &str,
        body: &Value,
    ) -> Result<hyper::Response<Incoming>, String> {
        let stream = tokio::net::TcpStream::connect(&member.authority)
            .await
            .map_err(|e| format!("{}: {e}", member.authority))?;
        let _ = stream.set_nodelay(true);
        let request = self.request(member, path, body)?;
        if member.tls {
            let config = self.inner.settings.tls.clone().expect("checked in new");
            let name = rustls_pki_types::ServerName::try_from(member.host.clone())
                .map_err(|e| format!("{}: {e}", member.authority))?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, stream)
                .await
                .map_err(|e| format!("{}: TLS: {e}", member.authority))?;
            send(TokioIo::new(stream), request, &member.authority).await
        } else {
            send(TokioIo::new(stream), request, &member.authority).await
        }
    }

    fn request(
        &self,
        member: &Member,
        path: &str,
        body: &Value,
    ) -> Result<hyper::Request<Full<Bytes>>, String> {
        let mut request = hyper::Request::post(path)
            .header(hyper::header::HOST, &member.authority)
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(token) = self.inner.token.lock().unwrap().clone() {
            request = request.header(hyper::header::AUTHORIZATION, token);
        }
        request
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| e.to_string())
    }

    /// One call to one member, within the request timeout: the status and
    /// the whole body.
    async fn attempt(
        &self,
        member: &Member,
        path: &str,
        body: &Value,
    ) -> Result<(hyper::StatusCode, Bytes), String> {
        let exchange = async {
            let response = self.exchange(member, path, body).await?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("{}: {e}", member.authority))?
                .to_bytes();
            Ok((status, bytes))
        };
        tokio::time::timeout(self.inner.settings.request_timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("{}: no answer in time", member.authority)))
    }

    /// Calls `path` with `body` on the preferred member, then on each other
    /// one until one answers; the answer's JSON.
    async fn call(&self, path: &str, body: Value) -> Result<Value, EtcdError> {
        let mut authenticated = false;
        loop {
            match self.call_once(path, &body).await {
                Err(EtcdError::Refused(message))
                    if !authenticated
                        && self.inner.settings.credentials.is_some()
                        && (message.contains("token")
                            || message.contains("user name is empty")) =>
                {
                    self.authenticate().await?;
                    authenticated = true;
                }
                other => return other,
            }
        }
    }

    async fn call_once(&self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        if self.inner.settings.credentials.is_some() && self.inner.token.lock().unwrap().is_none() {
            self.authenticate().await?;
        }
        let count = self.inner.members.len();
        let first = self.inner.preferred.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for step in 0..count {
            let index = (first + step) % count;
            let member = &self.inner.members[index];
            let (status, bytes) = match self.attempt(member, path, body).await {
                Ok(answer) => answer,
                Err(error) => {
                    failures.push(error);
                    continue;
                }
            };
            let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if status.is_success() {
                self.inner.preferred.store(index, Ordering::Relaxed);
                return Ok(value);
            }
            let message = value["message"]
                .as_str()
                .or_else(|| value["error"].as_str())
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            // A member without a leader, or stopping, is passed over.
            if status.is_server_error() && is_unavailable(&message) {
                failures.push(format!("{}: {message}", member.authority));
                continue;
            }
            return Err(EtcdError::Refused(message));
        }
        Err(EtcdError::Unreachable(failures.join("; ")))
    }

    async fn authenticate(&self) -> Result<(), EtcdError> {
        let Some((name, password)) = self.inner.settings.credentials.clone() else {
            return Ok(());
        };
        *self.inner.token.lock().unwrap() = None;
        let answer = self
            .call_once_unauthenticated(
                "/v3/auth/authenticate",
                &json!({ "name": name, "password": password }),
            )
            .await?;
        let token = answer["token"]
            .as_str()
            .ok_or_else(|| EtcdError::Refused("authentication gave no token".into()))?;
        *self.inner.token.lock().unwrap() = Some(token.to_string());
        Ok(())
    }

    async fn call_once_unauthenticated(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<Value, EtcdError> {
        let mut failures = Vec::new();
        for member in &self.inner.members {
            match self.attempt(member, path, body).await {
                Ok((status, bytes)) => {
                    let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    if status.is_success() {
                        return Ok(value);
                    }
                    let message = value["message"].as_str().unwrap_or("refused").to_string();
                    return Err(EtcdError::Refused(format!("authentication: {message}")));
                }
                Err(error) => failures.push(error),
            }
        }
        Err(EtcdError::Unreachable(failures.join("; ")))
    }

    /// The value of `key`, if it is set.
    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>, EtcdError> {
        let answer = self
            .call("/v3/kv/range", json!({ "key": encode(key.as_bytes()) }))
            .await?;
        Ok(answer["kvs"]
            .as_array()
            .and_then(|kvs| kvs.first())
            .map(key_value))
    }

    /// Every key under `prefix`, with the cluster's revision at the read.
    pub async fn get_prefix(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64), EtcdError> {
        let answer = self
            .call(
                "/v3/kv/range",
                json!({
                    "key": encode(prefix.as_bytes()),
                    "range_end": encode(&prefix_end(prefix)),
                }),
            )
            .await?;
        let kvs = answer["kvs"]
            .as_array()
            .map(|kvs| kvs.iter().map(key_value).collect())
            .unwrap_or_default();
        Ok((kvs, int(&answer["header"]["revision"])))
    }

    /// Runs `request` (one of a transaction's operations) only if `key`'s
    /// last change is at `mod_revision` (0: only if it is not set): the
    /// cluster's revision after it, or `None` when the key had moved on.
    async fn if_at(
        &self,
        key: &str,
        mod_revision: i64,
        request: Value,
    ) -> Result<Option<i64>, EtcdError> {
        let key = encode(key.as_bytes());
        let compare = if mod_revision == 0 {
            json!({ "key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0" })
        } else {
            json!({ "key": key, "target": "MOD", "result": "EQUAL", "mod_revision": mod_revision.to_string() })
        };
        let answer = self
            .call(
                "/v3/kv/txn",
                json!({ "compare": [compare], "success": [request] }),
            )
            .await?;
        Ok((answer["succeeded"].as_bool() == Some(true))
            .then(|| int(&answer["header"]["revision"])))
    }

    /// Writes `key` only if its last change is at `mod_revision` (0: only
    /// if it is not set): the key's new revision, or `None` when it had
    /// moved on.
    pub async fn put_if(
        &self,
        key: &str,
        mod_revision: i64,
        value: &[u8],
    ) -> Result<Option<i64>, EtcdError> {
        let put =
            json!({ "request_put": { "key": encode(key.as_bytes()), "value": encode(value) } });
        self.if_at(key, mod_revision, put).await
    }

    /// Writes `key`, attached to `lease` (0: none).
    pub async fn put(&self, key: &str, value: &[u8], lease: i64) -> Result<i64, EtcdError> {
        let mut body = json!({ "key": encode(key.as_bytes()), "value": encode(value) });
        if lease != 0 {
            body["lease"] = json!(lease.to_string());
        }
        let answer = self.call("/v3/kv/put", body).await?;
        Ok(int(&answer["header"]["revision"]))
    }

    /// Deletes `key` only if its last change is at `mod_revision`: whether
    /// it did (a key changed since, or gone, is left as it is).
    pub async fn delete_if(&self, key: &str, mod_revision: i64) -> Result<bool, EtcdError> {
        let delete = json!({ "request_delete_range": { "key": encode(key.as_bytes()) } });
        Ok(self.if_at(key, mod_revision, delete).await?.is_some())
    }

    /// Deletes every key under `prefix`: how many there were.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<i64, EtcdError> {
        let answer = self
            .call(
                "/v3/kv/deleterange",
                json!({
                    "key": encode(prefix.as_bytes()),
                    "range_end": encode(&prefix_end(prefix)),
                }),
            )
            .await?;
        Ok(int(&answer["deleted"]))
    }

    /// A lease that expires after `ttl` unless kept alive: its id.
    pub async fn grant_lease(&self, ttl: Duration) -> Result<i64, EtcdError> {
        let seconds = ttl.as_secs().max(1);
        let answer = self
            .call("/v3/lease/grant", json!({ "TTL": seconds.to_string() }))
            .await?;
        match int(&answer["ID"]) {
            0 => Err(EtcdError::Refused(format!("no lease granted: {answer}"))),
            id => Ok(id),
        }
    }

    /// Renews `lease`: whether it was still alive.
    pub async fn keep_alive(&self, lease: i64) -> Result<bool, EtcdError> {
        let answer = self
            .call("/v3/lease/keepalive", json!({ "ID": lease.to_string() }))
            .await?;
        Ok(int(&answer["result"]["TTL"]) > 0)
    }

    /// Ends `lease`, deleting its keys.
    pub async fn revoke(&self, lease: i64) -> Result<(), EtcdError> {
        self.call("/v3/lease/revoke", json!({ "ID": lease.to_string() }))
            .await
            .map(|_| ())
    }

    /// Watches every key under `prefix` from `start_revision` on: the
    /// changes, batch by batch, until the stream breaks.
    pub async fn watch(&self, prefix: &str, start_revision: i64) -> Result<Watch, EtcdError> {
        if self.inner.settings.credentials.is_some() && self.inner.token.lock().unwrap().is_none() {
            self.authenticate().await?;
        }
        let body = json!({
            "create_request": {
                "key": encode(prefix.as_bytes()),
                "range_end": encode(&prefix_end(prefix)),
                "start_revision": start_revision.to_string(),
                "progress_notify": true,
            }
        });
        let count = self.inner.members.len();
        let first = self.inner.preferred.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for step in 0..count {
            let index = (first + step) % count;
            let member = &self.inner.members[index];
            let opened = tokio::time::timeout(
                self.inner.settings.request_timeout,
                self.exchange(member, "/v3/watch", &body),
            )
            .await;
            match opened {
                Ok(Ok(response)) if response.status().is_success() => {
                    let mut watch = Watch {
                        body: response.into_body(),
                        buffered: Vec::new(),
                        member: member.authority.clone(),
                    };
                    // The first message says whether the watch was made.
                    match tokio::time::timeout(self.inner.settings.request_timeout, watch.message())
                        .await
                    {
                        Ok(Ok(message)) => {
                            if let Some(compacted) = compacted(&message) {
                                return Err(EtcdError::Compacted(compacted));
                            }
                            if message["result"]["created"].as_bool() != Some(true) {
                                failures.push(format!("{}: {message}", member.authority));
                                continue;
                            }
                            self.inner.preferred.store(index, Ordering::Relaxed);
                            return Ok(watch);
                        }
                        Ok(Err(error)) => failures.push(error),
                        Err(_) => failures.push(format!("{}: no answer in time", member.authority)),
                    }
                }
                Ok(Ok(response)) => {
                    failures.push(format!("{}: {}", member.authority, response.status()))
                }
                Ok(Err(error)) => failures.push(error),
                Err(_) => failures.push(format!("{}: no answer in time", member.authority)),
            }
        }
        Err(EtcdError::Unreachable(failures.join("; ")))
    }
}

fn compacted(message: &Value) -> Option<i64> {
    let revision = int(&message["result"]["compact_revision"]);
    (revision > 0).then_some(revision)
}

fn is_unavailable(message: &str) -> bool {
    [
        "leader",
        "unavailable",
        "stopped",
        "timed out",
        "too many requests",
        "not capable",
    ]
    .iter()
    .any(|word| message.contains(word))
}

async fn send<T>(
    io: TokioIo<T>,
    request: hyper::Request<Full<Bytes>>,
    authority: &str,
) -> Result<hyper::Response<Incoming>, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("{authority}: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
        .send_request(request)
        .await
        .map_err(|e| format!("{authority}: {e}"))
}

/// An open watch: one member's stream of changes.
#[derive(Debug)]
pub struct Watch {
    body: Incoming,
    buffered: Vec<u8>,
    member: String,
}

impl Watch {
    /// The member watched.
    pub fn member(&self) -> &str {
        &self.member
    }

    /// The next message of the stream (one JSON object per line).
    async fn message(&mut self) -> Result<Value, String> {
        loop {
            if let Some(end) = self.buffered.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buffered.drain(..=end).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return serde_json::from_slice(&line)
                    .map_err(|e| format!("{}: a watch message is not JSON: {e}", self.member));
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffered.extend_from_slice(&data);
                    }
                }
                Some(Err(error)) => return Err(format!("{}: {error}", self.member)),
                None => return Err(format!("{}: the watch ended", self.member)),
            }
        }
    }

    /// The next changes, with the revision they bring the watched keys to;
    /// an empty batch is a progress report (nothing changed up to that
    /// revision). An error ends the watch.
    pub async fn next(&mut self) -> Result<(Vec<WatchEvent>, i64), EtcdError> {
        let message = self.message().await.map_err(EtcdError::Unreachable)?;
        if let Some(revision) = compacted(&message) {
            return Err(EtcdError::Compacted(revision));
        }
        if let Some(error) = message.get("error") {
            return Err(EtcdError::Unreachable(format!("{}: {error}", self.member)));
        }
        let result = &message["result"];
        if result["canceled"].as_bool() == Some(true) {
            let reason = result["cancel_reason"].as_str().unwrap_or("canceled");
            return Err(EtcdError::Unreachable(format!(
                "{}: watch {reason}",
                self.member
            )));
        }
        let events = result["events"]
            .as_array()
            .map(|events| {
                events
                    .iter()
                    .map(|event| {
                        let kv = key_value(&event["kv"]);
                        if event["type"].as_str() == Some("DELETE") {
                            WatchEvent::Delete {
                                key: kv.key,
                                mod_revision: kv.mod_revision,
                            }
                        } else {
                            WatchEvent::Put(kv)
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok((events, int(&result["header"]["revision"])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_range_ends_past_every_key_under_it() {
        assert_eq!(prefix_end("/sy/"), b"/sy0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
        assert_eq!(prefix_end(""), vec![0]);
    }

    #[test]
    fn the_gateway_s_int64_strings_and_base64_are_read() {
        let kv = key_value(&json!({
            "key": encode(b"/sy/config"), "value": encode(b"hello"),
            "mod_revision": "42", "lease": "7",
        }));
        assert_eq!(
            kv,
            KeyValue {
                key: "/sy/config".into(),
                value: b"hello".to_vec(),
                mod_revision: 42,
                lease: 7
            }
        );
    }

    #[test]
    fn members_must_be_http_or_https_addresses() {
        let settings = |endpoints: &[&str]| EtcdSettings {
            endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
            request_timeout: Duration::from_secs(1),
            credentials: None,
            tls: None,
        };
        assert!(Etcd::new(settings(&["http://127.0.0.1:2379"])).is_ok());
        let error = Etcd::new(settings(&["127.0.0.1:2379"])).unwrap_err();
        assert!(error.contains("not an http:// or https://"), "{error}");
        let error = Etcd::new(settings(&["https://127.0.0.1:2379"])).unwrap_err();
        assert!(error.contains("no TLS settings"), "{error}");
        assert!(Etcd::new(settings(&[])).is_err());
    }
}
