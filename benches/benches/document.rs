//! Document layer: prepare a subscription (warm and cold cache), write a projected payload.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use fraiseql_subscriptions::document::{DocumentLimits, SubscriptionDocuments};
use serde_json::{json, Map, Value};

const SDL: &str = r"
type Query { ping: String }
type Subscription { messageAdded(roomId: ID!, since: Int = 0): Message! }
type Message {
  id: ID! roomId: ID! text: String! createdAt: String! editedAt: String kind: String!
  author: User! reactions: [String!]! mentions: [ID!]! threadId: ID pinned: Boolean!
  attachments: [String!]! locale: String! client: String! seq: Int!
}
type User { id: ID! name: String! email: String avatar: String role: String! }
";

const QUERY: &str = r"subscription OnMessage($room: ID!) {
  messageAdded(roomId: $room) {
    id
    text
    createdAt
    kind
    author { id name avatar }
    reactions
  }
}";

fn variables() -> Map<String, Value> {
    let mut vars = Map::new();
    vars.insert("room".into(), json!("room-42"));
    vars
}

/// A ~15-field chat message event, as a bus would carry it.
fn event() -> Value {
    json!({
        "id": "msg-7f3a", "roomId": "room-42", "text": "Hello there, how is the deploy going?",
        "createdAt": "2025-01-01T12:00:00Z", "editedAt": null, "kind": "TEXT",
        "author": {"id": "u-1", "name": "Ada", "email": "ada@example.com",
                   "avatar": "https://cdn.example.com/a.png", "role": "admin"},
        "reactions": ["+1", "tada"], "mentions": ["u-2"], "threadId": null, "pinned": false,
        "attachments": [], "locale": "en", "client": "web", "seq": 1234
    })
}

fn prepare(c: &mut Criterion) {
    let vars = variables();
    let mut group = c.benchmark_group("document/prepare");
    group.throughput(Throughput::Elements(1));
    for (label, sdl) in [("no_schema", None), ("schema", Some(SDL))] {
        let documents = SubscriptionDocuments::new(sdl, DocumentLimits::default())
            .unwrap_or_else(|e| unreachable!("the bench schema is valid: {e}"));
        let _ = documents.prepare(QUERY, None, Some(&vars));
        group.bench_function(format!("warm/{label}"), |b| {
            b.iter(|| documents.prepare(black_box(QUERY), None, Some(black_box(&vars))));
        });
        group.bench_function(format!("cold/{label}"), |b| {
            b.iter_batched(
                || SubscriptionDocuments::new(sdl, DocumentLimits::default()),
                |documents| {
                    documents.map(|d| d.prepare(black_box(QUERY), None, Some(black_box(&vars))))
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

fn write_payload(c: &mut Criterion) {
    let documents = SubscriptionDocuments::new(Some(SDL), DocumentLimits::default())
        .unwrap_or_else(|e| unreachable!("the bench schema is valid: {e}"));
    let Ok(prepared) = documents.prepare(QUERY, None, Some(&variables())) else {
        unreachable!("the bench document is valid")
    };
    let value = event();
    let mut out = Vec::with_capacity(512);
    let mut group = c.benchmark_group("document/projection");
    group.throughput(Throughput::Elements(1));
    group.bench_function("write_payload/chat_message", |b| {
        b.iter(|| {
            out.clear();
            prepared
                .plan
                .write_payload(&prepared.response_key, black_box(&value), &mut out);
            black_box(out.len())
        });
    });
    group.bench_function("project/chat_message", |b| {
        b.iter(|| prepared.plan.project(black_box(&value)));
    });
    group.finish();
}

criterion_group!(benches, prepare, write_payload);
criterion_main!(benches);
