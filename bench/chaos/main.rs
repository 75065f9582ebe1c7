//! `switchyard-chaos`: kills and restarts a pool's endpoints and swaps its
//! balancer plugin while clients send traffic through Switchyard, then
//! reports the share of requests delivered.
//!
//! Layout: `upstream` is the endpoint server each child process runs;
//! `soak` starts the endpoints and Switchyard and runs the scenario;
//! `chaos` holds the killer and the swapper; `client` sends and classifies
//! requests; `process` makes sure no child outlives the soak; `report`
//! prints the result.
//!
//! ```text
//! switchyard plugin build plugins/round-robin plugins/least-request plugins/peak-ewma \
//!     plugins/random plugins/http-health plugins/retry-backoff --out /tmp/plugins
//! switchyard-chaos soak --switchyard target/release/switchyard --plugins /tmp/plugins --duration 60
//! ```

mod chaos;
mod client;
mod process;
mod report;
mod soak;
mod upstream;

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "switchyard-chaos",
    about = "Chaos soak: endpoint kills and balancer swaps under load"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve `NAME\n` to every request; the endpoint the soak kills.
    Upstream(upstream::Args),
    /// Run the scenario and print the delivered share.
    Soak(soak::Args),
}

fn main() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Command::Upstream(args) => {
            // One thread: many upstreams share the machine with the proxy
            // under test.
            current_thread()?.block_on(upstream::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Soak(args) => {
            let json = args.json;
            let min_delivered = args.min_delivered;
            let report = current_thread()?.block_on(async {
                // Dropping the soak on a signal drops its processes, which
                // are killed and reaped on drop.
                tokio::select! {
                    report = soak::run(args) => report,
                    signal = stop_signal() => Err(signal),
                }
            })?;
            if json {
                println!("{}", report.json());
            } else {
                print!("{}", report.human());
            }
            match min_delivered {
                Some(min) if report.delivered_share_without_cuts() < min => {
                    eprintln!(
                        "delivered share without cuts {:.4}% is below --min-delivered {min}%",
                        report.delivered_share_without_cuts()
                    );
                    Ok(ExitCode::from(1))
                }
                _ => Ok(ExitCode::SUCCESS),
            }
        }
    }
}

fn current_thread() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Resolves on Ctrl-C or SIGTERM with the error the soak ends with.
async fn stop_signal() -> anyhow::Error {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(terminate) => terminate,
        Err(error) => return anyhow::Error::new(error).context("cannot watch SIGTERM"),
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => anyhow::anyhow!("interrupted"),
        _ = terminate.recv() => anyhow::anyhow!("terminated"),
    }
}
