#!/usr/bin/env bash
# A local Redis Cluster for trying the Redis bus on one machine: 3 primaries and 3
# replicas on ports BASE..BASE+5 (default 7000), nothing kept on disk.
#
#   scripts/redis-cluster.sh start [BASE]   start it; prints the bus URL
#   scripts/redis-cluster.sh stop [BASE]    stop it and remove its directory
#   scripts/redis-cluster.sh url [BASE]     print the bus URL
#
# Needs redis-server and redis-cli >= 7 (sharded pub/sub).
set -euo pipefail

action="${1:-}"
base="${2:-7000}"
dir="${TMPDIR:-/tmp}/fraiseql-redis-cluster-$base"
ports=$(seq "$base" $((base + 5)))

url() {
    local hosts=""
    for port in $ports; do hosts="$hosts${hosts:+,}127.0.0.1:$port"; done
    echo "redis-cluster://$hosts"
}

case "$action" in
start)
    command -v redis-server >/dev/null || { echo "redis-server is not installed (Redis >= 7)" >&2; exit 1; }
    for port in $ports; do
        if redis-cli -p "$port" ping >/dev/null 2>&1; then
            echo "port $port is taken (a cluster already running? '$0 stop $base')" >&2
            exit 1
        fi
    done
    mkdir -p "$dir"
    for port in $ports; do
        mkdir -p "$dir/$port"
        redis-server --port "$port" --bind 127.0.0.1 --daemonize yes \
            --dir "$dir/$port" --pidfile "$dir/$port/redis.pid" --logfile "$dir/$port/redis.log" \
            --save "" --appendonly no \
            --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000
    done
    for port in $ports; do
        for _ in $(seq 1 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
    done
    nodes=""
    for port in $ports; do nodes="$nodes 127.0.0.1:$port"; done
    # shellcheck disable=SC2086
    redis-cli --cluster create $nodes --cluster-replicas 1 --cluster-yes >"$dir/create.log"
    for port in $ports; do
        for _ in $(seq 1 200); do
            redis-cli -p "$port" cluster info | grep -q "cluster_state:ok" && break
            sleep 0.05
        done
    done
    echo "Redis Cluster up (3 primaries, 3 replicas; logs in $dir). Bus URL:"
    url
    ;;
stop)
    for port in $ports; do
        if [ -f "$dir/$port/redis.pid" ]; then
            kill "$(cat "$dir/$port/redis.pid")" 2>/dev/null || true
        fi
    done
    rm -rf "$dir"
    echo "Redis Cluster on ports $base..$((base + 5)) stopped"
    ;;
url)
    url
    ;;
*)
    echo "usage: $0 start|stop|url [BASE_PORT]" >&2
    exit 2
    ;;
esac
