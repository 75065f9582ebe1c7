//! Weighted random: each pick chooses an endpoint with probability
//! `weight / sum(weights)`, independently of every other pick, in O(1) by
//! Walker's alias method as built by Vose (M. D. Vose, "A Linear Algorithm
//! for Generating Random Numbers with a Given Distribution", IEEE TSE 17(9),
//! 1991; explained in K. Schwarz, "Darts, Dice, and Coins",
//! <https://www.keithschwarz.com/darts-dice-coins/>).
//!
//! `set_endpoints` builds, in O(n), a table of n columns of equal height:
//! column i holds endpoint i up to a threshold and its alias above it. A pick
//! is one host random number: its high half chooses a column, its low half
//! is compared with the column's threshold. The table is built in exact
//! integer arithmetic; only the thresholds round, by less than 2^-32.
//!
//! Config: none (`{}`).

use serde::Deserialize;
use switchyard_sdk::{export_balancer, host, Balancer, Endpoint, EndpointId, RequestInfo};

/// The plugin's config, as given in the pool's `balancer.config`: no keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

/// One column of the alias table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Column {
    /// A low random half below this (out of 2^32) picks the column's own
    /// endpoint; at 2^32 it always does.
    threshold: u64,
    /// The index of the endpoint picked otherwise.
    alias: u32,
}

/// Builds Vose's alias table for `weights` (each at least 1, not empty).
///
/// Column capacity is `total = sum(weights)`; endpoint i brings `w_i · n`.
/// Each underfull column is topped up from an overfull one, which becomes its
/// alias; all arithmetic is exact.
fn alias_table(weights: &[u64]) -> Vec<Column> {
    let n = weights.len() as u128;
    let total: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    let mut mass: Vec<u128> = weights.iter().map(|&w| u128::from(w) * n).collect();
    // Until set, a column keeps all of its mass: it never uses its alias.
    let mut own = vec![total; weights.len()];
    let mut alias: Vec<u32> = (0..weights.len() as u32).collect();
    let (mut small, mut large): (Vec<usize>, Vec<usize>) =
        (0..weights.len()).partition(|&i| mass[i] < total);
    while let (Some(&under), Some(&over)) = (small.last(), large.last()) {
        small.pop();
        own[under] = mass[under];
        alias[under] = over as u32;
        mass[over] -= total - mass[under];
        if mass[over] < total {
            large.pop();
            small.push(over);
        }
    }
    // Exact arithmetic leaves both lists empty together; anything left over
    // is full and keeps `own = total`.
    own.iter()
        .zip(alias)
        .map(|(&own, alias)| Column {
            threshold: ((own << 32) / total) as u64,
            alias,
        })
        .collect()
}

/// The balancer's state.
#[derive(Debug, Default)]
pub struct WeightedRandom {
    ids: Vec<EndpointId>,
    columns: Vec<Column>,
}

impl Balancer for WeightedRandom {
    fn configure(config: &str) -> Result<Self, String> {
        let Config {} = switchyard_sdk::config::parse(config)?;
        Ok(Self::default())
    }

    fn set_endpoints(&mut self, endpoints: Vec<Endpoint>) {
        self.ids = endpoints.iter().map(|e| e.id).collect();
        let weights: Vec<u64> = endpoints
            .iter()
            .map(|e| u64::from(e.weight.max(1)))
            .collect();
        self.columns = if weights.is_empty() {
            Vec::new()
        } else {
            alias_table(&weights)
        };
    }

    fn pick(&mut self, _request: &RequestInfo) -> Option<EndpointId> {
        let n = self.ids.len() as u64;
        if n == 0 {
            return None;
        }
        let random = host::random_u64();
        // Lemire's multiply-shift on the high half; the low half is the coin.
        let column = ((random >> 32) * n) >> 32;
        let Column { threshold, alias } = self.columns[column as usize];
        let index = if random & 0xffff_ffff < threshold {
            column as usize
        } else {
            alias as usize
        };
        Some(self.ids[index])
    }
}

export_balancer!(WeightedRandom);

#[cfg(test)]
mod tests;
