//! The one place the host generates bindings from `wit/`. The shared imports
//! are generated once and each world reuses them, so `types` and `host` have
//! a single Rust definition.
//!
//! The health worlds are generated async (their probes await the network,
//! their checks are called with `call_async`); the others are synchronous.
//!
//! `v0_1` holds the worlds of contract 0.1 (free functions, one instance per
//! pool), generated from the frozen WIT in `wit-compat/`, so plugins built
//! against it keep loading.

#![allow(missing_docs, missing_debug_implementations)]

pub mod common {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "host-imports",
    });
}

pub mod balancer {
    mod generated {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "balancer-plugin",
            with: {
                "switchyard:plugin/types": crate::plugins::bindings::common::switchyard::plugin::types,
                "switchyard:plugin/host": crate::plugins::bindings::common::switchyard::plugin::host,
            },
        });
    }
    pub use generated::{exports, switchyard};

    super::with_optional_state!(
        BalancerPlugin,
        BalancerPluginPre,
        switchyard_plugin_balancer,
        exports::switchyard::plugin::balancer,
        exports::switchyard::plugin::balancer_state
    );
}

pub mod health {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "health-plugin",
        with: {
            "switchyard:plugin/types": crate::plugins::bindings::common::switchyard::plugin::types,
            "switchyard:plugin/host": crate::plugins::bindings::common::switchyard::plugin::host,
        },
        // A probe's wait yields to the runtime; the check is called with
        // `call_async` so it can.
        imports: { "switchyard:plugin/probe": async },
        exports: { default: async },
    });
}

pub mod recovery {
    mod generated {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "recovery-plugin",
            with: {
                "switchyard:plugin/types": crate::plugins::bindings::common::switchyard::plugin::types,
                "switchyard:plugin/host": crate::plugins::bindings::common::switchyard::plugin::host,
                "switchyard:plugin/store": crate::plugins::bindings::balancer::switchyard::plugin::store,
            },
        });
    }
    pub use generated::exports;

    super::with_optional_state!(
        RecoveryPlugin,
        RecoveryPluginPre,
        switchyard_plugin_recovery,
        exports::switchyard::plugin::recovery,
        exports::switchyard::plugin::recovery_state
    );
}

/// A world's typed exports where its state interface (`balancer-state`,
/// `recovery-state`, since 0.2.1) is optional: a component built against
/// 0.2.0 has none, and is served as before. The world's own bindings
/// (`BalancerPluginPre` as `bindgen!` makes it) would require it.
macro_rules! with_optional_state {
    ($plugin:ident, $pre:ident, $getter:ident, $main:path, $state:path) => {
        use $main as main_interface;
        use $state as state_interface;

        /// An instance's exports.
        pub struct $plugin {
            main: main_interface::Guest,
            state: Option<state_interface::Guest>,
        }

        impl $plugin {
            /// The world's main interface.
            pub fn $getter(&self) -> &main_interface::Guest {
                &self.main
            }

            /// `snapshot` and `restore`, if the component exports them.
            pub fn state(&self) -> Option<&state_interface::Guest> {
                self.state.as_ref()
            }
        }

        /// A component ready to instantiate, its exports looked up.
        pub struct $pre<T: 'static> {
            pre: wasmtime::component::InstancePre<T>,
            main: main_interface::GuestIndices,
            state: Option<state_interface::GuestIndices>,
        }

        impl<T: 'static> $pre<T> {
            /// Looks up the exports; the state interface may be missing.
            pub fn new(pre: wasmtime::component::InstancePre<T>) -> wasmtime::Result<Self> {
                let main = main_interface::GuestIndices::new(&pre)?;
                let state = state_interface::GuestIndices::new(&pre).ok();
                Ok($pre { pre, main, state })
            }

            /// Whether the component exports `snapshot` and `restore`.
            pub fn has_state(&self) -> bool {
                self.state.is_some()
            }

            /// A new instance in `store`.
            pub fn instantiate(
                &self,
                mut store: impl wasmtime::AsContextMut<Data = T>,
            ) -> wasmtime::Result<$plugin> {
                let mut store = store.as_context_mut();
                let instance = self.pre.instantiate(&mut store)?;
                let main = self.main.load(&mut store, &instance)?;
                let state = match &self.state {
                    Some(indices) => Some(indices.load(&mut store, &instance)?),
                    None => None,
                };
                Ok($plugin { main, state })
            }
        }
    };
}
use with_optional_state;

/// Contract 0.1 (0.1.0 and 0.1.1): its shared imports are registered under
/// their own names (a 0.1 import does not match a 0.2 export by semver) and
/// answered by the current implementations (`imports/v0_1.rs`).
pub mod v0_1 {
    pub mod common {
        wasmtime::component::bindgen!({
            path: "../wit-compat/0.1.1",
            world: "host-imports",
        });
    }

    pub mod balancer {
        wasmtime::component::bindgen!({
            path: "../wit-compat/0.1.1",
            world: "balancer-plugin",
            with: {
                "switchyard:plugin/types": crate::plugins::bindings::v0_1::common::switchyard::plugin::types,
                "switchyard:plugin/host": crate::plugins::bindings::v0_1::common::switchyard::plugin::host,
            },
        });
    }

    pub mod health {
        wasmtime::component::bindgen!({
            path: "../wit-compat/0.1.1",
            world: "health-plugin",
            with: {
                "switchyard:plugin/types": crate::plugins::bindings::v0_1::common::switchyard::plugin::types,
                "switchyard:plugin/host": crate::plugins::bindings::v0_1::common::switchyard::plugin::host,
            },
            imports: { "switchyard:plugin/probe": async },
            exports: { default: async },
        });
    }

    pub mod recovery {
        wasmtime::component::bindgen!({
            path: "../wit-compat/0.1.1",
            world: "recovery-plugin",
            with: {
                "switchyard:plugin/types": crate::plugins::bindings::v0_1::common::switchyard::plugin::types,
                "switchyard:plugin/host": crate::plugins::bindings::v0_1::common::switchyard::plugin::host,
            },
        });
    }

    /// The recovery world of contract 0.1.0 (before `grpc-status`). Its
    /// shared imports are 0.1.1's (the linker matches 0.1.0 imports to
    /// 0.1.1 by semver).
    pub mod recovery_0_1_0 {
        wasmtime::component::bindgen!({
            path: "../wit-compat/0.1.0",
            world: "recovery-plugin",
            with: {
                "switchyard:plugin/types": crate::plugins::bindings::v0_1::common::switchyard::plugin::types,
                "switchyard:plugin/host": crate::plugins::bindings::v0_1::common::switchyard::plugin::host,
            },
        });
    }
}

pub use balancer::switchyard::plugin::store;
pub use common::switchyard::plugin::{host, types};
pub use health::switchyard::plugin::probe;
