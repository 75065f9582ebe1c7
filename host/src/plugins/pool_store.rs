//! The store a plugin's instances share per pool (`switchyard:plugin/store`):
//! bounded, lock-free, owned by the pool's use of the plugin, not by a version.
//!
//! Each worker thread has its own instance of a plugin, so state that must
//! be counted across workers (a breaker's failure streak) cannot live in an
//! instance. The host keeps it instead, one `PoolStore` per pool and plugin,
//! held by the pool's `WasmBalancer` or `WasmRecovery`: it outlives plugin
//! versions (so it survives a swap) and goes with the pool.
//!
//! The entries are a `papaya` map of atomics: lookups never lock, values are
//! changed with atomic adds and compare-and-swaps, and a new entry is made by
//! one insertion, reserved first against the store's bound so a full store
//! refuses rather than grows. papaya resizes incrementally, and a writer
//! waits only while a larger table is allocated, which a store bounded to a
//! few thousand entries does a handful of times in its life; a hand-written
//! open-addressing table of atomics would avoid even that, at the cost of
//! keeping names of any length in atomics, which papaya does for us.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

/// How large a store may grow, from `[plugins]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Entries at most (`plugins.store_entries`).
    pub entries: usize,
    /// Bytes of a name at most (`plugins.store_name_bytes`).
    pub name_bytes: usize,
}

/// Why a store refused an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store holds all the entries it may; the entry was not made.
    #[error("the store is full")]
    Full,
    /// The name is empty or longer than the store allows.
    #[error("the name is empty or too long")]
    BadName,
}

/// An entry's name: an optional endpoint and a name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    endpoint: Option<u32>,
    name: Box<str>,
}

/// A key borrowed from the caller's name, for lookups that allocate nothing.
#[derive(Debug, Clone, Copy)]
struct KeyRef<'a> {
    endpoint: Option<u32>,
    name: &'a str,
}

// Both hash as (endpoint, name), so a `KeyRef` finds its `Key`.
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        KeyRef {
            endpoint: self.endpoint,
            name: &self.name,
        }
        .hash(state);
    }
}

impl Hash for KeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.endpoint.hash(state);
        self.name.hash(state);
    }
}

impl papaya::Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.endpoint == key.endpoint && self.name == &*key.name
    }
}

/// One pool's store for one plugin.
pub struct PoolStore {
    entries: papaya::HashMap<Key, AtomicI64, foldhash::fast::RandomState>,
    /// Entries made, or reserved by an insertion under way.
    len: AtomicUsize,
    limits: StoreLimits,
}

impl std::fmt::Debug for PoolStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolStore")
            .field("entries", &self.len())
            .field("limits", &self.limits)
            .finish()
    }
}

impl PoolStore {
    /// An empty store held to `limits`; it allocates on its first entry.
    pub fn new(limits: StoreLimits) -> Self {
        PoolStore {
            entries: papaya::HashMap::with_hasher(foldhash::fast::RandomState::default()),
            len: AtomicUsize::new(0),
            limits,
        }
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed).min(self.limits.entries)
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its bounds.
    pub fn limits(&self) -> StoreLimits {
        self.limits
    }

    /// The entry's value; 0 if it was never written (or the name is not one
    /// the store could hold).
    pub fn get(&self, endpoint: Option<u32>, name: &str) -> i64 {
        let entries = self.entries.pin();
        entries
            .get(&KeyRef { endpoint, name })
            .map_or(0, |value| value.load(Ordering::Acquire))
    }

    /// Adds `delta`, wrapping; answers the new value.
    pub fn add(&self, endpoint: Option<u32>, name: &str, delta: i64) -> Result<i64, StoreError> {
        self.with_entry(endpoint, name, |value| {
            value.fetch_add(delta, Ordering::AcqRel).wrapping_add(delta)
        })
    }

    /// Sets the entry to `new` if it holds `expected`; answers the value it
    /// held (the swap happened if that is `expected`).
    pub fn compare_and_swap(
        &self,
        endpoint: Option<u32>,
        name: &str,
        expected: i64,
        new: i64,
    ) -> Result<i64, StoreError> {
        // An entry never written holds 0: a swap from anything else needs no
        // new entry, and must not take a place in a full store.
        if expected != 0 && !self.contains(endpoint, name) {
            self.check_name(name)?;
            return Ok(0);
        }
        self.with_entry(endpoint, name, |value| {
            match value.compare_exchange(expected, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(held) | Err(held) => held,
            }
        })
    }

    fn contains(&self, endpoint: Option<u32>, name: &str) -> bool {
        self.entries.pin().contains_key(&KeyRef { endpoint, name })
    }

    fn check_name(&self, name: &str) -> Result<(), StoreError> {
        if name.is_empty() || name.len() > self.limits.name_bytes {
            return Err(StoreError::BadName);
        }
        Ok(())
    }

    /// Runs `apply` on the entry, made (at 0) if new and the store has room.
    fn with_entry(
        &self,
        endpoint: Option<u32>,
        name: &str,
        apply: impl FnOnce(&AtomicI64) -> i64,
    ) -> Result<i64, StoreError> {
        self.check_name(name)?;
        let entries = self.entries.pin();
        if let Some(value) = entries.get(&KeyRef { endpoint, name }) {
            return Ok(apply(value));
        }
        let max = self.limits.entries;
        self.len
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| StoreError::Full)?;
        let key = Key {
            endpoint,
            name: name.into(),
        };
        let value = match entries.try_insert(key, AtomicI64::new(0)) {
            Ok(value) => value,
            // Another worker made it first: give the place back.
            Err(occupied) => {
                self.len.fetch_sub(1, Ordering::AcqRel);
                occupied.current
            }
        };
        Ok(apply(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(entries: usize) -> PoolStore {
        PoolStore::new(StoreLimits {
            entries,
            name_bytes: 8,
        })
    }

    #[test]
    fn entries_start_at_zero_and_are_named_by_endpoint_and_name() {
        let store = store(8);
        assert_eq!(store.get(None, "hits"), 0);
        assert_eq!(store.add(None, "hits", 2), Ok(2));
        assert_eq!(store.add(Some(1), "hits", -5), Ok(-5));
        assert_eq!(store.add(None, "hits", 1), Ok(3));
        assert_eq!(store.get(Some(1), "hits"), -5);
        assert_eq!(store.get(Some(2), "hits"), 0);
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn compare_and_swap_answers_the_value_it_found() {
        let store = store(8);
        assert_eq!(store.compare_and_swap(Some(3), "open", 0, 10), Ok(0));
        assert_eq!(store.get(Some(3), "open"), 10);
        assert_eq!(store.compare_and_swap(Some(3), "open", 0, 20), Ok(10));
        assert_eq!(store.get(Some(3), "open"), 10);
        assert_eq!(store.compare_and_swap(Some(3), "open", 10, 20), Ok(10));
        assert_eq!(store.get(Some(3), "open"), 20);
        // A swap from non-zero on a missing entry makes nothing.
        assert_eq!(store.compare_and_swap(None, "x", 5, 6), Ok(0));
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn a_full_store_refuses_new_entries_and_keeps_serving_old_ones() {
        let store = store(2);
        store.add(None, "a", 1).unwrap();
        store.add(None, "b", 1).unwrap();
        assert_eq!(store.add(None, "c", 1), Err(StoreError::Full));
        assert_eq!(
            store.compare_and_swap(None, "c", 0, 1),
            Err(StoreError::Full)
        );
        assert_eq!(store.add(None, "a", 1), Ok(2));
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn names_are_bounded() {
        let store = store(8);
        assert_eq!(store.add(None, "", 1), Err(StoreError::BadName));
        assert_eq!(store.add(None, "123456789", 1), Err(StoreError::BadName));
        assert_eq!(store.add(None, "12345678", 1), Ok(1));
    }

    #[test]
    fn workers_adding_at_once_lose_no_update_and_share_one_entry() {
        let store = std::sync::Arc::new(store(4));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let store = std::sync::Arc::clone(&store);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        store.add(Some(7), "run", 1).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(store.get(Some(7), "run"), 40_000);
        assert_eq!(store.len(), 1);
    }
}
