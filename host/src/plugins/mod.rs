//! The WebAssembly plugin runtime: the only module that knows wasmtime.
pub mod bindings;
