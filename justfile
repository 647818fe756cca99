# FraiseQL Subscriptions — the commands a newcomer needs. `just --list` shows them all.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Show the recipes.
default:
    @just --list

# Run the live demo: a chat room at http://127.0.0.1:8000 (in-memory bus, no services).
demo bind="127.0.0.1:8000":
    cargo run --quiet -p fraiseql-server --example demo -- --bind {{bind}}

# The live demo in Python: the same chat room served by FastAPI + uvicorn through the
# Python package (http://127.0.0.1:8000; in-memory bus, no services).
demo-python port="8000": python-dev
    .venv/bin/python examples/python/chat_fastapi.py --port {{port}}

# The WebSocket in Rust, the page and POST /messages by the app, one port.
# The Python demo's FastAPI app hosted by the native server (http://127.0.0.1:8000).
demo-python-native port="8000": python-dev
    .venv/bin/python examples/python/chat_fastapi.py --native --port {{port}}

# The whole test suite: formatting, lints, then every test. CI runs exactly this.
test: lint
    cargo test --workspace --all-targets
    cargo test --workspace --doc
    {{just_executable()}} test-js
    {{just_executable()}} test-python

# Formatting and lints, with warnings as errors.
lint: lint-python
    cargo fmt --all -- --check
    cargo fmt --manifest-path fuzz/Cargo.toml -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo clippy -p fraiseql-eventbus-postgres --features tls --all-targets -- -D warnings
    python3 scripts/module_cycles.py

# The Python virtualenv (.venv) with the dev tools, and the extension built into it
# (`maturin develop`; pass --release for benchmarks).
python-dev *args:
    #!/usr/bin/env bash
    set -euo pipefail
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
    # A build from before the module was abi3 would shadow the abi3 one (Python prefers
    # the version-tagged name).
    rm -f python/fraiseql_subscriptions/_native.cpython-*.so
    cd python && VIRTUAL_ENV="$PWD/../.venv" ../.venv/bin/maturin develop --quiet {{args}}

# Stripped, linked by zig against glibc 2.17 and checked by maturin's auditwheel.
# The release wheel users install, in target/wheels: abi3 (CPython >= 3.10), manylinux2014.
wheel: python-dev
    rm -f target/wheels/fraiseql_subscriptions-*.whl && cd python && PATH="$PWD/../.venv/bin:$PATH" maturin build --release --zig --compatibility manylinux2014 --out ../target/wheels

# The Python package's tests (pytest against real uvicorn and native servers, and the wheel
# of `just wheel` installed in a fresh virtualenv), the demo page in headless Chromium
# against the Python demo (the JS test of `just demo`) on uvicorn and hosted by the native
# server, and the graphql-ws npm client's
# queries and mutations against the Python operations example.
test-python: python-dev wheel
    cd python && FRAISEQL_WHEEL="$(ls "$PWD"/../target/wheels/fraiseql_subscriptions-*.whl)" ../.venv/bin/python -m pytest -q
    mkdir -p target
    printf '#!/bin/sh\nexec "%s/.venv/bin/python" "%s/examples/python/chat_fastapi.py" "$@"\n' "$PWD" "$PWD" > target/demo-python
    chmod +x target/demo-python
    npm ci --prefix crates/fraiseql-server/tests/js --no-audit --no-fund
    FRAISEQL_DEMO_BIN=target/demo-python node --test crates/fraiseql-server/tests/js/browser-demo.test.mjs
    printf '#!/bin/sh\nexec "%s/.venv/bin/python" "%s/examples/python/chat_fastapi.py" --native "$@"\n' "$PWD" "$PWD" > target/demo-python-native
    chmod +x target/demo-python-native
    FRAISEQL_DEMO_BIN=target/demo-python-native node --test crates/fraiseql-server/tests/js/browser-demo.test.mjs
    printf '#!/bin/sh\nexec "%s/.venv/bin/python" "%s/examples/python/graphql_operations.py" "$@"\n' "$PWD" "$PWD" > target/operations-python
    chmod +x target/operations-python
    FRAISEQL_OPERATIONS_BIN=target/operations-python node --test crates/fraiseql-server/tests/js/python-operations.mjs

# Python lints: ruff (lint and format), mypy --strict on the package, and stubtest: the
# native module's .pyi stubs against the built module.
lint-python: python-dev
    cd python && ../.venv/bin/ruff check . ../examples/python ../benches/python ../scripts && ../.venv/bin/ruff format --check . ../examples/python ../benches/python ../scripts && ../.venv/bin/mypy --strict fraiseql_subscriptions ../scripts/module_cycles.py
    cd python && ../.venv/bin/python -m mypy.stubtest fraiseql_subscriptions._native

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

# It starts from the checked-in seeds (fuzz/seeds/<target>) and grows the git-ignored
# fuzz/corpus/<target>; a crash lands in fuzz/artifacts/<target>/.
# More libFuzzer flags go last, e.g. `just fuzz document 600 -len_control=0`.
# Fuzz one target for a bounded time (needs nightly and `cargo install cargo-fuzz`).
fuzz target="protocol" seconds="60" *flags:
    mkdir -p fuzz/corpus/{{target}}
    cargo +nightly fuzz run {{target}} fuzz/corpus/{{target}} $(ls -d fuzz/seeds/{{target}} 2>/dev/null) -- -max_total_time={{seconds}} -timeout=30 {{flags}}

# Every target of `cargo fuzz list`, one after another, as `just fuzz` runs one; logs in
# fuzz/logs/. The run of docs/benchmarks.md is `nice -n 19 just fuzz-all 600`.
# Fuzz every target for `seconds` each: prints executions, exec/s, corpus; fails on a crash.
fuzz-all seconds="600":
    #!/usr/bin/env bash
    set -euo pipefail
    cargo +nightly fuzz build
    mkdir -p fuzz/logs
    failed=()
    for target in $(cargo +nightly fuzz list); do
        mkdir -p "fuzz/corpus/$target"
        seeds=()
        if [ -d "fuzz/seeds/$target" ]; then seeds=("fuzz/seeds/$target"); fi
        log="fuzz/logs/$target.log"
        echo "fuzzing $target for {{seconds}} s (log: $log)"
        status=ok
        cargo +nightly fuzz run "$target" "fuzz/corpus/$target" "${seeds[@]}" -- \
            -max_total_time={{seconds}} -timeout=30 -print_final_stats=1 > "$log" 2>&1 \
            || { status=CRASHED; failed+=("$target"); }
        execs=$(grep -oP 'stat::number_of_executed_units:\s*\K[0-9]+' "$log" || echo '?')
        rate=$(grep -oP 'stat::average_exec_per_sec:\s*\K[0-9]+' "$log" || echo '?')
        corpus=$(find "fuzz/corpus/$target" -type f | wc -l)
        printf '%-14s %-8s %12s executions %8s exec/s %7s corpus files\n' \
            "$target" "$status" "$execs" "$rate" "$corpus"
        grep -E '^#[0-9]+\s+DONE' "$log" | tail -n 1 || true
        grep -E 'panicked at|ERROR: libFuzzer|Test unit written to' "$log" || true
    done
    if [ ${#failed[@]} -gt 0 ]; then echo "crashed: ${failed[*]}"; exit 1; fi

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
    cargo build --release -p fraiseql-server --bin fraiseql-server
    cargo build --release -p fraiseql-bench-e2e --bins
    ./target/release/loadgen --server ./target/release/fraiseql-server --peer ./target/release/peer-async-graphql {{args}}

# The Python load benchmark: the same scenarios against the pure Rust server, the native
# server started from Python, the FastAPI adapter and an idiomatic Strawberry app (same
# uvicorn), in one run (figures go in docs/benchmarks.md). Defaults to saturation,fanout.
bench-python *args="--scenario saturation,fanout":
    cargo build --release -p fraiseql-server --bin fraiseql-server
    cargo build --release -p fraiseql-bench-e2e --bins
    {{just_executable()}} python-dev --release
    ./target/release/loadgen --server ./target/release/fraiseql-server \
        --target "native-py=.venv/bin/python benches/python/native_server.py" \
        --target "fastapi=.venv/bin/python benches/python/fastapi_server.py" \
        --target "fastapi-seq=.venv/bin/python benches/python/fastapi_server.py --sequential-publisher" \
        --target "strawberry=.venv/bin/python benches/python/strawberry_server.py" {{args}}

# HTTP requests/s and p99 of one FastAPI app on the native server, uvicorn (uvloop +
# httptools) and granian; then subscription fan-out with HTTP load on the same server.
# The hosted ASGI app's benchmark (figures go in docs/benchmarks.md).
bench-hosting *args="--duration 10":
    cargo build --release -p fraiseql-server --bin fraiseql-server
    cargo build --release -p fraiseql-bench-e2e --bins
    {{just_executable()}} python-dev --release
    .venv/bin/python -m pip install --quiet --disable-pip-version-check uvloop==0.23.0 httptools==0.9.0 granian==2.8.9
    .venv/bin/python benches/python/http_hosting.py {{args}}
    ./target/release/loadgen --scenario fanout,saturation --server ./target/release/fraiseql-server \
        --target "native-py-app=.venv/bin/python benches/python/native_server.py --app" \
        --target "native-py-app+http=.venv/bin/python benches/python/native_server.py --app --http-load /json"

# What a Python resolver adds per event per group: CPU time, then wall-clock round trips.
bench-resolver: (python-dev "--release")
    .venv/bin/python benches/python/resolver_cpu.py
    .venv/bin/python benches/python/resolver_cost.py

# Two demo processes on ports 8000 and 8001 sharing one Redis (start it with
# `redis-server --daemonize yes --port 6379 --save ""`): a message sent on one page shows on
# the other. `bus` may name a Redis Cluster (`just redis-cluster start` prints its URL) or a
# primary behind Sentinel: `just demo-cluster redis-cluster://127.0.0.1:7000,127.0.0.1:7001`.
demo-cluster bus="redis://127.0.0.1:6379":
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build -p fraiseql-server --example demo
    trap 'kill $(jobs -p) 2>/dev/null || true' EXIT INT TERM
    target/debug/examples/demo --bind 127.0.0.1:8000 --bus "{{bus}}" &
    target/debug/examples/demo --bind 127.0.0.1:8001 --bus "{{bus}}" &
    echo "demo node A: http://127.0.0.1:8000"
    echo "demo node B: http://127.0.0.1:8001"
    wait

# A local Redis Cluster (3 primaries + 3 replicas on ports 7000-7005, nothing on disk):
# `just redis-cluster start` prints the bus URL, `just redis-cluster stop` removes it.
redis-cluster action="start" base="7000":
    scripts/redis-cluster.sh {{action}} {{base}}
