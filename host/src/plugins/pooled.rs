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
use std::sync::Arc;

use wasmtime::component::ResourceAny;
use wasmtime::Store;

use super::bindings::{balancer::BalancerPlugin, health::HealthPlugin, recovery::RecoveryPlugin};
use super::pool_store::PoolStore;
use super::retire::Keys;
use super::state::{begin_async_call, begin_call, block_on, StoreState};
use super::{describe_failure, SetUpError, Shared};

/// One pool's resource in a shared instance.
#[derive(Debug)]
pub(crate) struct PoolResource {
    pub handle: ResourceAny,
    /// The endpoint-set generation last pushed to it (balancers).
    pub generation: u64,
    /// The config it was made from, to make it again in a new version's
    /// instance when its state is carried there.
    config: Arc<str>,
    /// The pool's store, served to `snapshot` and `restore` as to any call
    /// for the pool.
    pool_store: Option<Arc<PoolStore>>,
}

/// What the host calls on a world's exports to make a pool's resource and
/// to carry its state from one version to the next.
pub(crate) trait PoolExports {
    /// `create` with the pool's config.
    fn create(
        &self,
        store: &mut Store<StoreState>,
        config: &str,
    ) -> wasmtime::Result<Result<ResourceAny, String>>;

    /// Whether the component exports `snapshot` and `restore`.
    fn has_state(&self) -> bool {
        false
    }

    /// `snapshot` of a pool's resource (an empty state without the export).
    fn snapshot(
        &self,
        _store: &mut Store<StoreState>,
        _pool: ResourceAny,
    ) -> wasmtime::Result<Vec<u8>> {
        Ok(Vec::new())
    }

    /// `restore` into a pool's resource (nothing to do without the export).
    fn restore(
        &self,
        _store: &mut Store<StoreState>,
        _pool: ResourceAny,
        _state: &[u8],
    ) -> wasmtime::Result<Result<(), String>> {
        Ok(Ok(()))
    }
}

/// Why a pool's state could not be carried into a new version's instance.
#[derive(Debug)]
pub(crate) enum CarryError {
    /// The new version refused the state (or its config), or trapped
    /// taking it: the new version is at fault.
    Refused(String),
    /// The old instance trapped giving it: it cannot be entered again, and
    /// there is nothing to carry.
    OldTrapped(String),
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
    /// The store's calls must be async (a health check's instance).
    async_calls: bool,
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
            async_calls: false,
        }
    }

    /// The same, for a store whose calls must be async.
    pub(crate) fn new_async(
        version_id: u64,
        store: Store<StoreState>,
        exports: E,
        keys: &Keys,
    ) -> Self {
        SharedInstance {
            async_calls: true,
            ..SharedInstance::new(version_id, store, exports, keys)
        }
    }

    /// `sweep` for a task on the runtime: each destructor's call awaited.
    pub(crate) async fn sweep_async(&mut self, shared: &Shared, keys: &Keys) -> Result<(), String> {
        let Some((retired, seen)) = keys.retired_since(self.retired_seen) else {
            return Ok(());
        };
        self.retired_seen = seen;
        for key in retired {
            if let Some(resource) = self.pools.remove(&key) {
                let call = begin_async_call(&mut self.store, shared.limits.setup_deadline_ticks);
                call.run(resource.handle.resource_drop_async(&mut self.store))
                    .await
                    .map_err(|e| describe_failure(&self.store, &e, "drop"))?;
            }
        }
        Ok(())
    }

    /// Pool `key`'s resource, if this instance has made it.
    pub(crate) fn resource(&self, key: usize) -> Option<ResourceAny> {
        self.pools.get(&key).map(|resource| resource.handle)
    }

    /// Keeps `handle` as pool `key`'s resource, made by the caller from
    /// `config` with the store serving the pool's store, if any.
    pub(crate) fn insert_resource(&mut self, key: usize, handle: ResourceAny, config: &Arc<str>) {
        let pool_store = self.store.data().pool_store.clone();
        self.pools.insert(
            key,
            PoolResource {
                handle,
                generation: 0,
                config: Arc::clone(config),
                pool_store,
            },
        );
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
        config: &Arc<str>,
    ) -> Result<&mut PoolResource, PoolError>
    where
        E: PoolExports,
    {
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
                let handle = match exports.create(store, config) {
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
                // The caller served the pool's store before asking.
                let pool_store = store.data().pool_store.clone();
                Ok(entry.insert(PoolResource {
                    handle,
                    generation: 0,
                    config: Arc::clone(config),
                    pool_store,
                }))
            }
        }
    }

    /// Carries every pool's state from `old`, another version's instance on
    /// this thread, into this one: `snapshot` of each of `old`'s resources
    /// and, for a state that is not empty, the pool's resource made here
    /// from the same config and `restore`d. Endpoints are pushed to a made
    /// balancer at its pool's next pick, as to any new resource.
    pub(crate) fn carry_from(
        &mut self,
        shared: &Shared,
        old: &mut SharedInstance<E>,
    ) -> Result<(), CarryError>
    where
        E: PoolExports,
    {
        if !old.exports.has_state() {
            return Ok(());
        }
        let mut states = Vec::new();
        for (&key, resource) in &old.pools {
            old.store.data_mut().pool_store = resource.pool_store.clone();
            begin_call(&mut old.store, shared.limits.setup_deadline_ticks);
            let state = old
                .exports
                .snapshot(&mut old.store, resource.handle)
                .map_err(|e| {
                    CarryError::OldTrapped(describe_failure(&old.store, &e, "snapshot"))
                })?;
            if !state.is_empty() {
                states.push((
                    key,
                    Arc::clone(&resource.config),
                    resource.pool_store.clone(),
                    state,
                ));
            }
        }
        for (key, config, pool_store, state) in states {
            self.store.data_mut().pool_store = pool_store;
            self.restore_pool(shared, key, &config, &state)?;
        }
        Ok(())
    }

    /// Makes pool `key`'s resource from `config` and restores `state` into it.
    pub(crate) fn restore_pool(
        &mut self,
        shared: &Shared,
        key: usize,
        config: &Arc<str>,
        state: &[u8],
    ) -> Result<(), CarryError>
    where
        E: PoolExports,
    {
        let handle = self
            .pool(shared, key, config)
            .map_err(|error| match error {
                PoolError::Refused(reason) | PoolError::Trapped(reason) => {
                    CarryError::Refused(reason)
                }
            })?
            .handle;
        if !self.exports.has_state() {
            return Ok(());
        }
        begin_call(&mut self.store, shared.limits.setup_deadline_ticks);
        match self.exports.restore(&mut self.store, handle, state) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(CarryError::Refused(format!(
                "restore refused the state of the version before: {message}"
            ))),
            Err(error) => Err(CarryError::Refused(describe_failure(
                &self.store,
                &error,
                "restore",
            ))),
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
            let dropped = if self.async_calls {
                block_on(resource.handle.resource_drop_async(&mut self.store))
            } else {
                resource.handle.resource_drop(&mut self.store)
            };
            dropped.map_err(|e| describe_failure(&self.store, &e, "drop"))?;
        }
        Ok(())
    }
}

/// A thread's instance after the version it serves moved.
pub(crate) enum Upgrade<E> {
    /// An instance of the new version, with the pools' state carried over.
    Upgraded(SharedInstance<E>),
    /// The new version refused a pool's state: the old instance goes on
    /// serving, and the new version is to be rejected for the reason given.
    KeptOld(SharedInstance<E>, String),
}

/// Makes this thread's instance of version `version_id` in place of `old`,
/// the instance of the version before (if any), carrying each pool's state
/// across (`snapshot` there, `restore` here). A refusal keeps `old` when the
/// new version is the newer one; when it is the older one (a version
/// reinstated after a refusal), its pools start afresh instead, as they
/// did before 0.2.1.
pub(crate) fn upgrade<E: PoolExports>(
    shared: &Shared,
    slot: &super::registry::PluginSlot,
    version_id: u64,
    keys: &Keys,
    old: Option<SharedInstance<E>>,
    instantiate: impl Fn(&mut Store<StoreState>) -> wasmtime::Result<E>,
) -> Result<Upgrade<E>, SetUpError> {
    // An old instance with nothing to carry goes first: the new one may
    // need its place under `max_instances`.
    let mut old = old.filter(|old| old.exports.has_state() && !old.pools.is_empty());
    let (store, exports) = match super::instantiate(shared, slot, &instantiate) {
        Err(SetUpError::Capacity(_)) if old.is_some() => {
            old = None;
            super::instantiate(shared, slot, &instantiate)?
        }
        made => made?,
    };
    let mut new = SharedInstance::new(version_id, store, exports, keys);
    let Some(mut old) = old else {
        return Ok(Upgrade::Upgraded(new));
    };
    match new.carry_from(shared, &mut old) {
        Ok(()) => {}
        Err(CarryError::Refused(reason)) if version_id > old.version_id => {
            return Ok(Upgrade::KeptOld(old, reason));
        }
        Err(CarryError::Refused(reason) | CarryError::OldTrapped(reason)) => {
            tracing::debug!(plugin = &*slot.name, "pools start afresh: {reason}");
        }
    }
    Ok(Upgrade::Upgraded(new))
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
///
/// When the version is to replace the one serving, the serving version's
/// scratch instance is kept aside (`PluginSlot::outgoing`) for the whole
/// load, and each pool's state there is `snapshot` and `restore`d into the
/// new resource: a version that cannot read the state of the one before is
/// refused here, before it serves.
pub(crate) fn check_in_scratch<E: InScratch + PoolExports>(
    shared: &Shared,
    slot: &super::registry::PluginSlot,
    version_id: u64,
    keys: &Keys,
    pool_name: &str,
    instantiate: impl FnOnce(&mut Store<StoreState>) -> wasmtime::Result<E>,
    exercise: impl FnOnce(&mut SharedInstance<E>, usize) -> Result<(), SetUpError>,
) -> Result<(), SetUpError> {
    let mut scratch = slot.scratch.lock().unwrap_or_else(|e| e.into_inner());
    let mut outgoing = slot.outgoing.lock().unwrap_or_else(|e| e.into_inner());
    let serving = slot.current().map(|version| version.id);
    let kept = match scratch.take().and_then(E::unwrap) {
        Some(instance) if instance.version_id == version_id => Some(instance),
        Some(instance) if Some(instance.version_id) == serving => {
            *outgoing = Some(E::wrap(instance));
            None
        }
        _ => None,
    };
    let mut instance = match kept {
        Some(instance) => instance,
        None => {
            let (store, exports) = super::instantiate(shared, slot, instantiate)?;
            SharedInstance {
                async_calls: E::ASYNC_CALLS,
                ..SharedInstance::new(version_id, store, exports, keys)
            }
        }
    };
    // The pool's earlier state (a pool rebuilt by a reload) goes first.
    if let Some(earlier) = instance.checked.remove(pool_name) {
        if let Err(reason) = instance.release(shared, earlier) {
            return Err(SetUpError::Plugin(reason));
        }
    }
    let key = keys.allocate();
    // A store of its own: a check must not write to the pool's.
    instance.store.data_mut().pool_store = Some(Arc::new(PoolStore::new(shared.limits.store())));
    let mut checked = exercise(&mut instance, key);
    if checked.is_ok() {
        checked = carry_checked(shared, outgoing.as_mut(), &mut instance, pool_name, key);
    }
    instance.store.data_mut().endpoints = None;
    instance.store.data_mut().pool_store = None;
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

/// Restores the state of pool `pool_name` in the serving version's
/// scratch instance, if there is one, into the new version's resource `key`.
fn carry_checked<E: InScratch + PoolExports>(
    shared: &Shared,
    outgoing: Option<&mut Scratch>,
    instance: &mut SharedInstance<E>,
    pool_name: &str,
    key: usize,
) -> Result<(), SetUpError> {
    let Some(old) = outgoing.and_then(E::unwrap_mut) else {
        return Ok(());
    };
    let Some(old_key) = old.checked.get(pool_name).copied() else {
        return Ok(());
    };
    let Some(resource) = old.pools.get(&old_key) else {
        return Ok(());
    };
    if !old.exports.has_state() {
        return Ok(());
    }
    let (handle, config) = (resource.handle, Arc::clone(&resource.config));
    old.store.data_mut().pool_store = resource.pool_store.clone();
    begin_call(&mut old.store, shared.limits.setup_deadline_ticks);
    // A serving version that cannot give its state is not the new one's
    // fault: there is nothing to check against.
    let Ok(state) = old.exports.snapshot(&mut old.store, handle) else {
        return Ok(());
    };
    if state.is_empty() {
        return Ok(());
    }
    match instance.restore_pool(shared, key, &config, &state) {
        Ok(()) => Ok(()),
        Err(CarryError::Refused(reason) | CarryError::OldTrapped(reason)) => {
            Err(SetUpError::Plugin(reason))
        }
    }
}

/// A slot's scratch instance, by world.
pub(crate) enum Scratch {
    Balancer(SharedInstance<BalancerPlugin>),
    HealthCheck(SharedInstance<HealthPlugin>),
    Recovery(SharedInstance<RecoveryPlugin>),
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
    /// Whether the world's calls must be async (its imports are).
    const ASYNC_CALLS: bool = false;
    fn wrap(instance: SharedInstance<Self>) -> Scratch;
    fn unwrap(scratch: Scratch) -> Option<SharedInstance<Self>>;
    fn unwrap_mut(scratch: &mut Scratch) -> Option<&mut SharedInstance<Self>>;
}

macro_rules! in_scratch {
    ($exports:ty, $variant:ident $(, $async_calls:expr)?) => {
        impl InScratch for $exports {
            $(const ASYNC_CALLS: bool = $async_calls;)?
            fn wrap(instance: SharedInstance<Self>) -> Scratch {
                Scratch::$variant(instance)
            }
            fn unwrap(scratch: Scratch) -> Option<SharedInstance<Self>> {
                match scratch {
                    Scratch::$variant(instance) => Some(instance),
                    _ => None,
                }
            }
            fn unwrap_mut(scratch: &mut Scratch) -> Option<&mut SharedInstance<Self>> {
                match scratch {
                    Scratch::$variant(instance) => Some(instance),
                    _ => None,
                }
            }
        }
    };
}
in_scratch!(BalancerPlugin, Balancer);
in_scratch!(HealthPlugin, HealthCheck, true);
in_scratch!(RecoveryPlugin, Recovery);

/// `PoolExports` of a world whose state may be carried across a swap: its
/// resource made by `$interface().$resource().call_create`, its snapshot
/// and restore from its optional state export.
macro_rules! pool_exports_with_state {
    ($exports:ty, $interface:ident, $resource:ident) => {
        impl PoolExports for $exports {
            fn create(
                &self,
                store: &mut Store<StoreState>,
                config: &str,
            ) -> wasmtime::Result<Result<ResourceAny, String>> {
                self.$interface().$resource().call_create(store, config)
            }

            fn has_state(&self) -> bool {
                self.state().is_some()
            }

            fn snapshot(
                &self,
                store: &mut Store<StoreState>,
                pool: ResourceAny,
            ) -> wasmtime::Result<Vec<u8>> {
                match self.state() {
                    Some(state) => state.call_snapshot(store, pool),
                    None => Ok(Vec::new()),
                }
            }

            fn restore(
                &self,
                store: &mut Store<StoreState>,
                pool: ResourceAny,
                bytes: &[u8],
            ) -> wasmtime::Result<Result<(), String>> {
                match self.state() {
                    Some(state) => state.call_restore(store, pool, bytes),
                    None => Ok(Ok(())),
                }
            }
        }
    };
}
pool_exports_with_state!(BalancerPlugin, switchyard_plugin_balancer, pool_balancer);
pool_exports_with_state!(RecoveryPlugin, switchyard_plugin_recovery, pool_recovery);

// Health checks carry no state across versions.
impl PoolExports for HealthPlugin {
    fn create(
        &self,
        store: &mut Store<StoreState>,
        config: &str,
    ) -> wasmtime::Result<Result<ResourceAny, String>> {
        // Called only where nothing but the guest can wait (a scratch
        // check); a check makes its pool's resource with `call_async`.
        block_on(
            self.switchyard_plugin_health_check()
                .pool_check()
                .call_create(store, config),
        )
    }
}
