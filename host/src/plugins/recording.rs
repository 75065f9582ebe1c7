//! Recording a pool's picks for `switchyard plugin replay`: a sample of the
//! picks its balancer plugin makes, each with the request, the endpoint
//! set (when it changed), every host call the plugin made and what it was
//! answered, the decision and what the call cost.
//!
//! The request path only fills a record and offers it to a bounded channel
//! (never waiting: a full channel drops the record and counts it); a
//! thread of its own writes JSON lines, appended, until the file reaches
//! `max_bytes`. Each run (or rebuild of the pool) starts with a `session`
//! line naming the pool, plugin and config.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::bindings::types::{self as wit, Health, Load};
use crate::config::RecordConfig;

/// Records waiting for the writer at most; past it they are dropped.
const QUEUE: usize = 16 * 1024;
/// How often the writer takes what the workers have recorded: at most
/// `QUEUE` records come in between (1.6 million a second) before any is
/// dropped.
const DRAIN_EVERY: Duration = Duration::from_millis(10);

/// One host call a plugin made during a recorded pick, with its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostCall {
    /// `now-ns`.
    NowNs(u64),
    /// `random-u64`.
    RandomU64(u64),
    /// `endpoint-load`.
    EndpointLoad {
        /// The endpoint asked about.
        id: u32,
        /// The answer.
        load: Option<RecordedLoad>,
    },
    /// `endpoint-load-pair`.
    EndpointLoadPair {
        /// The endpoints asked about.
        ids: (u32, u32),
        /// The answers.
        loads: (Option<RecordedLoad>, Option<RecordedLoad>),
    },
    /// `request-header`.
    RequestHeader {
        /// The name asked for.
        name: String,
        /// The answer.
        value: Option<String>,
    },
    /// `store.get`.
    StoreGet {
        /// The entry's endpoint.
        endpoint: Option<u32>,
        /// The entry's name.
        name: String,
        /// The answer.
        value: i64,
    },
    /// `store.add`.
    StoreAdd {
        /// The entry's endpoint.
        endpoint: Option<u32>,
        /// The entry's name.
        name: String,
        /// What was added.
        delta: i64,
        /// The new value, or the refusal (`full`, `bad-name`, `no-pool`).
        answer: Result<i64, String>,
    },
    /// `store.compare-and-swap`.
    StoreCompareAndSwap {
        /// The entry's endpoint.
        endpoint: Option<u32>,
        /// The entry's name.
        name: String,
        /// The value expected.
        expected: i64,
        /// The value to set.
        new: i64,
        /// The value found, or the refusal.
        answer: Result<i64, String>,
    },
}

/// An endpoint's load as a plugin was told it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedLoad {
    /// `in-flight`.
    pub in_flight: u32,
    /// `capacity`.
    pub capacity: u32,
    /// `ewma-latency-us`.
    pub ewma_latency_us: u32,
    /// `success-permille`.
    pub success_permille: u16,
    /// `health`: 0 healthy, 1 degraded, 2 unhealthy, 3 unknown.
    pub health: u8,
}

impl From<&Load> for RecordedLoad {
    fn from(load: &Load) -> Self {
        RecordedLoad {
            in_flight: load.in_flight,
            capacity: load.capacity,
            ewma_latency_us: load.ewma_latency_us,
            success_permille: load.success_permille,
            health: match load.health {
                Health::Healthy => 0,
                Health::Degraded => 1,
                Health::Unhealthy => 2,
                Health::Unknown => 3,
            },
        }
    }
}

impl From<RecordedLoad> for Load {
    fn from(load: RecordedLoad) -> Self {
        Load {
            in_flight: load.in_flight,
            capacity: load.capacity,
            ewma_latency_us: load.ewma_latency_us,
            success_permille: load.success_permille,
            health: match load.health {
                0 => Health::Healthy,
                1 => Health::Degraded,
                2 => Health::Unhealthy,
                _ => Health::Unknown,
            },
        }
    }
}

/// One eligible endpoint as `set-endpoints` pushed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedEndpoint {
    /// Its id.
    pub id: u32,
    /// `host:port`.
    pub address: String,
    /// Its weight.
    pub weight: u32,
    /// Its zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Its labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<(String, String)>,
}

impl From<&wit::Endpoint> for RecordedEndpoint {
    fn from(endpoint: &wit::Endpoint) -> Self {
        RecordedEndpoint {
            id: endpoint.id,
            address: endpoint.address.clone(),
            weight: endpoint.weight,
            zone: endpoint.zone.clone(),
            labels: endpoint.labels.clone(),
        }
    }
}

impl From<&RecordedEndpoint> for wit::Endpoint {
    fn from(endpoint: &RecordedEndpoint) -> Self {
        wit::Endpoint {
            id: endpoint.id,
            address: endpoint.address.clone(),
            weight: endpoint.weight,
            zone: endpoint.zone.clone(),
            labels: endpoint.labels.clone(),
        }
    }
}

/// The request a recorded pick placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// Its class, 0 (P0) to 4.
    pub priority: u8,
    /// 0 for the first attempt.
    pub attempt: u32,
    /// Its hash key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<u64>,
}

impl From<&wit::RequestInfo> for RecordedRequest {
    fn from(request: &wit::RequestInfo) -> Self {
        RecordedRequest {
            priority: request.priority as u8,
            attempt: request.attempt,
            hash: request.hash,
        }
    }
}

impl From<RecordedRequest> for wit::RequestInfo {
    fn from(request: RecordedRequest) -> Self {
        wit::RequestInfo {
            priority: match request.priority {
                0 => wit::Priority::P0,
                1 => wit::Priority::P1,
                2 => wit::Priority::P2,
                3 => wit::Priority::P3,
                _ => wit::Priority::P4,
            },
            attempt: request.attempt,
            hash: request.hash,
        }
    }
}

/// One line of a recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Line {
    /// A run (or a rebuild of the pool) starts recording.
    Session(Session),
    /// A pick.
    Pick(RecordedPick),
}

/// What a run of recording is of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The pool.
    pub pool: String,
    /// The balancer plugin's name.
    pub plugin: String,
    /// The pool's `balancer.config`, as JSON.
    pub config: String,
    /// When it started, in ms since the Unix epoch.
    pub started_unix_ms: u64,
}

/// A recorded pick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedPick {
    /// The serving version's SHA-256, on the first pick it made in the
    /// session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The worker thread that made it (each has its own instance).
    pub worker: u32,
    /// The endpoint set's generation.
    pub generation: u64,
    /// The eligible endpoints, on the first pick recorded of a generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<RecordedEndpoint>>,
    /// The request.
    pub request: RecordedRequest,
    /// The host calls the plugin made, in order, with their answers.
    pub calls: Vec<HostCall>,
    /// The endpoint it picked; none if it declined or faulted.
    pub picked: Option<u32>,
    /// Why the call failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// What the call cost, in ns.
    pub cost_ns: u64,
}

/// A pool's recorder, shared by its balancer on every worker.
#[derive(Debug)]
pub struct Recorder {
    file: PathBuf,
    /// Of 10,000 picks, how many are recorded.
    basis_points: u64,
    sender: SyncSender<Line>,
    /// The generation whose set was last recorded.
    generation: AtomicU64,
    /// The version id whose hash was last recorded.
    version: AtomicU64,
    counts: Arc<RecorderCounts>,
}

/// What a recorder has done, for the API.
#[derive(Debug, Default)]
pub struct RecorderCounts {
    /// Picks recorded.
    pub recorded: AtomicU64,
    /// Of them, those the writer has written.
    pub written: AtomicU64,
    /// Picks dropped because the writer was behind.
    pub dropped: AtomicU64,
    /// Bytes written to the file in this run.
    pub bytes: AtomicU64,
    /// Set when the file reached `max_bytes`: recording stopped.
    pub full: AtomicBool,
    /// Set when the file could not be written.
    pub failed: AtomicBool,
}

/// A recorder's figures, as the API shows them.
#[derive(Debug, Clone, Serialize)]
pub struct RecorderView {
    /// The file.
    pub file: String,
    /// The share of picks recorded, in percent.
    pub percent: f64,
    /// Picks recorded.
    pub recorded: u64,
    /// Of them, those written to the file so far.
    pub written: u64,
    /// Picks dropped because the writer was behind.
    pub dropped: u64,
    /// Bytes written in this run.
    pub bytes: u64,
    /// Whether recording stopped at `max_bytes`.
    pub full: bool,
    /// Whether the file could not be written.
    pub failed: bool,
}

impl Recorder {
    /// Starts recording pool `pool`'s picks by plugin `plugin` with
    /// `config_json` as `config` says: a session line, then picks.
    pub fn start(
        config: &RecordConfig,
        pool: &str,
        plugin: &str,
        config_json: &str,
    ) -> std::io::Result<Arc<Recorder>> {
        if let Some(folder) = config.file.parent().filter(|f| !f.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder)?;
        }
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.file)?;
        let (sender, receiver) = std::sync::mpsc::sync_channel(QUEUE);
        let counts = Arc::new(RecorderCounts::default());
        let writer = Writer {
            out,
            file: config.file.clone(),
            max_bytes: config.max_bytes,
            counts: Arc::clone(&counts),
        };
        std::thread::Builder::new()
            .name(format!("switchyard-record-{pool}"))
            .spawn(move || writer.run(receiver))?;
        let _ = sender.send(Line::Session(Session {
            pool: pool.to_string(),
            plugin: plugin.to_string(),
            config: config_json.to_string(),
            started_unix_ms: super::registry::Note::now(String::new()).at_unix_ms,
        }));
        Ok(Arc::new(Recorder {
            file: config.file.clone(),
            basis_points: (config.percent * 100.0).round().clamp(1.0, 10_000.0) as u64,
            sender,
            generation: AtomicU64::new(u64::MAX),
            version: AtomicU64::new(u64::MAX),
            counts,
        }))
    }

    /// Whether the next pick is to be recorded, drawn from the worker's
    /// own generator (no counter shared by the workers), while the file
    /// has room.
    pub(crate) fn sample(&self) -> bool {
        (self.basis_points == 10_000 || fastrand::u64(..10_000) < self.basis_points)
            && !self.counts.full.load(Ordering::Relaxed)
    }

    /// Whether the set of `generation` is to go with this record (the
    /// first recorded of it).
    pub(crate) fn first_of_generation(&self, generation: u64) -> bool {
        self.generation.swap(generation, Ordering::Relaxed) != generation
    }

    /// Whether the version `id` is to be named with this record.
    pub(crate) fn first_of_version(&self, id: u64) -> bool {
        self.version.swap(id, Ordering::Relaxed) != id
    }

    /// Offers a pick to the writer; never waits.
    pub(crate) fn offer(&self, pick: RecordedPick) {
        match self.sender.try_send(Line::Pick(pick)) {
            Ok(()) => {
                self.counts.recorded.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Its figures.
    pub fn view(&self) -> RecorderView {
        RecorderView {
            file: self.file.display().to_string(),
            percent: self.basis_points as f64 / 100.0,
            recorded: self.counts.recorded.load(Ordering::Relaxed),
            written: self.counts.written.load(Ordering::Relaxed),
            dropped: self.counts.dropped.load(Ordering::Relaxed),
            bytes: self.counts.bytes.load(Ordering::Relaxed),
            full: self.counts.full.load(Ordering::Relaxed),
            failed: self.counts.failed.load(Ordering::Relaxed),
        }
    }
}

/// The recorder's writing thread.
struct Writer {
    out: std::fs::File,
    file: PathBuf,
    max_bytes: u64,
    counts: Arc<RecorderCounts>,
}

impl Writer {
    /// Writes what has come every [`DRAIN_EVERY`], in batches of whole
    /// lines (one `write` each, appended, so two recorders of one file
    /// never split a line), until the recorder is dropped or the file is
    /// full. The writer never sleeps on the channel: a worker's `try_send`
    /// then never has a sleeping reader to wake, which would cost it a
    /// system call.
    fn run(mut self, lines: Receiver<Line>) {
        let mut batch = Vec::new();
        let mut written = std::fs::metadata(&self.file).map_or(0, |m| m.len());
        // Picks in the batch, counted as written when it is.
        let mut pending = 0;
        loop {
            let ended = loop {
                let line = match lines.try_recv() {
                    Ok(line) => line,
                    Err(TryRecvError::Empty) => break false,
                    Err(TryRecvError::Disconnected) => break true,
                };
                let before = batch.len();
                if serde_json::to_writer(&mut batch, &line).is_err() {
                    batch.truncate(before);
                    continue;
                }
                batch.push(b'\n');
                if written + batch.len() as u64 > self.max_bytes {
                    batch.truncate(before);
                    self.flush(&mut batch, &mut written, &mut pending);
                    self.counts.full.store(true, Ordering::Relaxed);
                    tracing::warn!(
                        file = %self.file.display(),
                        max_bytes = self.max_bytes,
                        "recording stopped: the file reached max_bytes"
                    );
                    return;
                }
                if matches!(line, Line::Pick(_)) {
                    pending += 1;
                }
                if batch.len() >= 64 * 1024 {
                    self.flush(&mut batch, &mut written, &mut pending);
                }
            };
            self.flush(&mut batch, &mut written, &mut pending);
            if ended {
                return;
            }
            std::thread::sleep(DRAIN_EVERY);
        }
    }

    fn flush(&mut self, batch: &mut Vec<u8>, written: &mut u64, picks: &mut u64) {
        if batch.is_empty() {
            return;
        }
        match self.out.write_all(batch) {
            Ok(()) => {
                *written += batch.len() as u64;
                self.counts.written.fetch_add(*picks, Ordering::Relaxed);
                self.counts
                    .bytes
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
            Err(error) => {
                if !self.counts.failed.swap(true, Ordering::Relaxed) {
                    tracing::error!(file = %self.file.display(), "cannot write the recording: {error}");
                }
            }
        }
        batch.clear();
        *picks = 0;
    }
}

/// A worker's id for recordings: small, stable for the thread's life.
pub(crate) fn worker_id() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    thread_local! {
        static ID: u32 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    ID.with(|id| *id)
}
