//! Per-thread instance tables and the keys retired from them: a pool's
//! balancer or recovery policy owns one key in every worker's table, and
//! when a reload drops the pool, each worker drops its instance for that key
//! at its next call, freeing the pooling allocator's slot. Instance memory
//! lives on the worker that uses it, so only that worker can free it; the
//! retirement is one relaxed load per call until there is something to do.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread::LocalKey;

/// The keys of one kind of instance (balancers, recovery policies).
#[derive(Debug)]
pub(crate) struct Keys {
    next: AtomicUsize,
    /// How many keys were retired, so a worker knows when to look.
    retirements: AtomicU64,
    /// Every retired key, in order: a reader that has seen the first `n`
    /// looks only at the rest.
    retired: Mutex<Vec<usize>>,
}

impl Keys {
    pub(crate) const fn new() -> Self {
        Keys {
            next: AtomicUsize::new(0),
            retirements: AtomicU64::new(0),
            retired: Mutex::new(Vec::new()),
        }
    }

    /// A key no owner has had.
    pub(crate) fn allocate(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Marks `key`'s instances for dropping: its owner is gone.
    pub(crate) fn retire(&self, key: usize) {
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        retired.push(key);
        self.retirements
            .store(retired.len() as u64, Ordering::Release);
    }

    /// How many keys were retired so far.
    pub(crate) fn retired_count(&self) -> u64 {
        self.retirements.load(Ordering::Acquire)
    }

    /// The keys retired after the first `seen`, and the new count to
    /// remember; nothing is locked when there are none.
    pub(crate) fn retired_since(&self, seen: u64) -> Option<(Vec<usize>, u64)> {
        if self.retirements.load(Ordering::Acquire) == seen {
            return None;
        }
        let retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        let tail = retired.get(seen as usize..).unwrap_or_default().to_vec();
        Some((tail, retired.len() as u64))
    }

    /// Runs `call` on this thread's instance for `key` in `table`, after
    /// dropping this thread's instances of keys retired since it last looked.
    pub(crate) fn with_instance<T, R>(
        &'static self,
        table: &'static LocalKey<Table<T>>,
        key: usize,
        call: impl FnOnce(&mut Option<T>) -> R,
    ) -> R {
        table.with(|table| {
            let mut instances = table.instances.borrow_mut();
            if let Some((retired, seen)) = self.retired_since(table.seen.get()) {
                table.seen.set(seen);
                for key in retired {
                    if let Some(entry) = instances.get_mut(key) {
                        *entry = None;
                    }
                }
            }
            if instances.len() <= key {
                instances.resize_with(key + 1, || None);
            }
            call(&mut instances[key])
        })
    }
}

/// One thread's instances, by key.
pub(crate) struct Table<T> {
    instances: RefCell<Vec<Option<T>>>,
    /// The retirements this thread has applied.
    seen: Cell<u64>,
}

impl<T> Table<T> {
    pub(crate) const fn new() -> Self {
        Table {
            instances: RefCell::new(Vec::new()),
            seen: Cell::new(0),
        }
    }

    /// How many instances this thread holds now.
    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        self.instances.borrow().iter().flatten().count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static KEYS: Keys = Keys::new();
    thread_local! {
        static TABLE: Table<String> = const { Table::new() };
    }

    #[test]
    fn a_retired_key_is_dropped_on_every_thread_at_its_next_call() {
        let (a, b) = (KEYS.allocate(), KEYS.allocate());
        let fill = move || {
            for key in [a, b] {
                KEYS.with_instance(&TABLE, key, |entry| *entry = Some(format!("{key}")));
            }
            TABLE.with(Table::live)
        };
        assert_eq!(fill(), 2);
        let other = std::thread::spawn(fill);
        assert_eq!(other.join().unwrap(), 2);
        KEYS.retire(a);
        // The next call on any key sweeps; the retired key's slot is empty.
        let seen = KEYS.with_instance(&TABLE, b, |entry| entry.clone());
        assert_eq!(seen.as_deref(), Some(b.to_string().as_str()));
        assert_eq!(TABLE.with(Table::live), 1);
        KEYS.with_instance(&TABLE, a, |entry| assert!(entry.is_none()));
    }
}
