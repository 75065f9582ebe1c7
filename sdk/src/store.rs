//! The store the host keeps for a pool: numbers shared by every instance of
//! the plugin that serves the pool (one per worker thread), kept across new
//! versions of the plugin.
//!
//! The host runs one instance of a plugin per worker thread, so what a
//! plugin keeps in `self` is seen by one worker only. What must be counted
//! across workers (a breaker's failure streak, a pool-wide budget) belongs
//! here. Each entry is an `i64` named by an optional endpoint and a name,
//! 0 until written; every operation is atomic. The store is bounded
//! (`plugins.store_entries`, 4096 by default; names up to
//! `plugins.store_name_bytes`, 64): a full store refuses new entries with
//! [`StoreError::Full`] and keeps serving the ones it has.
//!
//! Balancers and recovery policies have a store; health checks do not (the
//! calls answer [`StoreError::NoPool`] there). Natively, the
//! [`crate::testing::TestHost`] of the current thread stands in for it.
//!
//! ```
//! use switchyard_sdk::{store, testing::TestHost};
//! let _host = TestHost::new();
//! // Two workers' instances count into one entry.
//! store::add(Some(3), "failures", 1).unwrap();
//! store::add(Some(3), "failures", 1).unwrap();
//! assert_eq!(store::get(Some(3), "failures"), 2);
//! ```

use crate::EndpointId;

/// Why the store refused an operation.
///
/// ```
/// use switchyard_sdk::store::StoreError;
/// assert_eq!(StoreError::Full.to_string(), "the store is full");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreError {
    /// The store holds all the entries it may; the entry was not made.
    Full,
    /// The name is empty or longer than `plugins.store_name_bytes`.
    BadName,
    /// There is no store here: a health check, or a call that serves no
    /// pool.
    NoPool,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreError::Full => "the store is full",
            StoreError::BadName => "the name is empty or too long",
            StoreError::NoPool => "no store serves this call",
        })
    }
}

impl std::error::Error for StoreError {}

/// The entry's value; 0 if it was never written.
///
/// ```
/// use switchyard_sdk::{store, testing::TestHost};
/// let _host = TestHost::new();
/// assert_eq!(store::get(None, "never-written"), 0);
/// ```
pub fn get(endpoint: Option<EndpointId>, name: &str) -> i64 {
    #[cfg(target_arch = "wasm32")]
    return crate::__private::raw_store_get(endpoint, name);
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::native::store_get(endpoint, name);
}

/// Adds `delta` (wrapping) and answers the new value.
///
/// ```
/// use switchyard_sdk::{store, testing::TestHost};
/// let _host = TestHost::new();
/// assert_eq!(store::add(None, "in-use", 5), Ok(5));
/// assert_eq!(store::add(None, "in-use", -2), Ok(3));
/// ```
pub fn add(endpoint: Option<EndpointId>, name: &str, delta: i64) -> Result<i64, StoreError> {
    #[cfg(target_arch = "wasm32")]
    return crate::__private::raw_store_add(endpoint, name, delta);
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::native::store_add(endpoint, name, delta);
}

/// Sets the entry to `new` if it holds `expected`, and answers the value it
/// held: the swap happened if that is `expected`. Of several instances
/// racing to change the same value, exactly one wins.
///
/// ```
/// use switchyard_sdk::{store, testing::TestHost};
/// let _host = TestHost::new();
/// // Only the first claim of the trip wins.
/// assert_eq!(store::compare_and_swap(Some(1), "open-until", 0, 5_000), Ok(0));
/// assert_eq!(store::compare_and_swap(Some(1), "open-until", 0, 6_000), Ok(5_000));
/// ```
pub fn compare_and_swap(
    endpoint: Option<EndpointId>,
    name: &str,
    expected: i64,
    new: i64,
) -> Result<i64, StoreError> {
    #[cfg(target_arch = "wasm32")]
    return crate::__private::raw_store_compare_and_swap(endpoint, name, expected, new);
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::native::store_compare_and_swap(endpoint, name, expected, new);
}

/// Replaces the entry's value `v` with `change(v)` atomically, retrying
/// while another instance changes it first; answers the old and the new
/// value. `change` may run more than once.
///
/// ```
/// use switchyard_sdk::{store, testing::TestHost};
/// let _host = TestHost::new();
/// store::add(None, "peak", 7).unwrap();
/// let (old, new) = store::update(None, "peak", |peak| peak.max(4)).unwrap();
/// assert_eq!((old, new), (7, 7));
/// ```
pub fn update(
    endpoint: Option<EndpointId>,
    name: &str,
    mut change: impl FnMut(i64) -> i64,
) -> Result<(i64, i64), StoreError> {
    let mut current = get(endpoint, name);
    loop {
        let new = change(current);
        if new == current {
            return Ok((current, new));
        }
        let held = compare_and_swap(endpoint, name, current, new)?;
        if held == current {
            return Ok((current, new));
        }
        current = held;
    }
}
