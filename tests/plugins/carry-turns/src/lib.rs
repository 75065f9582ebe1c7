//! A balancer for the host's tests of state carried across a swap: it
//! takes turns over the pushed endpoints, counts its picks in the pool's
//! store, and its place is snapshot as format 1. `carry-turns-2` is the same balancer reading only format 2.

/// The snapshot format this build writes and reads.
pub const FORMAT: u8 = 1;

pub mod turns;

switchyard_sdk::export_balancer!(turns::CarryTurns);
