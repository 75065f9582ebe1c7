//! What every plugin store carries: the plugin's identity, the pool data its
//! imports may read, and its sandbox (memory limiter, empty WASI context).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::log::LogOutput;
use crate::engine::EndpointSet;

/// Ticks a call may be extended while its thread is not actually running it
/// (descheduled on a busy machine) before it is cut off regardless.
pub const MAX_DESCHEDULED_TICKS: u32 = 100;

/// Judges a call's time budget by the CPU it consumed, not the wall clock,
/// so a pick that is merely preempted is not taken for a runaway loop.
///
/// Each call starts with an epoch deadline of its budget in ticks. When the
/// deadline passes, the thread's CPU clock is sampled and the deadline moved
/// one tick on, and so on at every later tick; once the call has consumed
/// half a tick of CPU since that first sample, it is interrupted. A looping
/// call is thus stopped about one tick after its budget; a preempted one is
/// extended, up to `MAX_DESCHEDULED_TICKS`. (CPU consumed, not CPU share:
/// the wasm thread may notice a tick late, so a window can be microseconds
/// long, in which any running thread shows full share.)
///
/// A health check's call is async: its future is polled on whichever
/// runtime thread is free and is idle while a probe waits. Its budget is
/// the time its future spent being polled (`PollMeter`), so a probe's wait
/// costs nothing; until that is spent the clock yields to the runtime once
/// a poll has run a whole tick. Past it, the rest is judged as above, on the
/// thread's CPU within one poll (not yielding, so the samples come from one
/// thread), since a poll's time also counts any preemption of its thread.
#[derive(Debug, Default)]
pub struct CallClock {
    first_sample: Option<Duration>,
    extensions: u32,
    /// An async call's budget of polled time.
    budget: Duration,
    /// The poll in which `first_sample` was taken (async calls).
    sample_poll: u64,
    /// The polled time of the async call under way.
    meter: Arc<PollMeter>,
    /// Whether the call under way is judged by `meter` (an async call run
    /// by `Metered::run`) rather than by one thread's CPU from the start.
    metered: bool,
    /// Set when the clock interrupted the call.
    pub interrupted: bool,
    /// CPU the call had used since its budget ran out, and the ticks it was
    /// given, when interrupted.
    pub overrun: Option<(Duration, u32)>,
}

impl CallClock {
    /// Resets the clock for a new call. Costs two stores: nothing is read
    /// from the kernel unless the call outlives its budget.
    pub fn begin(&mut self) {
        self.first_sample = None;
        self.extensions = 0;
        self.metered = false;
        self.interrupted = false;
        self.overrun = None;
    }

    /// Decides at an epoch deadline whether the call goes on (or, an async
    /// call, yields to the runtime first).
    pub fn on_deadline(&mut self) -> wasmtime::UpdateDeadline {
        if self.metered {
            return self.on_metered_deadline();
        }
        self.decide(thread_cpu_time())
    }

    fn on_metered_deadline(&mut self) -> wasmtime::UpdateDeadline {
        if self.meter.spent() < self.budget {
            return if self.meter.this_poll() >= super::EPOCH_TICK && !BLOCKED_ON.get() {
                // Tokio's own yield lets its timers and I/O run before the
                // call is polled again (a plain wake would not).
                wasmtime::UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
            } else {
                wasmtime::UpdateDeadline::Continue(1)
            };
        }
        let poll = self.meter.polls();
        if self.sample_poll != poll {
            self.sample_poll = poll;
            self.first_sample = None;
        }
        self.decide(thread_cpu_time())
    }

    /// The decision, given the thread's CPU clock now.
    fn decide(&mut self, cpu: Duration) -> wasmtime::UpdateDeadline {
        self.extensions += 1;
        let first = *self.first_sample.get_or_insert(cpu);
        let ran = cpu.saturating_sub(first);
        if ran * 2 >= super::EPOCH_TICK || self.extensions > MAX_DESCHEDULED_TICKS {
            self.interrupted = true;
            self.overrun = Some((ran, self.extensions));
            wasmtime::UpdateDeadline::Interrupt
        } else {
            wasmtime::UpdateDeadline::Continue(1)
        }
    }
}

/// The time an async call's future spent being polled: the guest running,
/// and the host's own work for it, never a wait on a probe. Shared by the
/// future's wrapper (`Metered::run`) and the store's clock, on whichever
/// thread polls it.
#[derive(Debug, Default)]
pub struct PollMeter {
    /// Nanoseconds in the polls that have returned.
    spent_ns: AtomicU64,
    /// When the poll under way began (`meter_now`); 0 between polls.
    began_ns: AtomicU64,
    /// Polls begun.
    polls: AtomicU64,
}

fn meter_now() -> u64 {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    (BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64).max(1)
}

impl PollMeter {
    fn reset(&self) {
        self.spent_ns.store(0, Ordering::Relaxed);
        self.began_ns.store(0, Ordering::Relaxed);
    }

    fn enter(&self) {
        self.polls.fetch_add(1, Ordering::Relaxed);
        self.began_ns.store(meter_now(), Ordering::Relaxed);
    }

    fn leave(&self) {
        let began = self.began_ns.swap(0, Ordering::Relaxed);
        if began != 0 {
            self.spent_ns
                .fetch_add(meter_now().saturating_sub(began), Ordering::Relaxed);
        }
    }

    /// The time of the poll under way so far.
    fn this_poll(&self) -> Duration {
        match self.began_ns.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            began => Duration::from_nanos(meter_now().saturating_sub(began)),
        }
    }

    /// Polled time in all, the poll under way included.
    fn spent(&self) -> Duration {
        Duration::from_nanos(self.spent_ns.load(Ordering::Relaxed)) + self.this_poll()
    }

    fn polls(&self) -> u64 {
        self.polls.load(Ordering::Relaxed)
    }
}

/// An async call under way: when it began, and its meter.
#[derive(Debug)]
pub struct Metered {
    /// When the call began, for the plugin's call timings.
    pub started: Instant,
    meter: Arc<PollMeter>,
}

impl Metered {
    /// Runs `call`, the call's future, counting the time it is polled.
    pub async fn run<F: std::future::Future>(&self, call: F) -> F::Output {
        let mut call = std::pin::pin!(call);
        std::future::poll_fn(|context| {
            self.meter.enter();
            let polled = call.as_mut().poll(context);
            self.meter.leave();
            polled
        })
        .await
    }
}

thread_local! {
    /// Set while `block_on` drives a future on this thread: a call then
    /// never yields, since a yield handed to a runtime this thread is
    /// blocking in would never be woken.
    static BLOCKED_ON: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `future` to completion on this thread. For the few calls into an
/// async store made where nothing is awaited but the guest (loading a file,
/// checking a pool's config): no probe is allowed there.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            BLOCKED_ON.set(self.0);
        }
    }
    let _restore = Restore(BLOCKED_ON.replace(true));
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}

fn thread_cpu_time() -> Duration {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
}

/// What a health check's probes may reach: the endpoint under check, until
/// the check's deadline.
#[derive(Debug, Clone)]
pub struct ProbeTarget {
    /// `host:port` of the endpoint under check.
    pub address: String,
    /// The check's deadline; every probe ends by then.
    pub deadline: Instant,
    /// How probes reach the endpoint: as the pool speaks to it.
    pub client: Arc<ProbeClient>,
}

/// The HTTP client probes use.
#[derive(Debug, Clone)]
pub enum ProbeClient {
    /// Plain HTTP/1.1: one kept-alive connection per endpoint.
    Pooled(
        Box<
            hyper_util::client::legacy::Client<
                hyper_util::client::legacy::connect::HttpConnector,
                http_body_util::Empty<bytes::Bytes>,
            >,
        >,
    ),
    /// TLS or HTTP/2, as the pool speaks to its endpoints: a new connection
    /// per probe (as HAProxy's checks open one).
    Dialed(crate::engine::UpstreamProtocol),
}

/// One of the host's plugin instances, held by the store that has it and
/// given back when the store is dropped.
#[derive(Debug)]
pub struct InstanceCount(Arc<AtomicU32>);

impl InstanceCount {
    /// One more of `live`, if that stays within `max`.
    pub fn take(live: &Arc<AtomicU32>, max: u32) -> Option<InstanceCount> {
        live.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| InstanceCount(Arc::clone(live)))
    }
}

impl Drop for InstanceCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The data of one plugin store.
pub struct StoreState {
    /// The instance count this store holds (none in tests that make stores
    /// by hand).
    pub count: Option<InstanceCount>,
    /// The plugin's name, for messages.
    pub plugin: Arc<str>,
    /// The plugin's log, bounded; shared by all its instances.
    pub log: Arc<super::log::PluginLog>,
    /// The pool's endpoints, for `endpoint-load`; `None` outside a pool.
    pub endpoints: Option<Arc<EndpointSet>>,
    /// The store of the pool being served (`switchyard:plugin/store`);
    /// `None` outside a pool.
    pub pool_store: Option<Arc<super::pool_store::PoolStore>>,
    /// The headers of the request being placed, lent for one `pick` call.
    pub headers: http::HeaderMap,
    /// The endpoint a health check may probe, during `check` only.
    pub probe: Option<ProbeTarget>,
    /// The host calls of a pick being recorded, with their answers.
    pub recording: Option<Vec<super::recording::HostCall>>,
    /// The answers to the host calls of a pick being replayed.
    pub replay: Option<Box<super::replay::ReplayFeed>>,
    /// Set when the memory cap refused a growth, to name the cause of the
    /// trap that follows.
    pub memory_refused: bool,
    /// The time budget of the call under way.
    pub clock: CallClock,
    /// Where the largest linear memory of the plugin's instances is kept
    /// (its slot's), if anywhere.
    pub memory_high: Option<Arc<AtomicU64>>,
    /// The linear memory at which the instance is replaced by a fresh one
    /// after its call (`usize::MAX`: never).
    pub recycle_at: usize,
    /// Calls the instance has served, for recycling.
    calls_served: u64,
    /// The linear memory of this store's instance, all its memories, in bytes.
    memory_bytes: usize,
    memory_limit: usize,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl std::fmt::Debug for StoreState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreState")
            .field("plugin", &self.plugin)
            .finish_non_exhaustive()
    }
}

impl StoreState {
    /// A store for `plugin` whose linear memory may grow to `memory_limit`
    /// bytes, writing its lines to `log`.
    pub fn new(plugin: Arc<str>, log: Arc<super::log::PluginLog>, memory_limit: usize) -> Self {
        let wasi = locked_down_wasi(&log);
        StoreState {
            count: None,
            plugin,
            log,
            endpoints: None,
            pool_store: None,
            headers: http::HeaderMap::new(),
            probe: None,
            recording: None,
            replay: None,
            memory_refused: false,
            clock: CallClock::default(),
            memory_high: None,
            recycle_at: usize::MAX,
            calls_served: 0,
            memory_bytes: 0,
            memory_limit,
            wasi,
            table: ResourceTable::new(),
        }
    }

    /// The linear memory this store's instance may grow to, in bytes.
    pub fn memory_limit(&self) -> usize {
        self.memory_limit
    }

    /// Counts a call the instance served; true when it has grown to where
    /// it is to be recycled. An instance serves at least
    /// `RECYCLE_AFTER_CALLS` calls first, so a plugin whose settled need is
    /// above the mark is renewed now and then rather than on every call.
    pub fn served_and_due_for_recycling(&mut self) -> bool {
        self.calls_served += 1;
        self.calls_served >= RECYCLE_AFTER_CALLS && self.memory_bytes >= self.recycle_at
    }

    /// The linear memory of the instance, all its memories, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.memory_bytes
    }
}

/// Calls an instance serves before it may be recycled for its memory.
pub const RECYCLE_AFTER_CALLS: u64 = 1000;

/// WASI with nothing in it: no files, no environment, no arguments, no
/// sockets, no stdin; the lines a guest prints go to the plugin's log.
/// Components built for wasm32-wasip2 link against it and load, but reach
/// nothing.
fn locked_down_wasi(log: &Arc<super::log::PluginLog>) -> WasiCtx {
    let mut builder = WasiCtxBuilder::new();
    builder
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .allow_blocking_current_thread(false)
        .stdout(LogOutput::new(Arc::clone(log), tracing::Level::INFO))
        .stderr(LogOutput::new(Arc::clone(log), tracing::Level::WARN));
    builder.build()
}

/// A store for `state` with the sandbox's limiter and CPU-time clock wired in.
pub fn new_store(engine: &wasmtime::Engine, state: StoreState) -> wasmtime::Store<StoreState> {
    let mut store = wasmtime::Store::new(engine, state);
    store.limiter(|state| state);
    store.epoch_deadline_callback(|mut context| Ok(context.data_mut().clock.on_deadline()));
    store
}

/// Points the store at the pool store being served (a pointer compare
/// when it already is).
pub fn serve_store(
    store: &mut wasmtime::Store<StoreState>,
    pool: &Arc<super::pool_store::PoolStore>,
) {
    let state = store.data_mut();
    if !state
        .pool_store
        .as_ref()
        .is_some_and(|current| Arc::ptr_eq(current, pool))
    {
        state.pool_store = Some(Arc::clone(pool));
    }
}

/// Starts the budget of one async call: `ticks` epoch ticks of polled time.
/// The call's future is to be run by the `Metered` returned. (An async call
/// driven by `block_on` may use `begin_call` instead: it stays on one
/// thread, whose CPU then judges it.)
pub fn begin_async_call(store: &mut wasmtime::Store<StoreState>, ticks: u64) -> Metered {
    let clock = &mut store.data_mut().clock;
    clock.begin();
    clock.metered = true;
    clock.budget = super::EPOCH_TICK * ticks.min(u64::from(u32::MAX)) as u32;
    clock.sample_poll = 0;
    clock.meter.reset();
    let meter = Arc::clone(&clock.meter);
    store.set_epoch_deadline(1);
    Metered {
        started: Instant::now(),
        meter,
    }
}

/// Starts the budget of one call of `ticks` epoch ticks; returns when it
/// started, for the plugin's call timings.
pub fn begin_call(store: &mut wasmtime::Store<StoreState>, ticks: u64) -> Instant {
    store.data_mut().clock.begin();
    store.set_epoch_deadline(ticks);
    Instant::now()
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmtime::ResourceLimiter for StoreState {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.memory_refused = true;
            return Ok(false);
        }
        // Also called as each memory is created (from 0), so the sum is the
        // instance's whole linear memory.
        self.memory_bytes += desired.saturating_sub(current);
        if let Some(high) = &self.memory_high {
            high.fetch_max(self.memory_bytes as u64, Ordering::Relaxed);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::UpdateDeadline;

    fn is_interrupt(decision: UpdateDeadline) -> bool {
        matches!(decision, UpdateDeadline::Interrupt)
    }

    #[test]
    fn a_call_that_keeps_running_is_interrupted_after_half_a_tick_more() {
        let mut clock = CallClock::default();
        clock.begin();
        let cpu = Duration::from_millis(10);
        assert!(!is_interrupt(clock.decide(cpu)));
        // A tick noticed late: microseconds of CPU since the sample.
        assert!(!is_interrupt(clock.decide(cpu + Duration::from_micros(80))));
        assert!(!clock.interrupted);
        assert!(is_interrupt(clock.decide(cpu + Duration::from_micros(600))));
        assert!(clock.interrupted);
    }

    #[test]
    fn a_descheduled_call_is_extended_until_the_cap() {
        let mut clock = CallClock::default();
        clock.begin();
        let cpu = Duration::from_millis(10);
        for tick in 0..MAX_DESCHEDULED_TICKS {
            // Barely any CPU consumed per tick: the thread was not running.
            let used = cpu + Duration::from_micros(u64::from(tick));
            assert!(!is_interrupt(clock.decide(used)), "tick {tick}");
        }
        assert!(is_interrupt(clock.decide(cpu + Duration::from_micros(100))));
        clock.begin();
        assert!(!clock.interrupted);
    }

    #[test]
    fn a_metered_call_is_charged_for_its_polls_not_the_waits_between() {
        let meter = PollMeter::default();
        meter.enter();
        std::thread::sleep(Duration::from_millis(3));
        meter.leave();
        // A probe's wait: the future is not being polled.
        std::thread::sleep(Duration::from_millis(30));
        meter.enter();
        let spent = meter.spent();
        assert!(spent >= Duration::from_millis(3), "{spent:?}");
        assert!(spent < Duration::from_millis(20), "{spent:?}");
        assert_eq!(meter.polls(), 2);
        meter.leave();
    }

    #[test]
    fn the_thread_cpu_clock_advances_while_working() {
        let before = thread_cpu_time();
        let mut x = 0u64;
        while thread_cpu_time() - before < Duration::from_millis(2) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(thread_cpu_time() > before);
    }
}
