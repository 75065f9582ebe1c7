//! `switchyard-rate`: sends GET requests at a constant rate over keep-alive
//! connections and prints latency percentiles, so proxies can be compared at
//! the same offered load (wrk drives as fast as it can, which measures
//! capacity, not latency at a given load).
//!
//! Each connection is a thread with a blocking socket: it sends its next
//! request at its next scheduled instant (`connections / rate` apart),
//! sleeping until then, and times each request from its write to the last
//! byte of its response. Threads and `std::thread::sleep` are used rather
//! than an async runtime because the runtime's timers have a 1 ms
//! granularity, which would bunch requests into bursts at every tick.
//!
//! ```text
//! switchyard-rate --url http://127.0.0.1:8080/ --rate 20000 --connections 32 --seconds 10
//! RESULT sent 200000
//! RESULT errors 0
//! RESULT rate 19998.7
//! RESULT p50 212
//! RESULT p99 455
//! RESULT p99.9 801
//! ```
//! Latencies are in microseconds.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "switchyard-rate",
    about = "Constant-rate HTTP/1.1 GET load with latency percentiles"
)]
struct Args {
    /// `http://HOST:PORT/PATH`
    #[arg(long)]
    url: String,
    /// Requests per second, over all connections.
    #[arg(long)]
    rate: f64,
    /// Keep-alive connections, one thread each.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seconds sent at the same rate before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
}

/// One connection's results.
#[derive(Debug, Default)]
struct Tally {
    latencies_micros: Vec<u32>,
    errors: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.rate.is_finite() || args.rate <= 0.0 || args.connections == 0 {
        bail!("--rate must be positive and --connections at least 1");
    }
    let (address, host, path) = parse_url(&args.url)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes();
    let interval = Duration::from_secs_f64(args.connections as f64 / args.rate);
    let start = Instant::now() + Duration::from_millis(100);
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.seconds);

    let threads: Vec<_> = (0..args.connections)
        .map(|index| {
            let request = request.clone();
            // Connections start staggered across one interval.
            let first = start + interval.mul_f64(index as f64 / args.connections as f64);
            std::thread::spawn(move || {
                connection(address, &request, first, interval, measure_from, end)
            })
        })
        .collect();
    let mut all = Tally::default();
    for thread in threads {
        let tally = thread.join().expect("a load thread panicked")?;
        all.latencies_micros.extend(tally.latencies_micros);
        all.errors += tally.errors;
    }
    let sent = all.latencies_micros.len() as u64 + all.errors;
    all.latencies_micros.sort_unstable();
    let percentile = |q: f64| -> u32 {
        let values = &all.latencies_micros;
        if values.is_empty() {
            return 0;
        }
        values[((values.len() - 1) as f64 * q / 100.0).round() as usize]
    };
    println!("RESULT sent {sent}");
    println!("RESULT errors {}", all.errors);
    println!("RESULT rate {:.1}", sent as f64 / args.seconds);
    for q in [50.0, 99.0, 99.9] {
        println!("RESULT p{q} {}", percentile(q));
    }
    Ok(())
}

fn parse_url(url: &str) -> anyhow::Result<(SocketAddr, String, String)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("--url `{url}` must start with http://"))?;
    let (host, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let address = host
        .to_socket_addrs()
        .with_context(|| format!("--url `{url}`: cannot resolve `{host}`"))?
        .next()
        .with_context(|| format!("--url `{url}`: `{host}` has no address"))?;
    Ok((address, host.to_owned(), path.to_owned()))
}

fn connection(
    address: SocketAddr,
    request: &[u8],
    mut next: Instant,
    interval: Duration,
    measure_from: Instant,
    end: Instant,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    let mut stream: Option<TcpStream> = None;
    let mut buffer = vec![0u8; 64 * 1024];
    while next < end {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        let measured = next >= measure_from;
        next += interval;
        if stream.is_none() {
            let opened = TcpStream::connect(address)?;
            opened.set_nodelay(true)?;
            opened.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream = Some(opened);
        }
        let socket = stream.as_mut().expect("opened above");
        let sent = Instant::now();
        match exchange(socket, request, &mut buffer) {
            Ok(()) if measured => {
                let micros = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                tally.latencies_micros.push(micros);
            }
            Ok(()) => {}
            Err(_) => {
                // A broken connection is reopened for the next request.
                stream = None;
                if measured {
                    tally.errors += 1;
                }
            }
        }
    }
    Ok(tally)
}

/// Writes the request and reads one whole `200` response with a
/// `content-length` body.
fn exchange(stream: &mut TcpStream, request: &[u8], buffer: &mut [u8]) -> anyhow::Result<()> {
    stream.write_all(request)?;
    let mut filled = 0;
    loop {
        let read = stream.read(&mut buffer[filled..])?;
        if read == 0 {
            bail!("connection closed");
        }
        filled += read;
        let Some(head_end) = buffer[..filled].windows(4).position(|w| w == b"\r\n\r\n") else {
            if filled == buffer.len() {
                bail!("response head too long");
            }
            continue;
        };
        let head = std::str::from_utf8(&buffer[..head_end])?;
        if !head.starts_with("HTTP/1.1 200") {
            bail!("status line `{}`", head.lines().next().unwrap_or(""));
        }
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .context("no content-length")?;
        let total = head_end + 4 + length;
        while filled < total {
            if total > buffer.len() {
                bail!("response larger than the buffer");
            }
            let read = stream.read(&mut buffer[filled..])?;
            if read == 0 {
                bail!("connection closed mid-body");
            }
            filled += read;
        }
        return Ok(());
    }
}
