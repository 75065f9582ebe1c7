//! The endpoint server: a keep-alive HTTP/1.1 server that names itself in every answer.

use std::convert::Infallible;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// How long a restarted endpoint retries a bind its killed predecessor may
/// still hold.
const BIND_RETRY: Duration = Duration::from_secs(2);

/// Pause between two bind attempts.
const BIND_PAUSE: Duration = Duration::from_millis(20);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to serve on, e.g. `127.0.0.1:8081`.
    #[arg(long)]
    listen: SocketAddr,
    /// Sent as the body (`NAME\n`) and as the `x-upstream` header.
    #[arg(long)]
    name: String,
    /// Exit when standard input closes, so an endpoint never outlives the
    /// soak that started it, even one killed with SIGKILL.
    #[arg(long)]
    exit_with_stdin: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let listener = bind(args.listen).await?;
    let address = listener
        .local_addr()
        .context("cannot read the bound address")?;
    // The soak waits for this line before it counts the endpoint as up.
    println!("listening {address}");

    if args.exit_with_stdin {
        tokio::spawn(async {
            let mut sink = [0u8; 64];
            let mut stdin = tokio::io::stdin();
            while matches!(stdin.read(&mut sink).await, Ok(n) if n > 0) {}
            std::process::exit(0);
        });
    }

    let body = Bytes::from(format!("{}\n", args.name));
    let name = http::HeaderValue::from_str(&args.name)
        .with_context(|| format!("`{}` is not a valid header value", args.name))?;
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors or a reset before accept: keep serving.
            Err(_) => continue,
        };
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        let name = name.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(request, body.clone(), name.clone()));
            // A client that goes away mid-exchange is not the server's error.
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    request: Request<Incoming>,
    body: Bytes,
    name: http::HeaderValue,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = if request.uri().path() == "/healthz" {
        Bytes::from_static(b"ok")
    } else {
        body
    };
    let mut response = Response::new(Full::new(body));
    response.headers_mut().insert("x-upstream", name);
    Ok(response)
}

/// Binds `address`, retrying while the port is still taken.
async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    let started = Instant::now();
    loop {
        match TcpListener::bind(address).await {
            Ok(listener) => return Ok(listener),
            Err(error)
                if error.kind() == ErrorKind::AddrInUse && started.elapsed() < BIND_RETRY =>
            {
                tokio::time::sleep(BIND_PAUSE).await;
            }
            Err(error) => return Err(error).with_context(|| format!("cannot bind {address}")),
        }
    }
}
