pub mod config;
pub mod engine;
pub mod plugins;
