//! End-to-end tests: the real `switchyard` binary, real upstream servers on
//! loopback, plugins built from source with `switchyard plugin build`.

mod admission;
mod api_writes;
mod balancing;
mod broadcast;
mod churn;
mod config_reload;
mod console;
mod control_api;
mod demo;
mod fast_path;
mod grpc;
mod guest_plugins;
mod health;
mod hostile;
mod plugin_check;
mod plugin_logs;
mod plugin_new;
mod plugin_state;
mod priority;
mod protocols;
mod proxying;
mod rate_limit;
mod recovery;
mod reload;
mod replay;
mod restart;
mod rollout;
mod route_recovery;
mod routes_match;
mod runtime_api;
mod sandbox;
mod scale;
mod split_mirror;
mod support;
mod tls;
