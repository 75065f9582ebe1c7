//! What the host offers every plugin: log, clock, randomness, live load and
//! the current request's headers.
//!
//! In a built component these call into the host; natively they read the
//! [`crate::testing::TestHost`] of the current thread.

use crate::{EndpointId, Load};

/// How important a log line is.
///
/// ```
/// use switchyard_sdk::host::LogLevel;
/// assert!(LogLevel::Warn > LogLevel::Info);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something looks wrong.
    Warn,
    /// Something failed.
    Error,
}

/// Writes a line to the host's log, tagged with the plugin's name.
///
/// The host bounds it: a line is cut at `plugins.log_line_bytes` (1 KiB by
/// default), and a plugin's lines, every instance together, are limited to
/// `plugins.log_lines_per_second` (50); lines over the rate are dropped,
/// counted and summarised.
///
/// ```
/// use switchyard_sdk::host::{log, LogLevel};
/// log(LogLevel::Info, "configured with 3 endpoints");
/// ```
pub fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::__private::raw_log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::native::log(level, message);
}

/// Monotonic time in nanoseconds; only differences are meaningful.
///
/// ```
/// let before = switchyard_sdk::host::now_ns();
/// assert!(switchyard_sdk::host::now_ns() >= before);
/// ```
pub fn now_ns() -> u64 {
    #[cfg(target_arch = "wasm32")]
    return crate::__private::common::switchyard::plugin::host::now_ns();
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::native::now_ns();
}

/// A random number. In a built component it comes from a generator inside
/// the plugin (wyrand, as the host's own) seeded once from the host's
/// generator: a call into the host costs about as much as a whole
/// round-robin pick, and a power-of-two-choices pick needs two numbers.
///
/// ```
/// let a = switchyard_sdk::host::random_u64();
/// let b = switchyard_sdk::host::random_u64();
/// assert_ne!(a, b);
/// ```
pub fn random_u64() -> u64 {
    #[cfg(target_arch = "wasm32")]
    return guest_random::next();
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::native::random_u64();
}

#[cfg(target_arch = "wasm32")]
mod guest_random {
    use std::cell::Cell;

    std::thread_local! {
        static STATE: Cell<Option<u64>> = const { Cell::new(None) };
    }

    /// wyrand (Wang Yi), the generator of the `fastrand` crate the host uses.
    pub fn next() -> u64 {
        STATE.with(|state| {
            let seed = state.get().unwrap_or_else(|| {
                crate::__private::common::switchyard::plugin::host::random_u64()
            });
            let next = seed.wrapping_add(0xA076_1D64_78BD_642F);
            state.set(Some(next));
            let product = u128::from(next) * u128::from(next ^ 0xE703_7ED1_A0B4_28DB);
            ((product >> 64) as u64) ^ (product as u64)
        })
    }
}

/// A uniformly distributed number in `0..bound` (0 when `bound` is 0), by
/// Lemire's multiply-shift from one [`random_u64`], without division.
///
/// ```
/// let n = switchyard_sdk::host::random_below(10);
/// assert!(n < 10);
/// ```
pub fn random_below(bound: u32) -> u32 {
    ((random_u64() >> 32).wrapping_mul(u64::from(bound)) >> 32) as u32
}

/// The live load of an endpoint of the calling pool, or `None` for an id the
/// pool does not have. Constant time: ask for the few endpoints you sample.
///
/// ```
/// use switchyard_sdk::{host, testing::TestHost, Load};
/// let test_host = TestHost::new();
/// test_host.set_load(4, Load { in_flight: 2, ..Load::default() });
/// assert_eq!(host::load(4).unwrap().in_flight, 2);
/// assert_eq!(host::load(5), None);
/// ```
pub fn load(id: EndpointId) -> Option<Load> {
    #[cfg(target_arch = "wasm32")]
    return crate::__private::raw_load(id);
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::native::load(id);
}

/// [`load`] of two endpoints in one call into the host: what a
/// power-of-two-choices pick needs, at the cost of one load instead of two.
///
/// ```
/// use switchyard_sdk::{host, testing::TestHost, Load};
/// let test_host = TestHost::new();
/// test_host.set_load(1, Load { in_flight: 3, ..Load::default() });
/// test_host.set_load(2, Load { in_flight: 1, ..Load::default() });
/// let (a, b) = host::load_pair(1, 2);
/// assert_eq!((a.unwrap().in_flight, b.unwrap().in_flight), (3, 1));
/// assert_eq!(host::load_pair(1, 9).1, None);
/// ```
pub fn load_pair(first: EndpointId, second: EndpointId) -> (Option<Load>, Option<Load>) {
    #[cfg(target_arch = "wasm32")]
    return crate::__private::raw_load_pair(first, second);
    #[cfg(not(target_arch = "wasm32"))]
    return (
        crate::testing::native::load(first),
        crate::testing::native::load(second),
    );
}

/// A header of the request being placed, or `None` when absent or outside
/// `pick`. Names are case-insensitive; repeated headers are joined by `, `.
///
/// ```
/// use switchyard_sdk::{host, testing::TestHost};
/// let test_host = TestHost::new();
/// test_host.set_header("X-Tenant", "blue");
/// assert_eq!(host::request_header("x-tenant").as_deref(), Some("blue"));
/// ```
pub fn request_header(name: &str) -> Option<String> {
    #[cfg(target_arch = "wasm32")]
    return crate::__private::common::switchyard::plugin::host::request_header(name);
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::native::request_header(name);
}
