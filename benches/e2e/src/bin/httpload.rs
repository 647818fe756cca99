//! `httpload`: HTTP/1.1 keep-alive load against one URL, for the hosted-app benchmark
//! (`benches/python/http_hosting.py`). C connections each send GET requests back to back
//! for the duration (after a warm-up); reports requests/s, body bytes/s, latency
//! percentiles and errors as one JSON line on stdout.
//!
//! ```sh
//! httpload --url http://127.0.0.1:8000/json --connections 64 --duration-secs 10
//! ```
#![allow(clippy::print_stdout)] // the report is the binary's output

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1;
use hyper::header::HOST;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// HTTP/1.1 keep-alive load generator (one URL, GET).
#[derive(Debug, Parser)]
struct Args {
    /// `http://host:port/path?query` (no TLS).
    #[arg(long)]
    url: String,
    /// Concurrent keep-alive connections, one request in flight on each.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    duration_secs: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup_secs: f64,
}

/// Shared counters.
#[derive(Debug, Default)]
struct Totals {
    measuring: AtomicBool,
    stop: AtomicBool,
    requests: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
}

fn parse(url: &str) -> Result<(SocketAddr, String, String), BoxError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("the URL must start with http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = std::net::ToSocketAddrs::to_socket_addrs(authority)?
        .next()
        .ok_or("the URL's host does not resolve")?;
    Ok((addr, authority.to_owned(), path.to_owned()))
}

async fn client(
    addr: SocketAddr,
    host: String,
    path: String,
    totals: Arc<Totals>,
    latencies: Arc<Mutex<Histogram<u64>>>,
) -> Result<(), BoxError> {
    let mut local = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    while !totals.stop.load(Ordering::Relaxed) {
        let request = Request::get(path.as_str())
            .header(HOST, host.as_str())
            .body(Empty::<Bytes>::new())?;
        let started = Instant::now();
        let outcome = async {
            let response = sender.send_request(request).await?;
            let ok = response.status().is_success();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, BoxError>((ok, body.len()))
        }
        .await;
        let elapsed = started.elapsed();
        if !totals.measuring.load(Ordering::Relaxed) {
            if outcome.is_err() {
                return outcome.map(drop);
            }
            continue;
        }
        match outcome {
            Ok((true, bytes)) => {
                totals.requests.fetch_add(1, Ordering::Relaxed);
                totals.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
                local.saturating_record(micros.max(1));
            }
            Ok((false, _)) => {
                totals.errors.fetch_add(1, Ordering::Relaxed);
            }
            Err(err) => {
                totals.errors.fetch_add(1, Ordering::Relaxed);
                latencies
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .add(&local)?;
                return Err(err);
            }
        }
    }
    latencies
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .add(&local)?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let (addr, host, path) = parse(&args.url)?;
    let totals = Arc::new(Totals::default());
    let latencies = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1,
        600_000_000,
        3,
    )?));
    let mut clients = Vec::new();
    for _ in 0..args.connections {
        clients.push(tokio::spawn(client(
            addr,
            host.clone(),
            path.clone(),
            Arc::clone(&totals),
            Arc::clone(&latencies),
        )));
    }
    tokio::time::sleep(Duration::from_secs_f64(args.warmup_secs)).await;
    totals.measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    // Measures for the duration, or until the process that started this one is gone (a
    // benchmark server killed by the load generator takes its background load with it).
    let parent = std::os::unix::process::parent_id();
    let deadline = started + Duration::from_secs_f64(args.duration_secs);
    while Instant::now() < deadline && std::os::unix::process::parent_id() == parent {
        tokio::time::sleep(
            Duration::from_millis(200).min(deadline.saturating_duration_since(Instant::now())),
        )
        .await;
    }
    totals.measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    totals.stop.store(true, Ordering::Relaxed);
    let mut failed = 0;
    for client in clients {
        if !matches!(client.await, Ok(Ok(()))) {
            failed += 1;
        }
    }
    let histogram = latencies
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let requests = totals.requests.load(Ordering::Relaxed);
    #[allow(clippy::cast_precision_loss)]
    let report = serde_json::json!({
        "url": args.url,
        "connections": args.connections,
        "seconds": elapsed,
        "requests": requests,
        "requests_per_sec": requests as f64 / elapsed,
        "mb_per_sec": totals.bytes.load(Ordering::Relaxed) as f64 / elapsed / 1e6,
        "errors": totals.errors.load(Ordering::Relaxed),
        "failed_connections": failed,
        "p50_ms": histogram.value_at_quantile(0.50) as f64 / 1000.0,
        "p99_ms": histogram.value_at_quantile(0.99) as f64 / 1000.0,
        "max_ms": histogram.max() as f64 / 1000.0,
    });
    println!("{report}");
    Ok(())
}
