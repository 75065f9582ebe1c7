//! API edits of the config file, applied in batches (group commit). An
//! edit that comes while a batch is being applied waits; the next batch
//! takes every edit waiting and applies them in the order they came, each
//! checked on its own (its `If-Match`, the edit itself, validation, the
//! pool built), then writes the file once, synced, swaps what serves once,
//! and only then answers each edit with its own outcome. A refused edit
//! changes nothing and holds back none of its batch.
//!
//! Edits confined to one pool ([`Scope::Pool`]: its endpoints, its keys)
//! are made, checked and built on that pool's section of the text alone
//! ([`Sections`], kept between batches while the file stays at the version
//! written), so a batch costs what it changes plus one pass over the text
//! to hash and write it. Anything else — a pool added or removed, the
//! routes, a file changed by hand and not applied yet, pools written as an
//! inline array — takes the whole-file way: each edit made on the whole
//! document, validated whole and planned as a reload.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, PoisonError};

use serde::Serialize;
use tokio::sync::oneshot;
use toml_edit::DocumentMut;

use super::{
    ActiveChecks, Applied, Builder, EditError, LineChanges, Plan, ReloadError, ReloadReport,
    Reloader,
};
use crate::config::edit::{EditRefused, PoolEditRefused};
use crate::config::store::{version_of, ConfigFile, Sections, StoreError};
use crate::config::{Config, PoolConfig};
use crate::engine::{Pool, Topology};

/// Most edits applied in one batch.
const MAX_BATCH: usize = 1_000;

/// What part of the config an edit changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Only the table of this pool, which keeps its name: its endpoints or
    /// its keys.
    Pool(String),
    /// Anything: pools added or removed, the routes.
    Whole,
}

/// A change made on a config document; refused, it leaves the document as
/// it was.
pub type Change = Box<dyn FnOnce(&mut DocumentMut) -> Result<(), PoolEditRefused> + Send>;

/// A change to the config document.
pub struct Edit {
    /// What it changes; it must change nothing outside it.
    pub scope: Scope,
    /// The change. For [`Scope::Pool`] it may be made on a document of
    /// that pool's table alone (`[[pools]]` with one table), so it must
    /// find the pool by name.
    pub apply: Change,
}

impl std::fmt::Debug for Edit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edit").field("scope", &self.scope).finish()
    }
}

/// What one edit changed, by pool name.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ChangeReport {
    /// Pools that are new.
    pub added: Vec<String>,
    /// Pools rebuilt because their table changed.
    pub changed: Vec<String>,
    /// Pools no longer in the config.
    pub removed: Vec<String>,
    /// How many pools were left as they were.
    pub unchanged: usize,
    /// Routes in the table.
    pub routes: usize,
}

/// An edit written to the file and serving.
#[derive(Debug, Clone)]
pub struct Written {
    /// What it changed.
    pub applied: ChangeReport,
    /// The file's version now: the text of the batch the edit was written
    /// in, which holds this edit and those applied with it.
    pub version: String,
    /// The file's version before that batch.
    pub version_before: String,
    /// The lines of the file this edit removed and added.
    pub changes: LineChanges,
}

type Answer = Result<Written, EditError<PoolEditRefused>>;

struct Pending {
    if_match: Option<String>,
    edit: Edit,
    answer: oneshot::Sender<Answer>,
}

/// Edits waiting for their batch.
#[derive(Default)]
pub(super) struct EditQueue {
    state: std::sync::Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    pending: VecDeque<Pending>,
    /// A thread is applying batches; it takes what is pending before it
    /// stops.
    running: bool,
}

impl std::fmt::Debug for EditQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("EditQueue")
            .field("pending", &state.pending.len())
            .field("running", &state.running)
            .finish()
    }
}

/// Stops the batch thread's claim if it panics, and answers what waits
/// (the senders dropped: "not applied"), so later edits start a new one.
struct Running<'a>(&'a EditQueue);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut state = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.running = false;
            state.pending.clear();
        }
    }
}

/// The file's text as last written (or read and cut), for the next batch:
/// while the file holds exactly this text, it is at `version`, and pool
/// edits are made on `sections`.
#[derive(Debug)]
pub(super) struct Image {
    version: String,
    text: String,
    sections: Sections,
}

/// How an edit fared in its batch, before the batch was written.
enum Outcome {
    Accepted {
        applied: ChangeReport,
        changes: LineChanges,
    },
    Refused(EditError<PoolEditRefused>),
    /// Its `If-Match` is not the version the batch began at.
    Stale,
    /// Its `If-Match` is the version the batch began at, but an edit before
    /// it in the batch changed the text.
    StaleInBatch,
}

impl Reloader {
    /// Edits the config file and applies it: the edit is made on the text
    /// (comments and order kept), validated and built like any config,
    /// written back atomically with the others of its batch, and only then
    /// swapped in and answered, so what was acknowledged is in the file.
    /// With `if_match`, the file must still be at that version when the
    /// edit's turn comes. Returns what changed and the file's new version.
    pub async fn edit(self: &Arc<Self>, if_match: Option<&str>, edit: Edit) -> Answer {
        if self.file.lock().unwrap().is_none() {
            return Err(EditError::Reload(ReloadError::NoFile));
        }
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut state = self
                .edits
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            state.pending.push_back(Pending {
                if_match: if_match.map(str::to_string),
                edit,
                answer,
            });
            !std::mem::replace(&mut state.running, true)
        };
        if start {
            let reloader = Arc::clone(self);
            tokio::task::spawn_blocking(move || reloader.apply_batches());
        }
        answered.await.unwrap_or_else(|_| {
            Err(EditError::Store(StoreError::Io {
                path: "the config file".into(),
                source: std::io::Error::other(
                    "the edit was not applied: the thread applying edits stopped",
                ),
            }))
        })
    }

    /// Applies batches until none is waiting. Runs on a blocking thread,
    /// one at a time.
    fn apply_batches(&self) {
        let _running = Running(&self.edits);
        loop {
            // The batch is taken once the lock is held: what comes while a
            // reload holds it joins too.
            let mut applied = self.applied.blocking_lock();
            let batch = {
                let mut state = self
                    .edits
                    .state
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if state.pending.is_empty() {
                    state.running = false;
                    return;
                }
                next_batch(&mut state.pending)
            };
            let (answers, replaced) = self.apply_batch(&mut applied, batch);
            drop(applied);
            for (sender, answer) in answers {
                // An asker that went away has nothing to hear.
                let _ = sender.send(answer);
            }
            // What served before is freed after the answers have left.
            drop(replaced);
        }
    }

    /// Applies one batch and says what to answer each edit; returns too
    /// the topology that served before, to be freed after answering.
    fn apply_batch(
        &self,
        applied: &mut Applied,
        batch: Vec<Pending>,
    ) -> (Vec<(oneshot::Sender<Answer>, Answer)>, Arc<Topology>) {
        let current = self.topology.load_full();
        let Some(path) = self.file.lock().unwrap().clone() else {
            let answers = answer_all(batch, || EditError::Reload(ReloadError::NoFile));
            return (answers, current);
        };
        let origin = path.display().to_string();
        let store = ConfigFile::new(path);
        let text = match store.text() {
            Ok(text) => text,
            Err(error) => {
                let answers = answer_all(batch, || EditError::Store(error.clone()));
                return (answers, current);
            }
        };
        // Read back as written last (compared, not hashed again), or not.
        let base = match &applied.image {
            Some(image) if image.text == text => image.version.clone(),
            _ => version_of(&text),
        };
        // The file is at the version that serves (not changed by hand
        // since), so one pool's change is judged on its own.
        let caught_up = self.version().as_deref() == Some(base.as_str());
        let by_pool = caught_up
            && current.pools.len() == applied.config.pools.len()
            && batch.iter().all(|p| matches!(p.edit.scope, Scope::Pool(_)));
        let sections = match by_pool {
            true => match applied.image.take() {
                Some(image) if image.version == base => Some(image.sections),
                _ => Sections::cut(&text),
            },
            false => None,
        };
        let mut draft = match sections {
            Some(sections) => Draft::Pools(PoolDraft {
                text,
                sections,
                rebuilt: BTreeMap::new(),
                current: Arc::clone(&current),
            }),
            None => Draft::Whole(Box::new(WholeDraft::new(text))),
        };

        let mut moved = false;
        let mut outcomes = Vec::with_capacity(batch.len());
        for Pending {
            if_match,
            edit,
            answer,
        } in batch
        {
            let outcome = match if_match.as_deref().map(|m| m.trim_matches('"')) {
                Some(expected) if expected != base => Outcome::Stale,
                Some(_) if moved => Outcome::StaleInBatch,
                _ => match draft.apply(self, applied, edit, &origin) {
                    Ok((applied, changes, changed)) => {
                        moved |= changed;
                        Outcome::Accepted { applied, changes }
                    }
                    Err(error) => Outcome::Refused(error),
                },
            };
            outcomes.push((answer, outcome));
        }

        let written = draft.finish(self, applied, &store, &base);
        let now = match &written {
            Ok(Some(version)) => version.clone(),
            _ => base.clone(),
        };
        let answers = outcomes
            .into_iter()
            .map(|(sender, outcome)| {
                let answer = match (outcome, &written) {
                    (Outcome::Refused(error), _) => Err(error),
                    (Outcome::Stale, _) => Err(EditError::Stale {
                        current: now.clone(),
                    }),
                    (Outcome::Accepted { .. } | Outcome::StaleInBatch, Err(error)) => {
                        Err(EditError::Store(error.clone()))
                    }
                    (Outcome::StaleInBatch, Ok(_)) => Err(EditError::Stale {
                        current: now.clone(),
                    }),
                    (Outcome::Accepted { applied, changes }, Ok(_)) => Ok(Written {
                        applied,
                        version: now.clone(),
                        version_before: base.clone(),
                        changes,
                    }),
                };
                (sender, answer)
            })
            .collect();
        (answers, current)
    }
}

/// The edits at the front of the queue that go in one batch: those
/// confined to a pool, or the others, as many as follow each other.
fn next_batch(pending: &mut VecDeque<Pending>) -> Vec<Pending> {
    let by_pool = |p: &Pending| matches!(p.edit.scope, Scope::Pool(_));
    let first = pending.front().is_some_and(by_pool);
    let count = pending
        .iter()
        .take(MAX_BATCH)
        .take_while(|p| by_pool(p) == first)
        .count();
    pending.drain(..count).collect()
}

fn answer_all(
    batch: Vec<Pending>,
    error: impl Fn() -> EditError<PoolEditRefused>,
) -> Vec<(oneshot::Sender<Answer>, Answer)> {
    batch
        .into_iter()
        .map(|p| (p.answer, Err(error())))
        .collect()
}

/// A batch's text and config as its accepted edits leave them.
enum Draft {
    Pools(PoolDraft),
    Whole(Box<WholeDraft>),
}

impl Draft {
    /// Makes `edit` on the draft, or refuses it and leaves the draft as it
    /// was. Returns what it changed, its lines, and whether the text moved.
    fn apply(
        &mut self,
        reloader: &Reloader,
        applied: &Applied,
        edit: Edit,
        origin: &str,
    ) -> Result<(ChangeReport, LineChanges, bool), EditError<PoolEditRefused>> {
        match (self, edit.scope) {
            (Draft::Pools(draft), Scope::Pool(name)) => {
                draft.apply(reloader, applied, &name, edit.apply, origin)
            }
            (Draft::Pools(_), Scope::Whole) => unreachable!("batches by pool hold pool edits"),
            (Draft::Whole(draft), _) => draft.apply(reloader, applied, edit.apply, origin),
        }
    }

    /// Writes the text, if an edit was accepted, and swaps in what it
    /// built. Returns the file's new version, `None` when nothing was
    /// written.
    fn finish(
        self,
        reloader: &Reloader,
        applied: &mut Applied,
        store: &ConfigFile,
        base: &str,
    ) -> Result<Option<String>, StoreError> {
        match self {
            Draft::Pools(draft) => draft.finish(reloader, applied, store, base),
            Draft::Whole(draft) => draft.finish(reloader, applied, store, base),
        }
    }
}

/// Edits made pool by pool on the text's sections, over the config that
/// serves.
struct PoolDraft {
    /// The text the batch began from.
    text: String,
    sections: Sections,
    /// The pools changed so far, by place: their config and what was built.
    rebuilt: BTreeMap<usize, Rebuilt>,
    /// What serves, in config order.
    current: Arc<Topology>,
}

struct Rebuilt {
    config: PoolConfig,
    pool: Arc<Pool>,
    checks: Option<ActiveChecks>,
}

impl PoolDraft {
    fn apply(
        &mut self,
        reloader: &Reloader,
        applied: &Applied,
        name: &str,
        edit: Change,
        origin: &str,
    ) -> Result<(ChangeReport, LineChanges, bool), EditError<PoolEditRefused>> {
        let pools = self.sections.len();
        let routes = applied.config.routes.len();
        let Some(index) = self.sections.find(name) else {
            // The edit says so in its own words.
            edit(&mut DocumentMut::new()).map_err(EditError::Edit)?;
            return Err(EditError::Edit(EditRefused::NoSuchPool(name.into()).into()));
        };
        let old = self.sections.section(index);
        let mut document: DocumentMut = old.parse().map_err(|e: toml_edit::TomlError| {
            EditError::Store(StoreError::Parse(format!(
                "the table of pool `{name}`: {e}"
            )))
        })?;
        edit(&mut document).map_err(EditError::Edit)?;
        let new = document.to_string();
        if new == old {
            let applied = ChangeReport {
                unchanged: pools,
                routes,
                ..ChangeReport::default()
            };
            return Ok((applied, LineChanges::default(), false));
        }
        let before = match self.rebuilt.get(&index) {
            Some(rebuilt) => &rebuilt.config,
            None => &applied.config.pools[index],
        };
        let config = match check_pool(&applied.config, before, &new) {
            Some(config) => config,
            // Not plainly valid alone (or its plugins changed): the whole
            // file with this change is the judge, validated and planned as
            // a reload is (which names a problem by key and line).
            None => {
                let mut whole = Config::parse(&self.sections.text_with(index, &new), origin)
                    .map_err(|e| EditError::Reload(ReloadError::Invalid(e)))?;
                if whole.pools.get(index).map(|p| p.name.as_str()) != Some(name) {
                    return Err(EditError::Store(StoreError::Parse(format!(
                        "pool `{name}` is not where its table is"
                    ))));
                }
                reloader.plan(applied, &whole).map_err(EditError::Reload)?;
                whole.pools.swap_remove(index)
            }
        };
        let previous = match self.current.pools.get(index) {
            Some(pool) if pool.name == name => Some(pool),
            _ => self.current.pool(name),
        };
        let builder = Builder {
            runtime: &reloader.runtime,
            tick_queue: &reloader.tick_queue,
            hosts: &reloader.hosts,
            load_errors: &[],
            alerts: &reloader.alerts,
            fall_back: false,
        };
        let (pool, checks) = builder
            .pool(index, &config, previous, &applied.found(&config))
            .map_err(|e| EditError::Reload(ReloadError::Build(format!("{e:#}"))))?;
        let changes = LineChanges::between(old, &new);
        self.sections.replace(index, new);
        self.rebuilt.insert(
            index,
            Rebuilt {
                config,
                pool,
                checks,
            },
        );
        let applied = ChangeReport {
            changed: vec![name.to_string()],
            unchanged: pools - 1,
            routes,
            ..ChangeReport::default()
        };
        Ok((applied, changes, true))
    }

    fn finish(
        self,
        reloader: &Reloader,
        applied: &mut Applied,
        store: &ConfigFile,
        base: &str,
    ) -> Result<Option<String>, StoreError> {
        let PoolDraft {
            text,
            sections,
            rebuilt,
            current,
        } = self;
        if rebuilt.is_empty() {
            applied.image = Some(Image {
                version: base.to_string(),
                text,
                sections,
            });
            return Ok(None);
        }
        let text = sections.text();
        // A failed write leaves the file at `base`, which these sections
        // no longer are: they are dropped, and cut again from the file.
        reloader.write_config(store, base, &text)?;
        let version = version_of(&text);
        let mut next = std::mem::take(&mut applied.config);
        let mut pools = current.pools.clone();
        let mut started = Vec::with_capacity(rebuilt.len());
        let mut report = ReloadReport::default();
        for (&index, rebuilt) in &rebuilt {
            report.changed.push(rebuilt.config.name.clone());
            pools[index] = Arc::clone(&rebuilt.pool);
        }
        report.unchanged = pools
            .iter()
            .enumerate()
            .filter(|(index, _)| !rebuilt.contains_key(index))
            .map(|(_, pool)| pool.name.clone())
            .collect();
        for (index, rebuilt) in rebuilt {
            next.pools[index] = rebuilt.config;
            started.push((rebuilt.pool, rebuilt.checks));
        }
        let plan = Plan {
            pools,
            started,
            report,
            // A pool's edit touches nothing outside its table.
            routes: super::RouteTable::Keep,
        };
        reloader.commit(applied, next, plan);
        *reloader.file_hash.lock().unwrap() = Some(version.clone());
        applied.image = Some(Image {
            version: version.clone(),
            text,
            sections,
        });
        Ok(Some(version))
    }
}

/// `text` (a pool's section) as that pool's config, when it is plainly
/// valid: it parses as one pool, still `before`'s (same name and plugins,
/// so no route, other pool or plugin instance count can be affected), and
/// it meets every rule a pool is held to in a whole file. `None` leaves
/// the verdict to the whole file.
fn check_pool(base: &Config, before: &PoolConfig, text: &str) -> Option<PoolConfig> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Section {
        pools: Vec<PoolConfig>,
    }
    let Section { mut pools } = toml::from_str(text).ok()?;
    let pool = pools.pop().filter(|_| pools.is_empty())?;
    let same_pool = pool.name == before.name
        && pool.balancer == before.balancer
        && pool.health == before.health
        && pool.recovery == before.recovery;
    if !same_pool {
        return None;
    }
    // The pool alone in a config that is otherwise the serving one: the
    // rules about pools are the whole file's, in one place.
    let alone = Config {
        proxy: base.proxy.clone(),
        control: base.control.clone(),
        plugins: base.plugins.clone(),
        listeners: base.listeners.clone(),
        pools: vec![pool],
        routes: Vec::new(),
        cluster: base.cluster.clone(),
    };
    if !alone.problems().is_empty() {
        return None;
    }
    alone.pools.into_iter().next()
}

/// Edits made on the whole document, each validated whole and planned as a
/// reload against what serves.
struct WholeDraft {
    /// The text with the edits accepted so far.
    text: String,
    /// Its document, or why it does not parse.
    document: Result<DocumentMut, String>,
    /// Its config and what applying it builds, once an edit is accepted.
    accepted: Option<(Config, Plan)>,
}

impl WholeDraft {
    fn new(text: String) -> WholeDraft {
        let document = text
            .parse()
            .map_err(|e: toml_edit::TomlError| e.to_string());
        WholeDraft {
            text,
            document,
            accepted: None,
        }
    }

    fn apply(
        &mut self,
        reloader: &Reloader,
        applied: &Applied,
        edit: Change,
        origin: &str,
    ) -> Result<(ChangeReport, LineChanges, bool), EditError<PoolEditRefused>> {
        let document = match &mut self.document {
            Ok(document) => document,
            Err(error) => return Err(EditError::Store(StoreError::Parse(error.clone()))),
        };
        // A refused edit leaves the document as it was.
        edit(document).map_err(EditError::Edit)?;
        let text = document.to_string();
        let judged = Config::parse(&text, origin)
            .map_err(ReloadError::Invalid)
            .and_then(|next| Ok((reloader.plan(applied, &next)?, next)));
        let (plan, next) = match judged {
            Ok(judged) => judged,
            Err(error) => {
                self.document = self
                    .text
                    .parse()
                    .map_err(|e: toml_edit::TomlError| e.to_string());
                return Err(EditError::Reload(error));
            }
        };
        let before = self.accepted.as_ref().map_or(&applied.config, |(c, _)| c);
        let report = difference(before, &next);
        let changes = LineChanges::between(&self.text, &text);
        let moved = text != self.text;
        self.text = text;
        self.accepted = Some((next, plan));
        Ok((report, changes, moved))
    }

    fn finish(
        self,
        reloader: &Reloader,
        applied: &mut Applied,
        store: &ConfigFile,
        base: &str,
    ) -> Result<Option<String>, StoreError> {
        let Some((next, plan)) = self.accepted else {
            return Ok(None);
        };
        reloader.write_config(store, base, &self.text)?;
        let version = version_of(&self.text);
        reloader.commit(applied, next, plan);
        *reloader.file_hash.lock().unwrap() = Some(version.clone());
        Ok(Some(version))
    }
}

/// What differs between two configs, pool by pool.
fn difference(before: &Config, after: &Config) -> ChangeReport {
    let old: HashMap<&str, &PoolConfig> =
        before.pools.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut report = ChangeReport {
        routes: after.routes.len(),
        ..ChangeReport::default()
    };
    for pool in &after.pools {
        match old.get(pool.name.as_str()) {
            None => report.added.push(pool.name.clone()),
            Some(&was) if was != pool => report.changed.push(pool.name.clone()),
            Some(_) => report.unchanged += 1,
        }
    }
    let now: HashSet<&str> = after.pools.iter().map(|p| p.name.as_str()).collect();
    report.removed = before
        .pools
        .iter()
        .filter(|p| !now.contains(p.name.as_str()))
        .map(|p| p.name.clone())
        .collect();
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::edit::{add_endpoint, add_pool, update_endpoint, EndpointFields};
    use crate::config::EndpointState;
    use crate::engine::Alerts;
    use crate::plugins::PluginRuntime;

    const FILE: &str = r#"[proxy]
workers = 1

[plugins]
dir = "PLUGINS"

[[pools]]
name = "a"
endpoints = [{ address = "127.0.0.1:1001" }]

[[pools]]
name = "b"
endpoints = [{ address = "127.0.0.1:2001" }]

[[routes]]
host = "a.example"
pool = "a"

[[routes]]
pool = "b"
"#;

    struct Fixture {
        reloader: Arc<Reloader>,
        path: std::path::PathBuf,
        _dir: tempfile::TempDir,
    }

    fn start(text: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchyard.toml");
        let plugins = dir.path().join("plugins");
        let text = text.replace("PLUGINS", &plugins.display().to_string());
        std::fs::write(&path, &text).unwrap();
        let config = Config::parse(&text, "test").unwrap();
        let runtime = PluginRuntime::new(&config.plugins).unwrap();
        let reloader = Reloader::start(config, runtime, &[], Arc::new(Alerts::default())).unwrap();
        reloader.set_file(path.clone(), version_of(&text));
        Fixture {
            reloader: Arc::new(reloader),
            path,
            _dir: dir,
        }
    }

    fn add(pool: &str, address: &str, weight: u32) -> Edit {
        let (pool, address) = (pool.to_string(), address.to_string());
        Edit {
            scope: Scope::Pool(pool.clone()),
            apply: Box::new(move |document| {
                let fields = EndpointFields {
                    weight: Some(weight),
                    ..EndpointFields::default()
                };
                add_endpoint(document, &pool, &address, &fields).map_err(PoolEditRefused::from)
            }),
        }
    }

    fn drain(pool: &str, address: &str) -> Edit {
        let (pool, address) = (pool.to_string(), address.to_string());
        Edit {
            scope: Scope::Pool(pool.clone()),
            apply: Box::new(move |document| {
                let fields = EndpointFields {
                    state: Some(EndpointState::Draining),
                    ..EndpointFields::default()
                };
                update_endpoint(document, &pool, &address, &fields).map_err(PoolEditRefused::from)
            }),
        }
    }

    /// Sends `edits` so that they wait together and are applied as one
    /// batch; their answers in order.
    async fn one_batch(
        reloader: &Arc<Reloader>,
        edits: Vec<(Option<String>, Edit)>,
    ) -> Vec<Answer> {
        let held = reloader.applied.lock().await;
        let mut tasks = Vec::new();
        for (queued, (if_match, edit)) in edits.into_iter().enumerate() {
            let sender = Arc::clone(reloader);
            tasks.push(tokio::spawn(async move {
                sender.edit(if_match.as_deref(), edit).await
            }));
            // In the order given: each queued before the next is sent.
            while reloader.edits.state.lock().unwrap().pending.len() <= queued {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
        drop(held);
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.unwrap());
        }
        answers
    }

    fn endpoints(reloader: &Reloader, pool: &str) -> Vec<(String, u32, Admin)> {
        let topology = reloader.topology.load_full();
        let pool = topology.pool(pool).unwrap();
        pool.endpoints()
            .all
            .iter()
            .map(|e| (e.address.clone(), e.weight, e.admin))
            .collect()
    }

    use crate::engine::Admin;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_answers_each_edit_with_its_own_outcome_and_writes_once() {
        let fixture = start(FILE);
        let base = version_of(&std::fs::read_to_string(&fixture.path).unwrap());
        let quoted = Some(format!("\"{base}\""));
        let answers = one_batch(
            &fixture.reloader,
            vec![
                (quoted.clone(), add("a", "127.0.0.1:1002", 2)),
                // The version it names was current when the batch began,
                // not at its turn: an edit before it changed the text.
                (quoted.clone(), add("b", "127.0.0.1:2009", 1)),
                (None, add("a", "127.0.0.1:1003", 0)),
                (None, add("nope", "127.0.0.1:1", 1)),
                (None, add("a", "127.0.0.1:1001", 1)),
                (None, drain("b", "127.0.0.1:2001")),
                (Some("\"0000\"".into()), add("b", "127.0.0.1:2008", 1)),
            ],
        )
        .await;
        let written = std::fs::read_to_string(&fixture.path).unwrap();
        let now = version_of(&written);
        let first = answers[0].as_ref().unwrap();
        assert_eq!(first.version, now);
        assert_eq!(first.version_before, base);
        assert_eq!(first.applied.changed, ["a"]);
        assert_eq!(first.applied.unchanged, 1);
        assert!(
            first.changes.added[0].contains("127.0.0.1:1002"),
            "{first:?}"
        );
        assert!(
            matches!(&answers[1], Err(EditError::Stale { current }) if *current == now),
            "{:?}",
            answers[1]
        );
        match &answers[2] {
            Err(EditError::Reload(ReloadError::Invalid(error))) => {
                let message = error.to_string();
                assert!(
                    message.contains("`pools[0].endpoints[2].weight`: must be at least 1"),
                    "{message}"
                );
                assert!(message.contains("line 9"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(&answers[3], Err(EditError::Edit(PoolEditRefused::Endpoint(EditRefused::NoSuchPool(p)))) if p == "nope"),
            "{:?}",
            answers[3]
        );
        assert!(
            matches!(
                &answers[4],
                Err(EditError::Edit(PoolEditRefused::Endpoint(
                    EditRefused::EndpointExists { .. }
                )))
            ),
            "{:?}",
            answers[4]
        );
        let drained = answers[5].as_ref().unwrap();
        assert_eq!(drained.version, now);
        assert_eq!(drained.applied.changed, ["b"]);
        assert!(matches!(&answers[6], Err(EditError::Stale { .. })));

        assert!(
            written.contains("{ address = \"127.0.0.1:1002\", weight = 2 }"),
            "{written}"
        );
        assert!(
            written
                .lines()
                .any(|l| l.contains("127.0.0.1:2001") && l.contains("state = \"draining\"")),
            "{written}"
        );
        for refused in ["1003", "2009", "2008"] {
            assert!(!written.contains(refused), "{written}");
        }
        assert_eq!(fixture.reloader.version().unwrap(), now);
        assert_eq!(
            endpoints(&fixture.reloader, "a"),
            [
                ("127.0.0.1:1001".to_string(), 1, Admin::Active),
                ("127.0.0.1:1002".to_string(), 2, Admin::Active)
            ]
        );
        assert_eq!(
            endpoints(&fixture.reloader, "b"),
            [("127.0.0.1:2001".to_string(), 1, Admin::Draining)]
        );
        // What serves is what the file says.
        let applied = fixture.reloader.applied.lock().await;
        assert_eq!(applied.config, Config::parse(&written, "test").unwrap());
        // And the next batch goes on from the text it wrote.
        assert_eq!(applied.image.as_ref().unwrap().version, now);
        drop(applied);
        let next = fixture
            .reloader
            .edit(Some(&now), add("b", "127.0.0.1:2002", 1))
            .await
            .unwrap();
        assert_eq!(next.version_before, now);
        assert_eq!(endpoints(&fixture.reloader, "b").len(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_changed_by_hand_is_applied_with_the_next_edit() {
        let fixture = start(FILE);
        // Warm: the sections are cut.
        fixture
            .reloader
            .edit(None, add("a", "127.0.0.1:1002", 1))
            .await
            .unwrap();
        let text = std::fs::read_to_string(&fixture.path).unwrap();
        let by_hand = text.replace(
            "address = \"127.0.0.1:2001\"",
            "address = \"127.0.0.1:2001\", weight = 7",
        );
        std::fs::write(&fixture.path, &by_hand).unwrap();
        let answers = one_batch(
            &fixture.reloader,
            vec![
                (None, add("a", "127.0.0.1:1003", 1)),
                (None, add("a", "127.0.0.1:1004", 0)),
                (
                    Some(format!("\"{}\"", version_of(&by_hand))),
                    drain("a", "127.0.0.1:1001"),
                ),
            ],
        )
        .await;
        let first = answers[0].as_ref().unwrap();
        // What the edit applied: its own pool, and the one changed by hand.
        assert_eq!(first.applied.changed, ["a", "b"]);
        assert!(matches!(
            answers[1],
            Err(EditError::Reload(ReloadError::Invalid(_)))
        ));
        assert!(matches!(answers[2], Err(EditError::Stale { .. })));
        assert_eq!(endpoints(&fixture.reloader, "b")[0].1, 7);
        assert_eq!(endpoints(&fixture.reloader, "a").len(), 3);
        let written = std::fs::read_to_string(&fixture.path).unwrap();
        assert!(written.contains("weight = 7"), "{written}");
        assert!(written.contains("127.0.0.1:1003"), "{written}");
        assert_eq!(fixture.reloader.version().unwrap(), version_of(&written));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn edits_of_the_whole_file_go_in_batches_of_their_own() {
        let fixture = start(FILE);
        let pool =
            serde_json::json!({ "name": "c", "endpoints": [{ "address": "127.0.0.1:3001" }] });
        let add_c = Edit {
            scope: Scope::Whole,
            apply: Box::new(move |document| add_pool(document, pool.as_object().unwrap())),
        };
        let answers = one_batch(
            &fixture.reloader,
            vec![
                (None, add("a", "127.0.0.1:1002", 1)),
                (None, add_c),
                (None, add("c", "127.0.0.1:3002", 1)),
            ],
        )
        .await;
        let versions: Vec<&str> = answers
            .iter()
            .map(|a| a.as_ref().unwrap().version.as_str())
            .collect();
        assert!(
            versions[0] != versions[1] && versions[1] != versions[2],
            "{versions:?}"
        );
        assert_eq!(answers[1].as_ref().unwrap().applied.added, ["c"]);
        assert_eq!(answers[2].as_ref().unwrap().applied.changed, ["c"]);
        assert_eq!(endpoints(&fixture.reloader, "c").len(), 2);
    }

    /// A discovered endpoint at `address` from `source`.
    fn found(
        pool: &str,
        source: crate::engine::Source,
        addresses: &[&str],
    ) -> crate::discovery::Update {
        crate::discovery::Update {
            pool: pool.into(),
            source,
            found: addresses
                .iter()
                .map(|address| crate::discovery::Found {
                    address: address.to_string(),
                    weight: 1,
                    tier: 0,
                    labels: Default::default(),
                })
                .collect(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn found_endpoints_survive_edits_and_reloads_and_drain_when_gone() {
        use crate::engine::Source;
        // Its resolver is a port nothing answers on: the name never
        // answers, and what is found comes from the calls below.
        let with_discovery = FILE.replace(
            "name = \"a\"\n",
            "name = \"a\"\ndiscovery = { dns = \"a.internal:80\", resolvers = [\"127.0.0.1:9\"] }\n",
        );
        let fixture = start(&with_discovery);
        let reloader = &fixture.reloader;
        let rebuilt = reloader
            .set_found(vec![
                found("a", Source::Registration, &["127.0.0.3:80"]),
                found("a", Source::Dns, &["127.0.0.2:80"]),
                found("nope", Source::Dns, &["127.0.0.9:80"]),
            ])
            .await
            .unwrap();
        assert_eq!(rebuilt, ["a"]);
        let active = |address: &str| (address.to_string(), 1, Admin::Active);
        assert_eq!(
            endpoints(reloader, "a"),
            [
                active("127.0.0.1:1001"),
                active("127.0.0.2:80"),
                active("127.0.0.3:80")
            ]
        );
        let sources: Vec<Source> = reloader
            .topology
            .load()
            .pool("a")
            .unwrap()
            .endpoints()
            .all
            .iter()
            .map(|e| e.source)
            .collect();
        assert_eq!(sources, [Source::Config, Source::Dns, Source::Registration]);
        // The same set again rebuilds nothing.
        let again = reloader
            .set_found(vec![found("a", Source::Dns, &["127.0.0.2:80"])])
            .await
            .unwrap();
        assert!(again.is_empty());

        // An API edit keeps them, and writes none of them to the file.
        let answers = one_batch(reloader, vec![(None, add("a", "127.0.0.1:1002", 1))]).await;
        assert!(answers[0].is_ok());
        assert_eq!(endpoints(reloader, "a").len(), 4);
        let text = std::fs::read_to_string(&fixture.path).unwrap();
        assert!(
            !text.contains("127.0.0.2") && !text.contains("127.0.0.3"),
            "{text}"
        );

        // A reload without the pool's discovery drops what DNS found, and
        // keeps the registration.
        let without = text.replace(
            "discovery = { dns = \"a.internal:80\", resolvers = [\"127.0.0.1:9\"] }\n",
            "",
        );
        std::fs::write(&fixture.path, &without).unwrap();
        reloader.reload_file().await.unwrap();
        assert_eq!(
            endpoints(reloader, "a"),
            [
                active("127.0.0.1:1001"),
                active("127.0.0.1:1002"),
                active("127.0.0.3:80")
            ]
        );

        // Gone with a request in flight: draining until it finishes.
        let registered =
            Arc::clone(&reloader.topology.load().pool("a").unwrap().endpoints().all[2]);
        let in_flight = registered.start();
        reloader
            .set_found(vec![found("a", Source::Registration, &[])])
            .await
            .unwrap();
        assert_eq!(
            endpoints(reloader, "a")[2],
            ("127.0.0.3:80".to_string(), 1, Admin::Draining)
        );
        reloader.drop_drained().await.unwrap();
        assert_eq!(endpoints(reloader, "a").len(), 3);
        drop(in_flight);
        reloader.drop_drained().await.unwrap();
        assert_eq!(endpoints(reloader, "a").len(), 2);
    }
}
