//! What every plugin store carries: the plugin's identity, the pool data its
//! imports may read, and its sandbox (memory limiter, empty WASI context).

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::engine::EndpointSet;

/// Log lines a single instance may write per second; beyond it lines are
/// counted and dropped, so a chatty plugin cannot flood the host's log.
pub const LOG_LINES_PER_SECOND: u32 = 50;

/// The data of one plugin store.
pub struct StoreState {
    /// The plugin's name, for log lines.
    pub plugin: Arc<str>,
    /// The pool's endpoints, for `endpoint-load`; `None` outside a pool.
    pub endpoints: Option<Arc<EndpointSet>>,
    /// The headers of the request being placed, lent for one `pick` call.
    pub headers: http::HeaderMap,
    /// Set when the memory cap refused a growth, to name the cause of the
    /// trap that follows.
    pub memory_refused: bool,
    memory_limit: usize,
    log_window: Instant,
    log_lines: u32,
    /// Lines dropped by the log rate limit.
    pub log_dropped: u64,
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
    /// A store for `plugin` whose linear memory may grow to `memory_limit` bytes.
    pub fn new(plugin: Arc<str>, memory_limit: usize) -> Self {
        StoreState {
            plugin,
            endpoints: None,
            headers: http::HeaderMap::new(),
            memory_refused: false,
            memory_limit,
            log_window: Instant::now(),
            log_lines: 0,
            log_dropped: 0,
            wasi: locked_down_wasi(),
            table: ResourceTable::new(),
        }
    }

    /// Whether one more log line fits in this second's budget.
    pub fn take_log_budget(&mut self) -> bool {
        if self.log_window.elapsed().as_secs() >= 1 {
            self.log_window = Instant::now();
            self.log_lines = 0;
        }
        self.log_lines += 1;
        if self.log_lines > LOG_LINES_PER_SECOND {
            self.log_dropped += 1;
            return false;
        }
        true
    }
}

/// WASI with nothing in it: no files, no environment, no arguments, no
/// sockets, no stdin; output goes nowhere. Components built for wasm32-wasip2
/// link against it and load, but reach nothing.
fn locked_down_wasi() -> WasiCtx {
    let mut builder = WasiCtxBuilder::new();
    builder
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .allow_blocking_current_thread(false);
    builder.build()
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
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.memory_refused = true;
            return Ok(false);
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
