//! The host side of the imports plugins may call, one file per interface.

mod host;
mod probe;
mod store;
mod v0_1;
pub(crate) mod wasi_io;
