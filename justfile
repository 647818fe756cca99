# FraiseQL Subscriptions — the commands a newcomer needs. `just --list` shows them all.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Show the recipes.
default:
    @just --list

# Run the live demo: a chat room at http://127.0.0.1:8000 (in-memory bus, no services).
demo bind="127.0.0.1:8000":
    cargo run --quiet -p fraiseql-server --example demo -- --bind {{bind}}

# The whole test suite: formatting, lints, then every test. CI runs exactly this.
test: lint
    cargo test --workspace --all-targets
    cargo test --workspace --doc
    just test-js

# Formatting and lints, with warnings as errors.
lint:
    cargo fmt --all -- --check
    cargo fmt --manifest-path fuzz/Cargo.toml -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo clippy -p fraiseql-eventbus-postgres --features tls --all-targets -- -D warnings

# Format everything.
fmt:
    cargo fmt --all
    cargo fmt --manifest-path fuzz/Cargo.toml

# Criterion benches for every layer (figures go in docs/benchmarks.md).
bench *args:
    cargo bench -p fraiseql-benches {{args}}

# Criterion benches of one layer, e.g. `just bench-layer protocol`.
bench-layer layer:
    cargo bench -p fraiseql-benches --bench {{layer}}

# Fuzz one target for a bounded time (needs nightly and `cargo install cargo-fuzz`).
fuzz target="protocol" seconds="60":
    cargo +nightly fuzz run {{target}} -- -max_total_time={{seconds}}

# API docs for the workspace.
doc:
    cargo doc --workspace --no-deps

# Browser and Node.js client tests against the real server (needs Node.js; Chromium for the browser test).
test-js:
    cargo build -p fraiseql-server --bin fraiseql-server --example demo
    npm ci --prefix crates/fraiseql-server/tests/js --no-audit --no-fund
    FRAISEQL_SERVER_BIN=target/debug/fraiseql-server FRAISEQL_DEMO_BIN=target/debug/examples/demo node --test crates/fraiseql-server/tests/js/

# End-to-end load benchmark: our server vs an async-graphql peer (figures go in docs/benchmarks.md).
bench-e2e *args:
    cargo build --release -p fraiseql-server --bin fraiseql-server -p fraiseql-bench-e2e
    ./target/release/loadgen --server ./target/release/fraiseql-server --peer ./target/release/peer-async-graphql {{args}}

# Two demo processes on ports 8000 and 8001 sharing one Redis (start it with
# `redis-server --daemonize yes --port 6379 --save ""`): a message sent on one page shows on the other.
demo-cluster:
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build -p fraiseql-server --example demo
    trap 'kill $(jobs -p) 2>/dev/null || true' EXIT INT TERM
    target/debug/examples/demo --bind 127.0.0.1:8000 --bus redis://127.0.0.1:6379 &
    target/debug/examples/demo --bind 127.0.0.1:8001 --bus redis://127.0.0.1:6379 &
    echo "demo node A: http://127.0.0.1:8000"
    echo "demo node B: http://127.0.0.1:8001"
    wait
