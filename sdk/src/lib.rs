//! Write Switchyard policy plugins — balancers, health checks and recovery
//! policies — as plain Rust, and build them into sandboxed WebAssembly
//! components that the host loads and swaps live.
//!
//! A plugin implements one trait ([`Balancer`], [`HealthCheck`] or
//! [`Recovery`]), registers it with the matching macro
//! ([`export_balancer!`], [`export_health_check!`], [`export_recovery!`]),
//! and enables the matching cargo feature of this crate (`balancer`,
//! `health-check`, `recovery`), which decides the contract the built component
//! carries.
//!
//! ```
//! use switchyard_sdk::{export_balancer, Balancer, Endpoint, EndpointId, RequestInfo};
//!
//! /// Sends every request to the first endpoint.
//! struct First(Vec<EndpointId>);
//!
//! impl Balancer for First {
//!     fn configure(_config: &str) -> Result<Self, String> {
//!         Ok(First(Vec::new()))
//!     }
//!     fn set_endpoints(&mut self, endpoints: Vec<Endpoint>) {
//!         self.0 = endpoints.iter().map(|e| e.id).collect();
//!     }
//!     fn pick(&mut self, _request: &RequestInfo) -> Option<EndpointId> {
//!         self.0.first().copied()
//!     }
//! }
//!
//! export_balancer!(First);
//! ```
//!
//! The same code compiles natively, so its logic is unit-tested with
//! `cargo test`; [`testing::TestHost`] stands in for the host there.
//! `switchyard plugin build CRATE_DIR` turns the crate into `plugins/NAME.wasm`.
//!
//! # Layout
//!
//! - [`types`]: the values shared by every world (endpoints, loads, requests).
//! - [`balancer`], [`health`], [`recovery`]: one trait per world.
//! - [`config`]: parsing the JSON config `configure` receives.
//! - [`host`]: what the host offers every plugin (log, clock, randomness, load, headers).
//! - [`store`]: numbers a pool's instances share across worker threads and versions.
//! - [`probe`]: what the host offers health checks (HTTP and TCP probes).
//! - [`testing`]: the native stand-in for the host.

#![deny(missing_docs)]
#![cfg_attr(not(target_arch = "wasm32"), forbid(unsafe_code))]

// Lets the generated bindings name this crate the same way from inside it and
// from the plugin crates that expand its macros.
extern crate self as switchyard_sdk;

pub mod balancer;
pub mod config;
pub mod health;
pub mod host;
pub mod probe;
pub mod recovery;
pub mod store;
pub mod testing;
pub mod types;

pub use balancer::Balancer;
pub use health::{HealthCheck, Verdict};
pub use recovery::{Decision, Ejection, Failure, FailureKind, Recovery, Retry};
pub use types::{Endpoint, EndpointId, Health, Load, Priority, RequestInfo};

#[doc(hidden)]
pub mod __private;
