//! The host side of the imports plugins may call, one file per interface.

mod host;
mod probe;
mod v0_1;
