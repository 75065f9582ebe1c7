//! Maglev consistent hashing: every endpoint derives a permutation of the
//! slots of a lookup table of prime size from its address, the endpoints take
//! turns claiming their next free preferred slot until the table is full, and
//! a pick is one lookup, `table[hash(key) % table_size]`. Each endpoint gets
//! an almost equal share of the slots (within one for equal weights), and
//! when the set changes, few keys that stay on a surviving endpoint move (D.
//! E. Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
//! Balancer", NSDI 2016, §3.4). Weights are honoured as in Envoy's `MAGLEV`
//! policy: a heavier endpoint takes proportionally more turns while the table
//! is populated, so it owns proportionally more slots.
//!
//! The table is built in `set_endpoints` in O(table_size · log table_size)
//! expected time; a pick is O(1). The permutations come from the endpoints'
//! addresses (not their ids) and the turns go in address order, so pushing
//! the same addresses again, in any order or under other ids, gives the same
//! table.
//!
//! The key is the request's hash. When `header` is set, the value of that
//! request header is hashed instead (64-bit FNV-1a, stable across builds and
//! hosts), falling back to the request's hash when the header is absent. A
//! request with no key at all goes to a random slot, which still honours
//! weights.
//!
//! Config (JSON):
//! - `table_size` (default 65537, [`DEFAULT_TABLE_SIZE`]): slots in the
//!   lookup table; a prime from [`MIN_TABLE_SIZE`] to [`MAX_TABLE_SIZE`].
//!   Maglev suggests at least 100 times the number of endpoints; with more
//!   endpoints than slots, some endpoints get no traffic.
//! - `header` (default none): a request header whose value is the key.

use serde::Deserialize;
use switchyard_sdk::host::{self, LogLevel};
use switchyard_sdk::{export_balancer, Balancer, Endpoint, EndpointId, RequestInfo};

/// Slots in the lookup table unless `table_size` says otherwise.
pub const DEFAULT_TABLE_SIZE: u32 = 65_537;

/// The smallest `table_size` accepted.
pub const MIN_TABLE_SIZE: u32 = 7;

/// The largest `table_size` accepted.
pub const MAX_TABLE_SIZE: u32 = 1_000_003;

/// The plugin's config, as given in the pool's `balancer.config`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Slots in the lookup table; prime.
    #[serde(default = "default_table_size")]
    pub table_size: u32,
    /// A request header to hash instead of the request's hash.
    #[serde(default)]
    pub header: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            table_size: DEFAULT_TABLE_SIZE,
            header: None,
        }
    }
}

/// Serde's default for `table_size`.
fn default_table_size() -> u32 {
    DEFAULT_TABLE_SIZE
}

/// Whether `n` is prime, by trial division (n is at most a few million).
pub fn is_prime(n: u32) -> bool {
    if n < 4 {
        return n >= 2;
    }
    if n & 1 == 0 {
        return false;
    }
    let n = u64::from(n);
    (3..)
        .step_by(2)
        .take_while(|d| d * d <= n)
        .all(|d| n % d != 0)
}

/// 64-bit FNV-1a (Fowler, Noll and Vo): stable everywhere, unlike std's
/// randomly seeded hashers.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// The splitmix64 finalizer: spreads every input bit over the output, so
/// structured keys (counters, addresses) still land on random-looking slots.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Decorrelates an endpoint's `skip` from its `offset`.
const SKIP_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// Builds the Maglev lookup table of `size` slots (prime) for a non-empty
/// set of endpoints: each slot holds an endpoint id.
pub fn populate(endpoints: &[Endpoint], size: u32) -> Vec<EndpointId> {
    const EMPTY: u32 = u32::MAX;
    let size64 = u64::from(size);
    let mut order: Vec<&Endpoint> = endpoints.iter().collect();
    order.sort_by(|a, b| a.address.cmp(&b.address).then(a.id.cmp(&b.id)));

    // Endpoint i prefers slots offset, offset + skip, offset + 2 skip, ...
    // (mod size); as size is prime and 0 < skip < size, that visits every slot.
    let hashes: Vec<u64> = order
        .iter()
        .map(|e| fnv1a64(e.address.as_bytes()))
        .collect();
    let skips: Vec<u64> = hashes
        .iter()
        .map(|&h| mix(h ^ SKIP_SEED) % (size64 - 1) + 1)
        .collect();
    let mut next: Vec<u64> = hashes.iter().map(|&h| mix(h) % size64).collect();

    // Every round, endpoint i earns weight_i × n credits and takes a turn per
    // `total` credits: one turn a round each when weights are equal, and
    // turns in proportion to weight otherwise.
    let n = order.len() as u128;
    let weights: Vec<u128> = order.iter().map(|e| u128::from(e.weight.max(1))).collect();
    let total: u128 = weights.iter().sum();
    let mut credits = vec![0u128; order.len()];

    let mut owners = vec![EMPTY; size as usize];
    let mut filled = 0;
    'populate: loop {
        for (i, credit) in credits.iter_mut().enumerate() {
            *credit += weights[i] * n;
            while *credit >= total {
                *credit -= total;
                let mut slot = next[i];
                while owners[slot as usize] != EMPTY {
                    slot = (slot + skips[i]) % size64;
                }
                owners[slot as usize] = i as u32;
                next[i] = (slot + skips[i]) % size64;
                filled += 1;
                if filled == owners.len() {
                    break 'populate;
                }
            }
        }
    }
    owners.into_iter().map(|i| order[i as usize].id).collect()
}

/// The balancer's state.
#[derive(Debug)]
pub struct Maglev {
    table_size: u32,
    header: Option<String>,
    /// The lookup table: an endpoint id per slot; empty for an empty pool.
    table: Vec<EndpointId>,
}

impl Maglev {
    /// The request's key: the configured header's hash, else its hash.
    fn key(&self, request: &RequestInfo) -> Option<u64> {
        self.header
            .as_deref()
            .and_then(host::request_header)
            .map(|value| fnv1a64(value.as_bytes()))
            .or(request.hash)
    }
}

impl Balancer for Maglev {
    fn configure(config: &str) -> Result<Self, String> {
        let config: Config = switchyard_sdk::config::parse(config)?;
        let size = config.table_size;
        if !(MIN_TABLE_SIZE..=MAX_TABLE_SIZE).contains(&size) || !is_prime(size) {
            return Err(format!(
                "config key `table_size`: must be a prime from {MIN_TABLE_SIZE} to \
                 {MAX_TABLE_SIZE} (such as {DEFAULT_TABLE_SIZE}), got {size}"
            ));
        }
        if config.header.as_deref().is_some_and(str::is_empty) {
            return Err("config key `header`: must name a header".to_string());
        }
        Ok(Maglev {
            table_size: size,
            header: config.header,
            table: Vec::new(),
        })
    }

    fn set_endpoints(&mut self, endpoints: Vec<Endpoint>) {
        if endpoints.is_empty() {
            self.table = Vec::new();
            return;
        }
        if endpoints.len() > self.table_size as usize {
            host::log(
                LogLevel::Warn,
                &format!(
                    "{} endpoints but table_size is {}: some endpoints get no traffic",
                    endpoints.len(),
                    self.table_size
                ),
            );
        }
        self.table = populate(&endpoints, self.table_size);
    }

    fn pick(&mut self, request: &RequestInfo) -> Option<EndpointId> {
        if self.table.is_empty() {
            return None;
        }
        let slot = match self.key(request) {
            Some(key) => mix(key) % u64::from(self.table_size),
            None => u64::from(host::random_below(self.table_size)),
        };
        Some(self.table[slot as usize])
    }
}

export_balancer!(Maglev);

#[cfg(test)]
mod tests;
