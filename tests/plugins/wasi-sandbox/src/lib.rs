//! A balancer for the host's end-to-end tests that imports WASI 0.2 (as any
//! wasm32-wasip2 component does) and, in `configure`, looks for ambient
//! authority: environment variables, arguments, preopened directories, and a
//! TCP connection to the address in its config. It refuses to configure if
//! it finds any, so a host that loads it has shown WASI components load and
//! reach nothing. Each pick also writes a line to stdout and one to stderr
//! and waits on a clock, as a guest's `print` or `sleep` does: WASI's
//! blocking calls, which the host must answer without blocking its worker.

use serde::Deserialize;
use switchyard_sdk::{export_balancer, Balancer, Endpoint, EndpointId, RequestInfo};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// `a.b.c.d:port` the plugin tries to connect to.
    connect_to: String,
}

/// Picks the lowest id once configured.
#[derive(Debug, Default)]
pub struct WasiSandbox(Option<EndpointId>);

impl Balancer for WasiSandbox {
    fn configure(config: &str) -> Result<Self, String> {
        let config: Config = switchyard_sdk::config::parse(config)?;
        let reached = ambient_authority(&config.connect_to);
        if reached.is_empty() {
            Ok(Self::default())
        } else {
            Err(format!("the sandbox leaks: {}", reached.join(", ")))
        }
    }

    fn set_endpoints(&mut self, endpoints: Vec<Endpoint>) {
        self.0 = endpoints.iter().map(|e| e.id).min();
    }

    fn pick(&mut self, _request: &RequestInfo) -> Option<EndpointId> {
        blocking_calls();
        self.0
    }
}

#[cfg(target_arch = "wasm32")]
fn blocking_calls() {
    let stdout = wasi::cli::stdout::get_stdout();
    let _ = stdout.blocking_write_and_flush(b"wasi-sandbox picks\n");
    drop(stdout);
    let stderr = wasi::cli::stderr::get_stderr();
    let _ = stderr.blocking_write_and_flush(b"wasi-sandbox picks, on stderr\n");
    drop(stderr);
    let clock = wasi::clocks::monotonic_clock::subscribe_duration(1_000);
    clock.block();
    wasi::io::poll::poll(&[&clock]);
}

#[cfg(not(target_arch = "wasm32"))]
fn blocking_calls() {}

#[cfg(target_arch = "wasm32")]
fn ambient_authority(connect_to: &str) -> Vec<String> {
    use wasi::sockets::network::{IpAddressFamily, IpSocketAddress, Ipv4SocketAddress};

    let mut reached = Vec::new();
    let environment = wasi::cli::environment::get_environment();
    if !environment.is_empty() {
        reached.push(format!("{} environment variables", environment.len()));
    }
    if !wasi::cli::environment::get_arguments().is_empty() {
        reached.push("command-line arguments".to_string());
    }
    let directories = wasi::filesystem::preopens::get_directories();
    if !directories.is_empty() {
        reached.push(format!("{} preopened directories", directories.len()));
    }
    let Some((ip, port)) = connect_to.rsplit_once(':') else {
        reached.push(format!("bad connect_to `{connect_to}`"));
        return reached;
    };
    let octets: Vec<u8> = ip.split('.').filter_map(|o| o.parse().ok()).collect();
    let (Ok(port), [a, b, c, d]) = (port.parse::<u16>(), octets.as_slice()) else {
        reached.push(format!("bad connect_to `{connect_to}`"));
        return reached;
    };
    let network = wasi::sockets::instance_network::instance_network();
    if let Ok(socket) = wasi::sockets::tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4) {
        let address = IpSocketAddress::Ipv4(Ipv4SocketAddress {
            port,
            address: (*a, *b, *c, *d),
        });
        if socket.start_connect(&network, address).is_ok() {
            socket.subscribe().block();
            if socket.finish_connect().is_ok() {
                reached.push(format!("a TCP connection to {connect_to}"));
            }
        }
    }
    reached
}

#[cfg(not(target_arch = "wasm32"))]
fn ambient_authority(_connect_to: &str) -> Vec<String> {
    Vec::new()
}

export_balancer!(WasiSandbox);
