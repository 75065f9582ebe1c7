//! The `switchyard` command.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    about = "A programmable traffic manager with hot-swappable WebAssembly policy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve traffic as the config file says.
    Run {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file without running it: every problem is listed
    /// with its key and line, a plugin file a pool names must be in the
    /// plugin folder, and the TLS certificates, keys and CA files must load.
    /// Exits with 1 on any problem.
    Check {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Work with plugins.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Start three demo upstreams and a proxy in front of them, balanced by
    /// the bundled plugins in the plugin folder.
    Demo {
        /// The folder holding the built bundled plugins.
        #[arg(long, default_value = "plugins")]
        plugins: PathBuf,
        /// The proxy's port.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// The control endpoint's port.
        #[arg(long, default_value_t = 9090)]
        control_port: u16,
    },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Write a plugin project from a template: a standalone project with a
    /// working policy, its unit tests and a README, in Rust, JavaScript or
    /// Python. Exits with 2 when the name is not a valid plugin name, the
    /// folder is not empty, or the SDK is not found.
    New {
        /// The crate's name, and the built file's (`NAME.wasm`).
        name: String,
        /// The kind of plugin.
        #[arg(long, value_enum)]
        kind: switchyard::templates::Kind,
        /// The plugin's language.
        #[arg(long, value_enum, default_value = "rust")]
        lang: switchyard::templates::Lang,
        /// Where the project goes (missing or empty); default `./NAME`.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The SDK folder the project depends on (`sdk`, `sdk/js` or
        /// `sdk/python` of a checkout); default the one of the checkout this
        /// binary was built from.
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build plugin projects (Rust, Python or JavaScript) into components:
    /// OUT/NAME.wasm for each.
    Build {
        /// Folders of plugin projects.
        #[arg(required = true)]
        crate_dirs: Vec<PathBuf>,
        /// Where the .wasm files go.
        #[arg(long, default_value = "plugins")]
        out: PathBuf,
        /// Cargo's target folder for wasm builds.
        #[arg(long)]
        target_dir: Option<PathBuf>,
        /// Never install missing tools (Debian packages, componentize-py, jco).
        #[arg(long)]
        no_install: bool,
    },
    /// Load a plugin file as the host would and report its world, contract,
    /// imports, size, compile time and memory, and the cost of its calls
    /// (p50, p99, max) on pools of 10 and 10,000 endpoints against the
    /// per-call budget. Exits with 1 when the host would refuse the file or
    /// it faulted, 2 on a usage error.
    /// Make the picks of a recording (a pool's `record = { ... }`) again
    /// through a plugin file, every host call answered from the recording,
    /// and report the decisions that differ (with what led to them), the
    /// faults, and the cost per call beside the recorded version's. Exits
    /// with 1 when a decision differs and `--fail-on-difference` is given.
    Replay {
        /// The recording.
        recording: PathBuf,
        /// The plugin file to replay it through.
        #[arg(long)]
        plugin: PathBuf,
        /// The JSON each pool's state is made with; by default the config
        /// recorded.
        #[arg(long)]
        config: Option<String>,
        /// Differing picks shown in full.
        #[arg(long, default_value_t = switchyard::replay::EXAMPLES)]
        examples: usize,
        /// Exit with 1 when any decision differs.
        #[arg(long)]
        fail_on_difference: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    Check {
        /// The `.wasm` file.
        file: PathBuf,
        /// The JSON handed to the plugin's `configure`.
        #[arg(long, default_value = "{}")]
        config: String,
        /// Take the `[plugins]` settings (call budget, memory cap) from this
        /// config file rather than the defaults.
        #[arg(long)]
        plugins_config: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Timed calls per pool size for a balancer or recovery policy;
        /// a million soaks it as a long run would.
        #[arg(long, default_value_t = switchyard::check::CALLS,
              value_parser = clap::value_parser!(u32).range(100..=10_000_000))]
        calls: u32,
    },
}

/// The exit code of a usage error, as clap's own.
const USAGE_ERROR: i32 = 2;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // `plugin check` reports what the runtime logs; only errors are shown.
    let quiet = matches!(
        cli.command,
        Command::Plugin {
            command: PluginCommand::Check { .. }
        }
    );
    let directives =
        std::env::var("RUST_LOG").unwrap_or_else(|_| if quiet { "error" } else { "info" }.into());
    let mut filter = tracing_subscriber::EnvFilter::new(&directives);
    // rustls warns about what a peer sent, once per connection (an IP
    // address as SNI, as wrk sends): any client could grow the log at will.
    // Its warnings show only when RUST_LOG names it.
    if !directives.contains("rustls") {
        if let Ok(quiet) = "rustls=error".parse() {
            filter = filter.add_directive(quiet);
        }
    }
    // The log is written by a thread of its own: a worker (or a plugin's
    // log line during a call) never waits on a slow stderr. Lines beyond the
    // buffer are dropped and counted; the guard flushes the rest at exit.
    let (log_writer, _log_flush) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .thread_name("switchyard-log")
        .finish(std::io::stderr());
    switchyard::metrics::count_log_drops(log_writer.error_counter());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(log_writer)
        .init();
    match cli.command {
        Command::Run { config: path } => {
            let text = std::fs::read_to_string(&path).map_err(|source| {
                switchyard::config::ConfigError::Read {
                    path: path.clone(),
                    source,
                }
            })?;
            let config = switchyard::config::Config::parse(&text, &path.display().to_string())?;
            // The proxy runs on threads of its own (see `Server::run`); this
            // runtime serves the control API, health checks and timers.
            runtime(CONTROL_THREADS)?.block_on(serve(config, path, text))
        }
        Command::Check { config } => check(&config),
        Command::Plugin {
            command:
                PluginCommand::Build {
                    crate_dirs,
                    out,
                    target_dir,
                    no_install,
                },
        } => {
            for crate_dir in crate_dirs {
                let built = switchyard::build::build_plugin(&switchyard::build::BuildRequest {
                    crate_dir: crate_dir.clone(),
                    out_dir: out.clone(),
                    target_dir: target_dir.clone(),
                    allow_install: !no_install,
                })
                .with_context(|| format!("cannot build plugin {}", crate_dir.display()))?;
                println!("built {}", built.display());
            }
            Ok(())
        }
        Command::Plugin {
            command:
                PluginCommand::New {
                    name,
                    kind,
                    lang,
                    dir,
                    sdk,
                },
        } => plugin_new(switchyard::templates::NewRequest {
            kind,
            lang,
            name,
            dir,
            sdk,
        }),
        Command::Plugin {
            command:
                PluginCommand::Check {
                    file,
                    config,
                    plugins_config,
                    json,
                    calls,
                },
        } => plugin_check(file, config, plugins_config, json, calls),
        Command::Plugin {
            command:
                PluginCommand::Replay {
                    recording,
                    plugin,
                    config,
                    examples,
                    fail_on_difference,
                    json,
                },
        } => plugin_replay(
            switchyard::replay::ReplayRequest {
                recording,
                plugin,
                config_json: config,
                examples,
            },
            fail_on_difference,
            json,
        ),
        Command::Demo {
            plugins,
            port,
            control_port,
        } => runtime(2)?.block_on(switchyard::demo::run(plugins, port, control_port)),
    }
}

/// `switchyard plugin new`: the project's folder and the next commands, or
/// the reason nothing was written.
fn plugin_new(request: switchyard::templates::NewRequest) -> anyhow::Result<()> {
    match switchyard::templates::new_plugin(&request) {
        Ok(dir) => {
            println!(
                "wrote {} plugin `{}` in {}",
                request.kind,
                request.name,
                dir.display()
            );
            let test = match request.lang {
                switchyard::templates::Lang::Rust => "cargo test",
                switchyard::templates::Lang::Js => "npm install && npm test",
                switchyard::templates::Lang::Python => "python3 -m pytest",
            };
            println!("next: cd {} && {test}", dir.display());
            println!("      switchyard plugin build . --out ../plugins");
            Ok(())
        }
        Err(error) => {
            eprintln!("switchyard plugin new: {error}");
            std::process::exit(if error.is_usage() { USAGE_ERROR } else { 1 });
        }
    }
}

/// `switchyard check`: the config's problems, missing plugin files and TLS
/// files that do not load, or a one-line summary.
fn check(path: &std::path::Path) -> anyhow::Result<()> {
    let config = match switchyard::config::Config::load(path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            std::process::exit(1);
        }
    };
    let mut missing = Vec::new();
    for (key, name) in config.plugin_keys() {
        let file = config.plugins.dir.join(format!("{name}.wasm"));
        if !file.is_file() {
            missing.push(format!("`{key}` = \"{name}\": no file {}", file.display()));
        }
    }
    // The files TLS reads: each listener's certificates and keys, each
    // pool's CA.
    for (index, listener) in config.listeners.iter().enumerate() {
        if let Some(tls) = &listener.tls {
            let key = format!("listeners[{index}].tls");
            if let Err(error) = switchyard::proxy::tls::TlsTerminator::new(tls, key) {
                missing.push(format!("{error:#}"));
            }
        }
    }
    for (index, pool) in config.pools.iter().enumerate() {
        let key = format!("pools[{index}] (`{}`)", pool.name);
        if let Err(error) = switchyard::proxy::tls::upstream_protocol(pool, &key) {
            missing.push(format!("{error:#}"));
        }
    }
    if !missing.is_empty() {
        eprintln!("config {}: {} problem(s):", path.display(), missing.len());
        for problem in missing {
            eprintln!("  {problem}");
        }
        std::process::exit(1);
    }
    println!(
        "config {} is valid: {} pool(s), {} route(s)",
        path.display(),
        config.pools.len(),
        config.routes.len()
    );
    Ok(())
}

/// `switchyard plugin replay`: the report on stdout; exit 1 when a decision
/// differs and `fail_on_difference`, 2 on a usage error.
fn plugin_replay(
    request: switchyard::replay::ReplayRequest,
    fail_on_difference: bool,
    json: bool,
) -> anyhow::Result<()> {
    if let Some(config) = &request.config_json {
        if let Err(error) = serde_json::from_str::<serde_json::Value>(config) {
            eprintln!("error: --config is not JSON: {error}");
            std::process::exit(USAGE_ERROR);
        }
    }
    for file in [&request.recording, &request.plugin] {
        if !file.is_file() {
            eprintln!("error: {}: no such file", file.display());
            std::process::exit(USAGE_ERROR);
        }
    }
    let report = switchyard::replay::replay(&request)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", switchyard::replay::render(&report));
    }
    if fail_on_difference && report.agreed != report.picks {
        std::process::exit(1);
    }
    Ok(())
}

/// `switchyard plugin check`: the report on stdout, exit 1 when the file
/// would be rejected, 2 on a usage error.
fn plugin_check(
    file: PathBuf,
    config_json: String,
    plugins_config: Option<PathBuf>,
    json: bool,
    calls: u32,
) -> anyhow::Result<()> {
    let usage = |message: String| -> ! {
        eprintln!("error: {message}");
        std::process::exit(USAGE_ERROR);
    };
    if let Err(error) = serde_json::from_str::<serde_json::Value>(&config_json) {
        usage(format!("--config is not JSON: {error}"));
    }
    if !file.is_file() {
        usage(format!("{}: no such file", file.display()));
    }
    let (plugins, settings_from) = match plugins_config {
        Some(path) => match switchyard::check::plugins_settings(&path) {
            Ok(plugins) => (plugins, format!("[plugins] of {}", path.display())),
            Err(error) => usage(format!("{error:#}")),
        },
        None => (
            switchyard::config::PluginsConfig::default(),
            "defaults".to_string(),
        ),
    };
    let report = switchyard::check::check(&switchyard::check::CheckRequest {
        file,
        config_json,
        plugins,
        settings_from,
        calls,
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    std::process::exit(report.exit_code());
}

/// Threads of the runtime beside the proxy workers.
const CONTROL_THREADS: usize = 2;

fn runtime(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("switchyard-main")
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

async fn serve(
    config: switchyard::config::Config,
    path: PathBuf,
    text: String,
) -> anyhow::Result<()> {
    use switchyard::config::store::version_of;
    // In a fleet, what serves is the working copy: this file's own tables
    // and the fleet's pools and routes from etcd.
    let (config, file, version, fleet) = match config.cluster.clone() {
        Some(cluster) => {
            let fleet = switchyard::cluster::Fleet::join(
                &path,
                &text,
                &cluster,
                config.control.listen.port(),
                &config.plugins.dir,
            )
            .await?;
            let working = fleet.working_path().to_path_buf();
            let text = std::fs::read_to_string(&working)
                .with_context(|| format!("cannot read {}", working.display()))?;
            let config = switchyard::config::Config::parse(&text, &working.display().to_string())?;
            (config, working, version_of(&text), Some(fleet))
        }
        None => (config, path, version_of(&text), None),
    };
    let mut server = switchyard::Server::bind(config).await?;
    if let Some(fleet) = fleet {
        server = server.with_fleet(fleet);
    }
    let server = server.reload_from(file, version)?;
    // One machine-readable line, so scripts and tests can find the ports.
    let mut line = format!(
        "switchyard listening proxy={} control={}",
        server.proxy_addr(),
        server.control_addr()
    );
    for (address, tls) in server.listener_addrs() {
        line.push_str(&format!(
            " {}={address}",
            if tls { "https" } else { "http" }
        ));
    }
    println!("{line}");
    server.run(switchyard::shutdown_signal()).await
}
