//! Filter layer: compile a subscription's declarative filter once, evaluate it per event.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fraiseql_subscriptions::filter::{CompiledFilter, FilterSpec};
use serde_json::{json, Map, Value};

/// A 3-condition filter: `eq` bound to an argument, `gt` on a number, `in` a list.
fn spec() -> FilterSpec {
    let spec = json!({
        "all": [
            { "path": "room", "op": "eq", "arg": "room" },
            { "path": "author.karma", "op": "gt", "value": 10 },
            { "path": "kind", "op": "in", "value": ["text", "image", "link"] }
        ]
    });
    serde_json::from_value(spec).unwrap_or_else(|_| FilterSpec::all([]))
}

fn arguments() -> Map<String, Value> {
    match json!({ "room": "lobby", "limit": 50 }) {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// A realistic chat event: about ten fields and a nested author.
fn event() -> Value {
    json!({
        "id": "msg_01HZX3K8Q9R2T5V7W0Y4B6D8F",
        "room": "lobby",
        "kind": "link",
        "text": "have a look at https://example.com/release-notes",
        "created_at": "2025-05-04T12:34:56.789Z",
        "edited": false,
        "reply_to": null,
        "reactions": 3,
        "tags": ["release", "news"],
        "author": {
            "id": "usr_42",
            "name": "Ada",
            "karma": 128,
            "roles": ["member", "moderator"]
        }
    })
}

fn evaluate(c: &mut Criterion) {
    let spec = spec();
    let filter = CompiledFilter::compile(&spec, &arguments());
    let Ok(filter) = filter else { return };
    let hit = event();
    let mut miss = event();
    if let Some(room) = miss.get_mut("room") {
        *room = json!("attic");
    }
    let mut group = c.benchmark_group("filter/matches");
    group.throughput(Throughput::Elements(1));
    group.bench_function("3_conditions/hit", |b| {
        b.iter(|| black_box(&filter).matches(black_box(&hit)));
    });
    group.bench_function("3_conditions/miss_first", |b| {
        b.iter(|| black_box(&filter).matches(black_box(&miss)));
    });
    let always = CompiledFilter::always();
    group.bench_function("always", |b| {
        b.iter(|| black_box(&always).matches(black_box(&hit)));
    });
    group.finish();
}

fn hashed_in_list(c: &mut Criterion) {
    let ids: Vec<Value> = (0..1000).map(|i| json!(format!("usr_{i}"))).collect();
    let spec = json!({ "path": "author.id", "op": "in", "value": ids });
    let Ok(spec) = serde_json::from_value::<FilterSpec>(spec) else {
        return;
    };
    let Ok(filter) = CompiledFilter::compile(&spec, &Map::new()) else {
        return;
    };
    let hit = event();
    c.bench_function("filter/matches/in_1000_strings", |b| {
        b.iter(|| black_box(&filter).matches(black_box(&hit)));
    });
}

fn compile(c: &mut Criterion) {
    let spec = spec();
    let arguments = arguments();
    c.bench_function("filter/compile/3_conditions", |b| {
        b.iter(|| CompiledFilter::compile(black_box(&spec), black_box(&arguments)));
    });
}

criterion_group!(benches, evaluate, hashed_in_list, compile);
criterion_main!(benches);
