//! Protocol layer: parse a `subscribe`, encode a `next` frame, run a connection's life.

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fraiseql_benches::{payload_of_len, subscribe_message};
use fraiseql_protocol::{
    encode_next, parse_client_message, Action, ConnectionConfig, NextFramePrefix, Protocol,
    ServerConnection,
};

const MODERN: Protocol = Protocol::GraphqlTransportWs;

fn parse_subscribe(c: &mut Criterion) {
    let text = subscribe_message("6f1c0a3e-4b1d-4a7e-9c55-0d5f1e2a9b77");
    let mut group = c.benchmark_group("protocol/parse");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("subscribe", |b| {
        b.iter(|| parse_client_message(MODERN, black_box(&text), 256 * 1024));
    });
    group.finish();
}

fn encode_next_frames(c: &mut Criterion) {
    let id = "6f1c0a3e-4b1d-4a7e-9c55-0d5f1e2a9b77";
    let mut group = c.benchmark_group("protocol/encode_next");
    for len in [100_usize, 4096] {
        let payload = payload_of_len(len);
        let prefix = NextFramePrefix::new(MODERN, id);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(format!("prefix/{len}B"), |b| {
            b.iter(|| prefix.encode(black_box(&payload)));
        });
        group.bench_function(format!("from_id/{len}B"), |b| {
            b.iter(|| encode_next(MODERN, black_box(id), black_box(&payload)));
        });
    }
    group.finish();
}

fn connection_lifecycle(c: &mut Criterion) {
    let init = r#"{"type":"connection_init","payload":{"authorization":"Bearer abc"}}"#;
    let subscribe = subscribe_message("1");
    let complete = r#"{"id":"1","type":"complete"}"#;
    let config = ConnectionConfig::default();
    c.bench_function("protocol/connection/init_subscribe_complete", |b| {
        b.iter(|| {
            let now = Instant::now();
            let mut conn = ServerConnection::new(MODERN, config, now);
            conn.handle_text(black_box(init), now);
            let _ = conn.poll_action();
            let _ = conn.accept(None, now);
            let _ = conn.poll_action();
            conn.handle_text(black_box(&subscribe), now);
            if let Some(Action::Start { key, .. }) = conn.poll_action() {
                black_box(conn.next(key, r#"{"data":{"x":1}}"#));
            }
            conn.handle_text(black_box(complete), now);
            black_box(conn.poll_action());
        });
    });
}

criterion_group!(
    benches,
    parse_subscribe,
    encode_next_frames,
    connection_lifecycle
);
criterion_main!(benches);
