//! Instances of contract 0.2 plugins, each serving many pools: a pool's
//! state is a resource the plugin made for it (`create`), held here by the
//! pool's key. A balancer or recovery plugin has one such instance per
//! worker thread, a health plugin a small shared set; either way the count
//! follows the plugins, not the pools.
//!
//! Isolation: pools share the instance's memory, so a trap while serving
//! one pool drops the instance and with it every pool's state in it on that
//! thread. Nothing the host needs is in there: each pool's resource is made
//! again at its next call, from its config and endpoint set, and the fault
//! is counted against the pool that trapped.

use std::collections::HashMap;

use wasmtime::component::ResourceAny;
use wasmtime::Store;

use super::retire::Keys;
use super::state::{begin_call, StoreState};
use super::{describe_failure, SetUpError, Shared};

/// One pool's resource in a shared instance.
#[derive(Debug)]
pub(crate) struct PoolResource {
    pub handle: ResourceAny,
    /// The endpoint-set generation last pushed to it (balancers).
    pub generation: u64,
}

/// One instance of a version, with the resources of the pools it has served.
pub(crate) struct SharedInstance<E> {
    pub version_id: u64,
    pub store: Store<StoreState>,
    pub exports: E,
    pools: HashMap<usize, PoolResource, foldhash::fast::RandomState>,
    /// How many of `Keys`' retirements this instance has applied.
    retired_seen: u64,
    /// In a scratch instance: the key of each checked pool's resource, by
    /// pool name, kept so the instance holds what a worker's would.
    checked: HashMap<String, usize>,
}

impl<E> SharedInstance<E> {
    pub(crate) fn new(version_id: u64, store: Store<StoreState>, exports: E, keys: &Keys) -> Self {
        SharedInstance {
            version_id,
            store,
            exports,
            pools: HashMap::default(),
            // Keys retired before this instance existed have nothing in it.
            retired_seen: keys.retired_count(),
            checked: HashMap::new(),
        }
    }

    /// Drops the resources of pools that no longer exist (their keys were
    /// retired by `keys`), letting the plugin free their state. An error
    /// is a trap in a destructor: the instance cannot be entered again.
    pub(crate) fn sweep(&mut self, shared: &Shared, keys: &Keys) -> Result<(), String> {
        let Some((retired, seen)) = keys.retired_since(self.retired_seen) else {
            return Ok(());
        };
        self.retired_seen = seen;
        for key in retired {
            self.release(shared, key)?;
        }
        Ok(())
    }

    /// The resource of pool `key`, made by `create` on first use. `create`
    /// answers `Ok(Err(message))` when the plugin refused the pool's config
    /// (the instance is intact) and `Err` when it trapped (it is not).
    pub(crate) fn pool(
        &mut self,
        shared: &Shared,
        key: usize,
        create: impl FnOnce(&E, &mut Store<StoreState>) -> wasmtime::Result<Result<ResourceAny, String>>,
    ) -> Result<&mut PoolResource, PoolError> {
        // One lookup on the hot path: the entry holds only `pools`, so the
        // store and exports stay free for `create`.
        let SharedInstance {
            store,
            exports,
            pools,
            ..
        } = self;
        match pools.entry(key) {
            std::collections::hash_map::Entry::Occupied(entry) => Ok(entry.into_mut()),
            std::collections::hash_map::Entry::Vacant(entry) => {
                begin_call(store, shared.limits.setup_deadline_ticks);
                let handle = match create(exports, store) {
                    Ok(Ok(handle)) => handle,
                    Ok(Err(message)) => {
                        return Err(PoolError::Refused(format!(
                            "configure refused the config: {message}"
                        )))
                    }
                    Err(error) => {
                        return Err(PoolError::Trapped(describe_failure(
                            store, &error, "create",
                        )))
                    }
                };
                Ok(entry.insert(PoolResource {
                    handle,
                    generation: 0,
                }))
            }
        }
    }

    /// In a scratch instance, drops the resources of checked pools for
    /// which `keep` says no (pools that no longer exist).
    pub(crate) fn retain_checked(&mut self, shared: &Shared, keep: impl Fn(&str) -> bool) {
        let gone: Vec<String> = self
            .checked
            .keys()
            .filter(|name| !keep(name))
            .cloned()
            .collect();
        for name in gone {
            if let Some(key) = self.checked.remove(&name) {
                let _ = self.release(shared, key);
            }
        }
    }

    /// Records that pool `key`'s resource has the endpoints of `generation`.
    pub(crate) fn mark_synced(&mut self, key: usize, generation: u64) {
        if let Some(resource) = self.pools.get_mut(&key) {
            resource.generation = generation;
        }
    }

    /// Drops pool `key`'s resource now (a scratch check is done with it).
    pub(crate) fn release(&mut self, shared: &Shared, key: usize) -> Result<(), String> {
        if let Some(resource) = self.pools.remove(&key) {
            begin_call(&mut self.store, shared.limits.setup_deadline_ticks);
            resource
                .handle
                .resource_drop(&mut self.store)
                .map_err(|e| describe_failure(&self.store, &e, "drop"))?;
        }
        Ok(())
    }
}

/// Why a pool's resource could not be had.
#[derive(Debug)]
pub(crate) enum PoolError {
    /// `create` answered an error: the config is refused. The instance is fine.
    Refused(String),
    /// `create` trapped or ran out of time: the instance must be dropped.
    Trapped(String),
}

impl From<PoolError> for SetUpError {
    fn from(error: PoolError) -> SetUpError {
        match error {
            PoolError::Refused(reason) | PoolError::Trapped(reason) => SetUpError::Plugin(reason),
        }
    }
}

/// One instance per thread and plugin slot, by the slot's index.
pub(crate) struct PerThread<E> {
    instances: std::cell::RefCell<Vec<Option<SharedInstance<E>>>>,
    /// The retirements this thread has applied to all its instances.
    seen: std::cell::Cell<u64>,
}

impl<E> PerThread<E> {
    pub(crate) const fn new() -> Self {
        PerThread {
            instances: std::cell::RefCell::new(Vec::new()),
            seen: std::cell::Cell::new(0),
        }
    }

    /// Runs `call` on this thread's instance of the slot `index`. When pools
    /// were retired since this thread last looked, every instance on it
    /// first drops their resources, and an instance left serving no pool
    /// is dropped: a plugin no pool uses any more holds no instance.
    pub(crate) fn with<R>(
        &self,
        index: usize,
        shared: &Shared,
        keys: &Keys,
        call: impl FnOnce(&mut Option<SharedInstance<E>>) -> R,
    ) -> R {
        let mut instances = self.instances.borrow_mut();
        let retired = keys.retired_count();
        if retired != self.seen.get() {
            self.seen.set(retired);
            for entry in instances.iter_mut() {
                let unused = entry.as_mut().is_some_and(|instance| {
                    instance.sweep(shared, keys).is_err() || instance.pools.is_empty()
                });
                if unused {
                    *entry = None;
                }
            }
        }
        if instances.len() <= index {
            instances.resize_with(index + 1, || None);
        }
        call(&mut instances[index])
    }

    /// Whether this thread holds any instance in the table.
    pub(crate) fn any(&self) -> bool {
        self.instances.borrow().iter().any(Option::is_some)
    }
}

/// Checks a version (contract 0.2) against pool `pool_name` in the slot's
/// scratch instance, kept between checks so that checking a version
/// against thousands of pools instantiates it once: `exercise` makes the
/// pool's resource under a fresh key and calls what it needs. The resource
/// is kept (replacing the pool's earlier one), so the scratch instance
/// holds the state of every pool using the plugin, as a worker's instance
/// will: a set of pools whose state together outgrows the memory cap is
/// refused here, when it is loaded, not on the request path.
pub(crate) fn check_in_scratch<E: InScratch>(
    shared: &Shared,
    slot: &super::registry::PluginSlot,
    version_id: u64,
    keys: &Keys,
    pool_name: &str,
    instantiate: impl FnOnce(&mut Store<StoreState>) -> wasmtime::Result<E>,
    exercise: impl FnOnce(&mut SharedInstance<E>, usize) -> Result<(), SetUpError>,
) -> Result<(), SetUpError> {
    let mut scratch = slot.scratch.lock().unwrap_or_else(|e| e.into_inner());
    let kept = scratch
        .take()
        .and_then(E::unwrap)
        .filter(|instance| instance.version_id == version_id);
    let mut instance = match kept {
        Some(instance) => instance,
        None => {
            let (store, exports) = super::instantiate(shared, slot, instantiate)?;
            SharedInstance::new(version_id, store, exports, keys)
        }
    };
    // The pool's earlier state (a pool rebuilt by a reload) goes first.
    if let Some(earlier) = instance.checked.remove(pool_name) {
        if let Err(reason) = instance.release(shared, earlier) {
            return Err(SetUpError::Plugin(reason));
        }
    }
    let key = keys.allocate();
    let checked = exercise(&mut instance, key);
    instance.store.data_mut().endpoints = None;
    match checked {
        Ok(()) => {
            instance.checked.insert(pool_name.to_string(), key);
            *scratch = Some(E::wrap(instance));
        }
        // Kept only if it can still be entered: dropping the resource tells.
        Err(_) => {
            if instance.release(shared, key).is_ok() {
                *scratch = Some(E::wrap(instance));
            }
        }
    }
    checked
}

/// A slot's scratch instance, by world.
pub(crate) enum Scratch {
    Balancer(SharedInstance<super::bindings::balancer::BalancerPlugin>),
    HealthCheck(SharedInstance<super::bindings::health::HealthPlugin>),
    Recovery(SharedInstance<super::bindings::recovery::RecoveryPlugin>),
}

impl Scratch {
    /// Drops the checked state of pools for which `keep` says no.
    pub(crate) fn retain_checked(&mut self, shared: &Shared, keep: impl Fn(&str) -> bool) {
        match self {
            Scratch::Balancer(instance) => instance.retain_checked(shared, keep),
            Scratch::HealthCheck(instance) => instance.retain_checked(shared, keep),
            Scratch::Recovery(instance) => instance.retain_checked(shared, keep),
        }
    }
}

impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scratch::Balancer(_) => "Scratch::Balancer",
            Scratch::HealthCheck(_) => "Scratch::HealthCheck",
            Scratch::Recovery(_) => "Scratch::Recovery",
        })
    }
}

/// A world's exports, which a slot's `Scratch` can hold.
pub(crate) trait InScratch: Sized {
    fn wrap(instance: SharedInstance<Self>) -> Scratch;
    fn unwrap(scratch: Scratch) -> Option<SharedInstance<Self>>;
}

macro_rules! in_scratch {
    ($exports:ty, $variant:ident) => {
        impl InScratch for $exports {
            fn wrap(instance: SharedInstance<Self>) -> Scratch {
                Scratch::$variant(instance)
            }
            fn unwrap(scratch: Scratch) -> Option<SharedInstance<Self>> {
                match scratch {
                    Scratch::$variant(instance) => Some(instance),
                    _ => None,
                }
            }
        }
    };
}
in_scratch!(super::bindings::balancer::BalancerPlugin, Balancer);
in_scratch!(super::bindings::health::HealthPlugin, HealthCheck);
in_scratch!(super::bindings::recovery::RecoveryPlugin, Recovery);
