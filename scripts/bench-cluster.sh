#!/usr/bin/env bash
# Measures a local three-node cluster: cross-node private messages and room fan-out, over Redis or
# NATS, with PostgreSQL as the store. The figures in docs/benchmarks.md come from this script.
#
#   scripts/bench-cluster.sh redis|nats [pm|fanout|all]
#
# Everything it starts (broker, nodes, database) is stopped or dropped when it exits.
set -euo pipefail
cd "$(dirname "$0")/.."

BUS=${1:-redis}
WHAT=${2:-all}
POSTGRES=${BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}
DATABASE=bench_cluster_$$
BIN=target/release/switchboard
SECRET=bench-secret
LOGS=$(mktemp -d)
PIDS=()

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql "$POSTGRES/postgres" -qc "DROP DATABASE IF EXISTS $DATABASE WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$LOGS"
}
trap cleanup EXIT

cargo build --release -q -p switchboard
BROKER_PORT=$(free_port)
case $BUS in
    redis) redis-server --port "$BROKER_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$LOGS/broker.log" 2>&1 &
           BUS_URL=redis://127.0.0.1:$BROKER_PORT ;;
    nats)  nats-server -a 127.0.0.1 -p "$BROKER_PORT" >"$LOGS/broker.log" 2>&1 &
           BUS_URL=nats://127.0.0.1:$BROKER_PORT ;;
    *) echo "usage: $0 redis|nats [pm|fanout|all]" >&2; exit 2 ;;
esac
PIDS+=($!)
psql "$POSTGRES/postgres" -qc "CREATE DATABASE $DATABASE" >/dev/null

URLS=()
for n in 1 2 3; do
    port=$(free_port)
    $BIN serve --listen 127.0.0.1:"$port" --node-id n$n --cluster bench --public-url ws://127.0.0.1:"$port"/ws \
        --bus "$BUS_URL" --store "$POSTGRES/$DATABASE" --jwt-secret "$SECRET" \
        --rate-per-sec 1000000 --rate-burst 1000000 >"$LOGS/n$n.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do curl -sf "127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
    URLS+=(--url "ws://127.0.0.1:$port/ws")
done
echo "cluster: 3 nodes over $BUS, postgres store"

if [[ $WHAT == pm || $WHAT == all ]]; then
    for rate in 1000 4000; do
        echo "== pm across nodes, $rate msg/s"
        $BIN bench pm "${URLS[@]:0:4}" --jwt-secret "$SECRET" --pairs 200 --rate "$rate" --duration-secs 10 --warmup-secs 2
    done
fi
if [[ $WHAT == fanout || $WHAT == all ]]; then
    echo "== room fan-out across three nodes"
    $BIN bench fanout "${URLS[@]}" --jwt-secret "$SECRET" --members 600 --senders 3 --steps 20,100 --duration-secs 8 --warmup-secs 2
fi
