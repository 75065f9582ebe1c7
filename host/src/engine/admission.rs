//! Admission: how many requests a pool and each of its endpoints take at
//! once, and the queue, ordered by class then arrival, that holds the rest.
//!
//! A pool admits while it has room: its in-flight count under its limit
//! (`max_in_flight`, or the adaptive limit) and an eligible endpoint under
//! its `capacity`. Both are atomic counters taken with a compare-and-swap,
//! so a pool with room costs a request two atomic updates and no lock.
//!
//! Without room, a request joins the pool's queue (a lock taken only then)
//! and its task sleeps on its worker until woken. Each request that ends
//! wakes the most urgent waiter (lowest class, then earliest), which tries
//! again; while anyone waits, new arrivals queue too, so nobody jumps the
//! queue. A waiter is shed (503) when its class's wait runs out or when the
//! queue is full and it is the least urgent there. A waiter whose wait runs
//! out while a less urgent one is queued sheds that one instead and waits
//! on, so the lowest classes go first and a P0 is never shed while a lower
//! class waits.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::endpoint::{Endpoint, EndpointSet, InFlightGuard};
use super::histogram::ClassHistograms;
use super::Priority;

/// What limits a pool's requests in flight, and how its queue behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionSettings {
    /// The pool's maximum requests in flight; 0: no pool-wide maximum.
    pub max_in_flight: u32,
    /// Waiters at most; past this the least urgent is shed.
    pub queue_len: usize,
    /// How long each class may wait, P0 first.
    pub max_wait: [Duration; 5],
    /// What a shed request's `Retry-After` says, in seconds.
    pub retry_after_s: u32,
    /// The share of the pool's limit and of each endpoint's capacity, in
    /// percent, that P4 requests leave free for more urgent ones; P3 leave
    /// three quarters of it, P2 half, P1 a quarter, P0 none.
    pub reserve_percent: u32,
    /// A limit that follows latency, when set.
    pub adaptive: Option<AdaptiveSettings>,
}

impl Default for AdmissionSettings {
    fn default() -> Self {
        AdmissionSettings {
            max_in_flight: 0,
            queue_len: 1024,
            max_wait: [1000, 1000, 500, 250, 100].map(Duration::from_millis),
            retry_after_s: 1,
            reserve_percent: 10,
            adaptive: None,
        }
    }
}

/// The gradient controller's settings (Netflix concurrency-limits'
/// Gradient2).
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptiveSettings {
    /// The limit never goes below this.
    pub min_limit: u32,
    /// Nor above this.
    pub max_limit: u32,
    /// Where it starts.
    pub initial_limit: u32,
    /// How much slower than the long-run latency the recent latency may be
    /// before the limit shrinks: 1.5 tolerates half again.
    pub tolerance: f64,
    /// How far each adjustment moves toward its target, 0 to 1.
    pub smoothing: f64,
}

impl Default for AdaptiveSettings {
    fn default() -> Self {
        AdaptiveSettings {
            min_limit: 4,
            max_limit: 1000,
            initial_limit: 20,
            tolerance: 1.5,
            smoothing: 0.2,
        }
    }
}

/// Why a request was not started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotStarted {
    /// No endpoint is eligible: the pool cannot serve at all.
    NoEndpoint,
    /// Shed: there was no room within the class's wait, or the queue was
    /// full.
    Shed {
        /// What to tell the client.
        reason: String,
        /// The `Retry-After` to send, in seconds.
        retry_after_s: u32,
    },
}

/// Why a waiter was shed, for `switchyard_shed_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShedReason {
    /// The queue was full and the waiter the least urgent.
    QueueFull,
    /// Its class's wait ran out.
    Waited,
}

impl ShedReason {
    /// Every reason.
    pub const ALL: [ShedReason; 2] = [ShedReason::QueueFull, ShedReason::Waited];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            ShedReason::QueueFull => "queue_full",
            ShedReason::Waited => "wait",
        }
    }
}

/// What a waiter is told.
#[derive(Debug)]
enum Verdict {
    /// Room was freed: try again.
    Retry,
    /// Shed.
    Shed(ShedReason),
}

/// A pool's admission state. Kept across a reload that rebuilds the pool,
/// so its counts and its queue carry over.
#[derive(Debug)]
pub struct Admission {
    settings: Mutex<AdmissionSettings>,
    /// `reserve_percent`, read on the request path.
    reserve_percent: AtomicU32,
    /// The pool-wide maximum now: `max_in_flight` or the adaptive limit,
    /// whichever is lower; `u32::MAX` for none.
    limit: AtomicU32,
    in_flight: AtomicU32,
    waiting: AtomicUsize,
    queue: Mutex<Queue>,
    /// Latency samples since the controller last looked.
    window: LatencyWindow,
    adaptive: Mutex<Option<Gradient>>,
    /// Whether `adaptive` is set: outcomes are sampled only then.
    adaptive_on: AtomicBool,
    queued_total: [AtomicU64; 5],
    shed_total: [[AtomicU64; 2]; 5],
    /// How long queued requests waited, by class.
    pub queue_wait: ClassHistograms,
}

#[derive(Debug, Default)]
struct Queue {
    /// By class then arrival: the first is the most urgent.
    waiters: BTreeMap<(Priority, u64), oneshot::Sender<Verdict>>,
    next_arrival: u64,
}

#[derive(Debug, Default)]
struct LatencyWindow {
    sum_ns: AtomicU64,
    samples: AtomicU64,
    /// The most in flight at once since the controller last looked.
    peak_in_flight: AtomicU32,
}

/// A copy of a pool's admission figures, for the API and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct AdmissionView {
    /// Requests in flight in the pool.
    pub in_flight: u32,
    /// The pool-wide limit now; `None` when only endpoints' capacities
    /// limit it.
    pub limit: Option<u32>,
    /// Requests waiting in the queue.
    pub queued: usize,
}

impl Admission {
    /// Admission with these settings.
    pub fn new(settings: AdmissionSettings) -> Arc<Self> {
        let admission = Arc::new(Admission {
            settings: Mutex::new(settings.clone()),
            reserve_percent: AtomicU32::new(0),
            limit: AtomicU32::new(u32::MAX),
            in_flight: AtomicU32::new(0),
            waiting: AtomicUsize::new(0),
            queue: Mutex::default(),
            window: LatencyWindow::default(),
            adaptive: Mutex::new(None),
            adaptive_on: AtomicBool::new(false),
            queued_total: Default::default(),
            shed_total: Default::default(),
            queue_wait: ClassHistograms::default(),
        });
        admission.configure(settings);
        admission
    }

    /// Takes new settings (a reload): the counts and the queue stay, and
    /// waiters try again under the new limits.
    pub fn configure(&self, settings: AdmissionSettings) {
        {
            let mut adaptive = lock(&self.adaptive);
            *adaptive = match (&settings.adaptive, adaptive.take()) {
                (Some(wanted), Some(mut running)) => {
                    running.settings = wanted.clone();
                    running.limit = running
                        .limit
                        .clamp(f64::from(wanted.min_limit), f64::from(wanted.max_limit));
                    Some(running)
                }
                (Some(wanted), None) => Some(Gradient::new(wanted.clone())),
                (None, _) => None,
            };
            self.limit.store(
                effective_limit(settings.max_in_flight, adaptive.as_ref()),
                Ordering::Relaxed,
            );
            self.adaptive_on
                .store(adaptive.is_some(), Ordering::Relaxed);
        }
        self.reserve_percent
            .store(settings.reserve_percent.min(100), Ordering::Relaxed);
        *lock(&self.settings) = settings;
        self.wake(usize::MAX);
    }

    /// The settings in force.
    pub fn settings(&self) -> AdmissionSettings {
        lock(&self.settings).clone()
    }

    /// Starts a request on `picked`, or on the least loaded eligible
    /// endpoint with room when `picked` has none. `None`: no room, or
    /// others are queued ahead (`queued` says the caller is a waiter that
    /// was woken, which may go ahead).
    pub fn try_start(
        self: &Arc<Self>,
        set: &EndpointSet,
        picked: &Arc<Endpoint>,
        class: Priority,
        queued: bool,
    ) -> Option<InFlightGuard> {
        if !queued && self.waiting.load(Ordering::Acquire) > 0 {
            return None;
        }
        let reserve = self.reserve_percent.load(Ordering::Relaxed);
        let limit = class_share(self.limit.load(Ordering::Relaxed), class, reserve);
        let taken = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |now| {
                (now < limit).then_some(now + 1)
            });
        let Ok(before) = taken else {
            return None;
        };
        if self.adaptive_on.load(Ordering::Relaxed) {
            self.window
                .peak_in_flight
                .fetch_max(before + 1, Ordering::Relaxed);
        }
        let capacity = class_share(picked.capacity, class, reserve);
        let endpoint = if picked.stats.try_begin(capacity) {
            Arc::clone(picked)
        } else {
            match least_loaded_with_room(set, picked, class, reserve) {
                Some(endpoint) => endpoint,
                None => {
                    self.in_flight.fetch_sub(1, Ordering::AcqRel);
                    return None;
                }
            }
        };
        Some(InFlightGuard::admitted(endpoint, Arc::clone(self)))
    }

    /// Whether a request of `class` could start now, ignoring the queue.
    fn has_room(&self, set: &EndpointSet, class: Priority) -> bool {
        let reserve = self.reserve_percent.load(Ordering::Relaxed);
        let limit = class_share(self.limit.load(Ordering::Relaxed), class, reserve);
        self.in_flight.load(Ordering::Acquire) < limit
            && set.eligible.iter().any(|&id| {
                set.get(id)
                    .is_some_and(|e| has_room(e, class_share(e.capacity, class, reserve)))
            })
    }

    /// Ends a request started by `try_start`: called by its guard. The
    /// most urgent waiter is woken; if its class may not use the room, it
    /// queues again in its place and nobody less urgent could use it either.
    pub(super) fn release(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        if self.waiting.load(Ordering::Acquire) > 0 {
            self.wake(1);
        }
    }

    /// Wakes the most urgent waiter if a request of its class could start.
    /// A class that must leave the room free for more urgent ones is not
    /// woken for it.
    fn wake_if_room(&self, set: &EndpointSet) {
        let mut queue = lock(&self.queue);
        while let Some(entry) = queue.waiters.first_entry() {
            if !self.has_room(set, entry.key().0) {
                return;
            }
            let waiter = entry.remove();
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            if waiter.send(Verdict::Retry).is_ok() {
                return;
            }
        }
    }

    /// Wakes up to `count` of the most urgent waiters.
    fn wake(&self, count: usize) {
        let mut queue = lock(&self.queue);
        let mut woken = 0;
        while woken < count {
            let Some((_, waiter)) = queue.waiters.pop_first() else {
                break;
            };
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            // A waiter that went away cannot use the room: the next can.
            if waiter.send(Verdict::Retry).is_ok() {
                woken += 1;
            }
        }
    }

    /// Puts a request in the queue, at `place` if it held one before.
    fn enqueue(
        &self,
        class: Priority,
        place: Option<u64>,
        queue_len: usize,
    ) -> Result<(u64, oneshot::Receiver<Verdict>), ShedReason> {
        let mut queue = lock(&self.queue);
        if queue.waiters.len() >= queue_len {
            // The least urgent makes room, unless that is this request.
            let last = queue.waiters.last_key_value().map(|(key, _)| *key);
            match last {
                Some(last) if last.0 > class => {
                    if let Some(shed) = queue.waiters.remove(&last) {
                        self.waiting.fetch_sub(1, Ordering::AcqRel);
                        self.count_shed(last.0, ShedReason::QueueFull);
                        let _ = shed.send(Verdict::Shed(ShedReason::QueueFull));
                    }
                }
                _ => return Err(ShedReason::QueueFull),
            }
        }
        let arrival = place.unwrap_or_else(|| {
            queue.next_arrival += 1;
            queue.next_arrival
        });
        let (wake, woken) = oneshot::channel();
        queue.waiters.insert((class, arrival), wake);
        self.waiting.fetch_add(1, Ordering::AcqRel);
        Ok((arrival, woken))
    }

    /// Takes a waiter out of the queue. `false`: it was no longer there
    /// (woken or shed meanwhile).
    fn leave(&self, key: (Priority, u64)) -> bool {
        let removed = lock(&self.queue).waiters.remove(&key).is_some();
        if removed {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
        }
        removed
    }

    /// A waiter of `class` whose wait ran out: sheds the least urgent waiter
    /// of a lower class in its stead, if there is one (`true`).
    fn shed_lower_than(&self, class: Priority) -> bool {
        let mut queue = lock(&self.queue);
        let Some(last) = queue.waiters.last_key_value().map(|(key, _)| *key) else {
            return false;
        };
        if last.0 <= class {
            return false;
        }
        if let Some(shed) = queue.waiters.remove(&last) {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            self.count_shed(last.0, ShedReason::Waited);
            let _ = shed.send(Verdict::Shed(ShedReason::Waited));
        }
        true
    }

    fn count_shed(&self, class: Priority, reason: ShedReason) {
        self.shed_total[class as usize][reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one outcome's latency for the adaptive limit.
    pub fn sample(&self, latency_ns: u64) {
        if !self.adaptive_on.load(Ordering::Relaxed) {
            return;
        }
        self.window.sum_ns.fetch_add(latency_ns, Ordering::Relaxed);
        self.window.samples.fetch_add(1, Ordering::Relaxed);
    }

    /// Moves the adaptive limit by the latency seen since the last call;
    /// called by the ticker every 100 ms. Does nothing for a fixed limit.
    pub fn adjust(&self) {
        if !self.adaptive_on.load(Ordering::Relaxed) {
            return;
        }
        let mut adaptive = lock(&self.adaptive);
        let Some(gradient) = adaptive.as_mut() else {
            return;
        };
        let samples = self.window.samples.load(Ordering::Relaxed);
        if samples < MIN_SAMPLES {
            return;
        }
        let sum_ns = self.window.sum_ns.swap(0, Ordering::Relaxed);
        self.window.samples.fetch_sub(samples, Ordering::Relaxed);
        let peak = self
            .window
            .peak_in_flight
            .swap(self.in_flight.load(Ordering::Relaxed), Ordering::Relaxed);
        let before = gradient.limit;
        gradient.observe(sum_ns as f64 / samples as f64, peak);
        let max_in_flight = lock(&self.settings).max_in_flight;
        self.limit.store(
            effective_limit(max_in_flight, Some(gradient)),
            Ordering::Relaxed,
        );
        if gradient.limit > before {
            self.wake((gradient.limit - before).ceil() as usize);
        }
    }

    /// The figures now.
    pub fn view(&self) -> AdmissionView {
        let limit = self.limit.load(Ordering::Relaxed);
        AdmissionView {
            in_flight: self.in_flight.load(Ordering::Relaxed),
            limit: (limit != u32::MAX).then_some(limit),
            queued: self.waiting.load(Ordering::Relaxed),
        }
    }

    /// Requests that waited in the queue, by class.
    pub fn queued_total(&self, class: Priority) -> u64 {
        self.queued_total[class as usize].load(Ordering::Relaxed)
    }

    /// Requests shed, by class and reason.
    pub fn shed_total(&self, class: Priority, reason: ShedReason) -> u64 {
        self.shed_total[class as usize][reason as usize].load(Ordering::Relaxed)
    }

    /// Waits in the queue until the request starts, is shed, or `deadline`
    /// (the request's own) passes. `pick` asks the pool's balancer again
    /// each time room is freed; `set` gives the pool's endpoints now.
    pub async fn wait_for_room(
        self: &Arc<Self>,
        class: Priority,
        deadline: Instant,
        set: impl Fn() -> Arc<EndpointSet>,
        mut pick: impl FnMut() -> Option<Arc<Endpoint>>,
    ) -> Result<InFlightGuard, NotStarted> {
        let (queue_len, class_wait, retry_after_s) = {
            let settings = lock(&self.settings);
            (
                settings.queue_len,
                settings.max_wait[class as usize],
                settings.retry_after_s,
            )
        };
        let shed = |reason: ShedReason| {
            let reason = match reason {
                ShedReason::QueueFull => format!("shed: the queue is full ({queue_len} waiting)"),
                ShedReason::Waited => format!(
                    "shed: no room within the {} ms a {} request may wait",
                    class_wait.as_millis(),
                    class.name()
                ),
            };
            NotStarted::Shed {
                reason,
                retry_after_s,
            }
        };
        let arrived = Instant::now();
        let mut wait_until = (arrived + class_wait).min(deadline);
        self.queued_total[class as usize].fetch_add(1, Ordering::Relaxed);
        let mut place = None;
        loop {
            let (arrival, woken) = match self.enqueue(class, place, queue_len) {
                Ok(entered) => entered,
                Err(reason) => {
                    self.count_shed(class, reason);
                    return Err(shed(reason));
                }
            };
            place = Some(arrival);
            let mut ticket = Ticket {
                admission: self,
                key: (class, arrival),
                woken: Some(woken),
            };
            // Room freed between the failed try and joining the queue woke
            // nobody: wake the most urgent now, if it can use it.
            self.wake_if_room(&set());
            let verdict = loop {
                let woken = ticket.woken.as_mut().expect("not yet taken");
                match tokio::time::timeout_at(wait_until.into(), woken).await {
                    Ok(Ok(verdict)) => break verdict,
                    // The sender is dropped only with the queue's entry.
                    Ok(Err(_)) => break Verdict::Retry,
                    Err(_elapsed) => {
                        let now = Instant::now();
                        if now < deadline && self.shed_lower_than(class) {
                            wait_until = (now + class_wait).min(deadline);
                            continue;
                        }
                        if self.leave(ticket.key) {
                            ticket.woken = None;
                            self.count_shed(class, ShedReason::Waited);
                            return Err(shed(ShedReason::Waited));
                        }
                        // Woken or shed just now: the verdict is on its way.
                        wait_until = now + Duration::from_secs(1);
                    }
                }
            };
            ticket.woken = None;
            match verdict {
                Verdict::Shed(reason) => return Err(shed(reason)),
                Verdict::Retry => {
                    let Some(picked) = pick() else {
                        // The next waiter learns the same at once rather
                        // than at the end of its wait.
                        self.wake(1);
                        return Err(NotStarted::NoEndpoint);
                    };
                    if let Some(guard) = self.try_start(&set(), &picked, class, true) {
                        self.queue_wait.observe(class, arrived.elapsed());
                        return Ok(guard);
                    }
                }
            }
        }
    }
}

/// Below this many outcomes in a tick, the controller waits for more.
const MIN_SAMPLES: u64 = 10;

/// A place in the queue. Dropped with its request (the client went away,
/// the request's deadline passed): it leaves the queue, and a wake it was
/// sent goes on to the next waiter.
struct Ticket<'a> {
    admission: &'a Admission,
    key: (Priority, u64),
    /// Until a verdict is taken.
    woken: Option<oneshot::Receiver<Verdict>>,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let Some(mut woken) = self.woken.take() else {
            return;
        };
        if self.admission.leave(self.key) {
            return;
        }
        if let Ok(Verdict::Retry) = woken.try_recv() {
            self.admission.wake(1);
        }
    }
}

/// Whether `endpoint` has room under `capacity` (0: unlimited).
fn has_room(endpoint: &Endpoint, capacity: u32) -> bool {
    capacity == 0 || endpoint.stats.in_flight() < capacity
}

/// What of `limit` a request of `class` may use: all but its class's part
/// of the reserve (`reserve_percent` of it for P4, none for P0), and at
/// least 1. 0 and `u32::MAX` (no limit) stay as they are.
fn class_share(limit: u32, class: Priority, reserve_percent: u32) -> u32 {
    if limit == 0 || limit == u32::MAX {
        return limit;
    }
    let kept = u64::from(limit) * u64::from(reserve_percent) * class as u64 / 400;
    (limit - kept as u32).max(1)
}

/// The least loaded eligible endpoint other than `skip` with room for a
/// request of `class`, with the request started.
fn least_loaded_with_room(
    set: &EndpointSet,
    skip: &Endpoint,
    class: Priority,
    reserve: u32,
) -> Option<Arc<Endpoint>> {
    // Least loaded by share of capacity (unlimited ones by count), found by
    // a scan rather than a sorted copy: this runs on the request path
    // whenever the picked endpoint is full. Another worker may take the
    // room first; then the next scan finds what is left.
    let load = |e: &Endpoint| match e.capacity {
        0 => u64::from(e.stats.in_flight()),
        capacity => u64::from(e.stats.in_flight()) * 1000 / u64::from(capacity),
    };
    for _ in 0..set.eligible.len() {
        let least = set
            .eligible
            .iter()
            .filter_map(|&id| set.get(id))
            .filter(|e| e.id != skip.id && has_room(e, class_share(e.capacity, class, reserve)))
            .min_by_key(|e| load(e))?;
        if least
            .stats
            .try_begin(class_share(least.capacity, class, reserve))
        {
            return Some(Arc::clone(least));
        }
    }
    None
}

fn effective_limit(max_in_flight: u32, adaptive: Option<&Gradient>) -> u32 {
    let fixed = if max_in_flight == 0 {
        u32::MAX
    } else {
        max_in_flight
    };
    match adaptive {
        Some(gradient) => fixed.min(gradient.limit.round() as u32),
        None => fixed,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A gradient controller in the manner of Envoy's adaptive concurrency
/// filter (after Netflix concurrency-limits' Gradient2): the limit is
/// scaled by how the recent latency compares with the backend's latency
/// unloaded (`tolerance` of slowdown allowed), plus a headroom of √limit so
/// it probes upward, and smoothed. The unloaded latency is measured as
/// Envoy does, by holding the limit at `min_limit` for a moment at start
/// and every `PROBE_EVERY` ticks; a long-run average instead would follow
/// the latency up as the limit grows and let it drift without bound.
#[derive(Debug)]
struct Gradient {
    settings: AdaptiveSettings,
    limit: f64,
    /// The latency with `min_limit` in flight, in ns; lowered by any
    /// faster tick.
    floor_ns: Option<f64>,
    /// While measuring the floor: the limit to go back to, and the ticks
    /// left (the first lets the requests admitted before it finish).
    probe: Option<(f64, u32)>,
    ticks_since_probe: u32,
}

/// Ticks between measurements of the unloaded latency (100 ms each: 60 s,
/// Envoy's default).
const PROBE_EVERY: u32 = 600;

impl Gradient {
    fn new(settings: AdaptiveSettings) -> Self {
        let limit = f64::from(settings.initial_limit)
            .clamp(f64::from(settings.min_limit), f64::from(settings.max_limit));
        Gradient {
            settings,
            limit,
            floor_ns: None,
            probe: None,
            ticks_since_probe: 0,
        }
    }

    /// One tick: `short_ns`, the mean latency since the last; `peak`, the
    /// most in flight at once meanwhile.
    fn observe(&mut self, short_ns: f64, peak: u32) {
        let min = f64::from(self.settings.min_limit);
        let max = f64::from(self.settings.max_limit);
        match self.probe {
            Some((restore, 2)) => {
                self.probe = Some((restore, 1));
                return;
            }
            Some((restore, _)) => {
                self.floor_ns = Some(short_ns);
                self.limit = restore.clamp(min, max);
                self.probe = None;
                self.ticks_since_probe = 0;
                return;
            }
            None => {}
        }
        self.ticks_since_probe += 1;
        let floor = match self.floor_ns {
            Some(floor) if self.ticks_since_probe < PROBE_EVERY => floor.min(short_ns),
            _ => {
                self.probe = Some((self.limit, 2));
                self.limit = min;
                return;
            }
        };
        self.floor_ns = Some(floor);
        // Traffic far under the limit says nothing of what the backend
        // could take: the limit stays.
        if f64::from(peak) < self.limit / 2.0 {
            return;
        }
        let gradient = (self.settings.tolerance * floor / short_ns).clamp(0.5, 1.0);
        let target = self.limit * gradient + self.limit.sqrt();
        let smoothing = self.settings.smoothing.clamp(0.0, 1.0);
        self.limit = (self.limit * (1.0 - smoothing) + target * smoothing).clamp(min, max);
    }
}

#[cfg(test)]
#[path = "admission_tests.rs"]
mod tests;
