//! A stand-in for the host, so a plugin's logic is unit-tested natively with
//! `cargo test`.
//!
//! [`TestHost::new`] gives the current thread a fresh host (each test runs on
//! its own thread); the [`crate::host`] and [`crate::probe`] functions then
//! read it. Helpers drive a [`Balancer`] the way the host would.
//!
//! ```
//! use switchyard_sdk::testing::{endpoints, pick_counts, TestHost};
//! use switchyard_sdk::{Balancer, Endpoint, EndpointId, RequestInfo};
//!
//! struct First(Vec<EndpointId>);
//! impl Balancer for First {
//!     fn configure(_: &str) -> Result<Self, String> { Ok(First(vec![])) }
//!     fn set_endpoints(&mut self, e: Vec<Endpoint>) { self.0 = e.iter().map(|e| e.id).collect(); }
//!     fn pick(&mut self, _: &RequestInfo) -> Option<EndpointId> { self.0.first().copied() }
//! }
//!
//! let _host = TestHost::new();
//! let mut balancer = First::configure("{}").unwrap();
//! balancer.set_endpoints(endpoints(3));
//! let counts = pick_counts(&mut balancer, 100, &RequestInfo::default());
//! assert_eq!(counts[0], 100);
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use crate::host::LogLevel;
use crate::probe::{HttpRequest, HttpResponse, ProbeError};
use crate::{Balancer, Endpoint, EndpointId, Load, RequestInfo};

type HttpHandler = Rc<dyn Fn(&HttpRequest) -> Result<HttpResponse, ProbeError>>;
type TcpHandler = Rc<dyn Fn(u32) -> Result<u32, ProbeError>>;

struct State {
    loads: HashMap<EndpointId, Load>,
    headers: HashMap<String, String>,
    now_ns: u64,
    rng: u64,
    logs: Vec<(LogLevel, String)>,
    http: Option<HttpHandler>,
    tcp: Option<TcpHandler>,
    store: HashMap<(Option<EndpointId>, String), i64>,
    store_entries: usize,
}

/// The host's default `plugins.store_entries`.
const STORE_ENTRIES: usize = 4096;

impl Default for State {
    fn default() -> Self {
        State {
            loads: HashMap::new(),
            headers: HashMap::new(),
            now_ns: 1_000_000_000,
            rng: 0x9E37_79B9_7F4A_7C15,
            logs: Vec::new(),
            http: None,
            tcp: None,
            store: HashMap::new(),
            store_entries: STORE_ENTRIES,
        }
    }
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(|state| f(&mut state.borrow_mut()))
}

/// The current thread's stand-in host. Setting values through it changes
/// what [`crate::host`] and [`crate::probe`] return on this thread.
///
/// ```
/// use std::time::Duration;
/// use switchyard_sdk::{host, testing::TestHost};
/// let test_host = TestHost::new();
/// let start = host::now_ns();
/// test_host.advance(Duration::from_millis(5));
/// assert_eq!(host::now_ns() - start, 5_000_000);
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct TestHost;

impl TestHost {
    /// Resets this thread's host: no loads, no headers, a fixed clock and a
    /// fixed random seed, no probe handlers (probes answer `Refused`).
    ///
    /// ```
    /// let _host = switchyard_sdk::testing::TestHost::new();
    /// assert_eq!(switchyard_sdk::host::load(0), None);
    /// ```
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        with(|state| *state = State::default());
        TestHost
    }

    /// Sets the load [`crate::host::load`] reports for `id`.
    ///
    /// ```
    /// use switchyard_sdk::{host, testing::TestHost, Load};
    /// let test_host = TestHost::new();
    /// test_host.set_load(1, Load { ewma_latency_us: 800, ..Load::default() });
    /// assert_eq!(host::load(1).unwrap().ewma_latency_us, 800);
    /// ```
    pub fn set_load(&self, id: EndpointId, load: Load) {
        with(|state| state.loads.insert(id, load));
    }

    /// Sets a header of the current request (names are case-insensitive).
    ///
    /// ```
    /// use switchyard_sdk::{host, testing::TestHost};
    /// let test_host = TestHost::new();
    /// test_host.set_header("Cookie", "session=7");
    /// assert!(host::request_header("cookie").is_some());
    /// ```
    pub fn set_header(&self, name: &str, value: &str) {
        with(|state| {
            state
                .headers
                .insert(name.to_ascii_lowercase(), value.to_string())
        });
    }

    /// Removes every header of the current request.
    ///
    /// ```
    /// use switchyard_sdk::{host, testing::TestHost};
    /// let test_host = TestHost::new();
    /// test_host.set_header("a", "1");
    /// test_host.clear_headers();
    /// assert_eq!(host::request_header("a"), None);
    /// ```
    pub fn clear_headers(&self) {
        with(|state| state.headers.clear());
    }

    /// Moves the clock forward.
    ///
    /// ```
    /// use std::time::Duration;
    /// let test_host = switchyard_sdk::testing::TestHost::new();
    /// test_host.advance(Duration::from_secs(1));
    /// ```
    pub fn advance(&self, by: Duration) {
        with(|state| state.now_ns += by.as_nanos() as u64);
    }

    /// Seeds the random generator, for reproducible runs.
    ///
    /// ```
    /// use switchyard_sdk::{host, testing::TestHost};
    /// let test_host = TestHost::new();
    /// test_host.seed(7);
    /// let a = host::random_u64();
    /// test_host.seed(7);
    /// assert_eq!(host::random_u64(), a);
    /// ```
    pub fn seed(&self, seed: u64) {
        with(|state| state.rng = seed | 1);
    }

    /// Answers [`crate::probe::http`] with `handler`.
    ///
    /// ```
    /// use switchyard_sdk::{probe, testing::TestHost};
    /// let test_host = TestHost::new();
    /// test_host.on_http(|_| Err(probe::ProbeError::Timeout));
    /// assert_eq!(probe::http(&probe::HttpRequest::get("/")), Err(probe::ProbeError::Timeout));
    /// ```
    pub fn on_http(
        &self,
        handler: impl Fn(&HttpRequest) -> Result<HttpResponse, ProbeError> + 'static,
    ) {
        with(|state| state.http = Some(Rc::new(handler)));
    }

    /// Answers [`crate::probe::tcp_connect`] with `handler`, given the timeout.
    ///
    /// ```
    /// use switchyard_sdk::{probe, testing::TestHost};
    /// let test_host = TestHost::new();
    /// test_host.on_tcp_connect(|_| Ok(120));
    /// assert_eq!(probe::tcp_connect(500), Ok(120));
    /// ```
    pub fn on_tcp_connect(&self, handler: impl Fn(u32) -> Result<u32, ProbeError> + 'static) {
        with(|state| state.tcp = Some(Rc::new(handler)));
    }

    /// Bounds the store ([`crate::store`]) to `entries`, as the host's
    /// `plugins.store_entries` does (4096 unless set).
    ///
    /// ```
    /// use switchyard_sdk::{store, testing::TestHost};
    /// let test_host = TestHost::new();
    /// test_host.set_store_entries(1);
    /// store::add(None, "a", 1).unwrap();
    /// assert_eq!(store::add(None, "b", 1), Err(store::StoreError::Full));
    /// ```
    pub fn set_store_entries(&self, entries: usize) {
        with(|state| state.store_entries = entries);
    }

    /// How many entries the store ([`crate::store`]) holds.
    ///
    /// ```
    /// use switchyard_sdk::{store, testing::TestHost};
    /// let test_host = TestHost::new();
    /// store::add(Some(1), "run", 1).unwrap();
    /// assert_eq!(test_host.store_len(), 1);
    /// ```
    pub fn store_len(&self) -> usize {
        with(|state| state.store.len())
    }

    /// The lines logged so far through [`crate::host::log`].
    ///
    /// ```
    /// use switchyard_sdk::{host, testing::TestHost};
    /// let test_host = TestHost::new();
    /// host::log(host::LogLevel::Warn, "odd");
    /// assert_eq!(test_host.logs(), vec![(host::LogLevel::Warn, "odd".to_string())]);
    /// ```
    pub fn logs(&self) -> Vec<(LogLevel, String)> {
        with(|state| state.logs.clone())
    }
}

/// `count` endpoints with ids `0..count`, weight 1, at `10.0.0.{id}:80`.
///
/// ```
/// let endpoints = switchyard_sdk::testing::endpoints(3);
/// assert_eq!(endpoints[2].address, "10.0.0.2:80");
/// ```
pub fn endpoints(count: u32) -> Vec<Endpoint> {
    (0..count)
        .map(|id| Endpoint::new(id, format!("10.0.0.{id}:80")))
        .collect()
}

/// Calls `pick` `times` times and counts how often each id came back, as a
/// vector indexed by id (declined picks are not counted).
///
/// ```
/// # use switchyard_sdk::{Balancer, Endpoint, EndpointId, RequestInfo};
/// # struct Second;
/// # impl Balancer for Second {
/// #     fn configure(_: &str) -> Result<Self, String> { Ok(Second) }
/// #     fn set_endpoints(&mut self, _: Vec<Endpoint>) {}
/// #     fn pick(&mut self, _: &RequestInfo) -> Option<EndpointId> { Some(1) }
/// # }
/// let counts = switchyard_sdk::testing::pick_counts(&mut Second, 10, &RequestInfo::default());
/// assert_eq!(counts, vec![0, 10]);
/// ```
pub fn pick_counts<B: Balancer>(
    balancer: &mut B,
    times: usize,
    request: &RequestInfo,
) -> Vec<usize> {
    let mut counts = Vec::new();
    for _ in 0..times {
        if let Some(id) = balancer.pick(request) {
            let index = id as usize;
            if counts.len() <= index {
                counts.resize(index + 1, 0);
            }
            counts[index] += 1;
        }
    }
    counts
}

/// The native side of [`crate::host`] and [`crate::probe`].
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod native {
    use super::*;

    /// The host's default `plugins.store_name_bytes`.
    const STORE_NAME_BYTES: usize = 64;

    pub fn log(level: LogLevel, message: &str) {
        with(|state| state.logs.push((level, message.to_string())));
    }

    pub fn now_ns() -> u64 {
        with(|state| state.now_ns)
    }

    /// splitmix64: tiny, fast, and good enough for tests.
    pub fn random_u64() -> u64 {
        with(|state| {
            state.rng = state.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state.rng;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        })
    }

    pub fn load(id: EndpointId) -> Option<Load> {
        with(|state| state.loads.get(&id).copied())
    }

    pub fn request_header(name: &str) -> Option<String> {
        with(|state| state.headers.get(&name.to_ascii_lowercase()).cloned())
    }

    fn store_entry<'s>(
        state: &'s mut State,
        endpoint: Option<EndpointId>,
        name: &str,
    ) -> Result<&'s mut i64, crate::store::StoreError> {
        use crate::store::StoreError;
        if name.is_empty() || name.len() > STORE_NAME_BYTES {
            return Err(StoreError::BadName);
        }
        let key = (endpoint, name.to_string());
        if !state.store.contains_key(&key) && state.store.len() >= state.store_entries {
            return Err(StoreError::Full);
        }
        Ok(state.store.entry(key).or_insert(0))
    }

    pub fn store_get(endpoint: Option<EndpointId>, name: &str) -> i64 {
        with(|state| {
            state
                .store
                .get(&(endpoint, name.to_string()))
                .copied()
                .unwrap_or(0)
        })
    }

    pub fn store_add(
        endpoint: Option<EndpointId>,
        name: &str,
        delta: i64,
    ) -> Result<i64, crate::store::StoreError> {
        with(|state| {
            let value = store_entry(state, endpoint, name)?;
            *value = value.wrapping_add(delta);
            Ok(*value)
        })
    }

    pub fn store_compare_and_swap(
        endpoint: Option<EndpointId>,
        name: &str,
        expected: i64,
        new: i64,
    ) -> Result<i64, crate::store::StoreError> {
        if expected != 0 && store_get(endpoint, name) == 0 {
            return Ok(0);
        }
        with(|state| {
            let value = store_entry(state, endpoint, name)?;
            let held = *value;
            if held == expected {
                *value = new;
            }
            Ok(held)
        })
    }

    pub fn http(request: &HttpRequest) -> Result<HttpResponse, ProbeError> {
        let handler = with(|state| state.http.clone());
        handler.map_or(Err(ProbeError::Refused), |handler| handler(request))
    }

    pub fn tcp_connect(timeout_ms: u32) -> Result<u32, ProbeError> {
        let handler = with(|state| state.tcp.clone());
        handler.map_or(Err(ProbeError::Refused), |handler| handler(timeout_ms))
    }
}
