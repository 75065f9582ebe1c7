//! Endpoints a pool has besides those its config lists — answers of DNS
//! (`dns.rs`) and services that registered themselves (`registrations.rs`)
//! — kept beside the config, never written into it, and applied to the
//! pools as they change.

use std::collections::BTreeMap;

use crate::engine::Source;

pub mod dns;
pub mod hosts;
pub mod registrations;

/// An endpoint found by discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// `ip:port`.
    pub address: String,
    /// Relative share of traffic, at least 1.
    pub weight: u32,
    /// Priority tier: 0 is the primary.
    pub tier: u32,
    /// Labels, shown to plugins (a registration's metadata).
    pub labels: BTreeMap<String, String>,
}

/// A pool's new set of endpoints from one source.
#[derive(Debug, Clone)]
pub struct Update {
    /// The pool.
    pub pool: String,
    /// Where they come from.
    pub source: Source,
    /// The whole set from that source, sorted by address.
    pub found: Vec<Found>,
}
