#!/usr/bin/env bash
# The whole life of one huge room on a local cluster: NODES nodes over one Redis (or NATS with
# BUS=nats) and one PostgreSQL database, PROCESSES `switchboard bench fanout` shards holding
# MEMBERS members between them (bench/fanout-shards.sh), and the life options given after the
# members, e.g.
#
#   bench/huge-life.sh 6 20000 2 --steps 1,5,20 --churn 0.05 --churn-at-secs 4 --kill-at-secs 16
#
# With --kill-at-secs the last node is killed then (`--kill-node`, `--kill-pid` are filled in).
# JOIN_SECS (default 60): how long the joins may take. NODE_ARGS: more options for every node
# (e.g. "--logins-in-flight 16"); NODE_BIN: another server build for the nodes (the bench stays
# $BIN). Prints the merged JSON on stdout, with every
# node's /metrics after the run in $OUT. Everything it starts is stopped and dropped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
nodes=$1 members=$2 processes=$3
shift 3
POSTGRES=${BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}
DATABASE=huge_life_$$
BIN=${BIN:-target/release/switchboard}
NODE_BIN=${NODE_BIN:-$BIN}
SECRET=bench-secret
OUT=${OUT:-$(mktemp -d)}
export OUT
PIDS=()
ulimit -n "$(ulimit -Hn)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql "$POSTGRES/postgres" -qc "DROP DATABASE IF EXISTS $DATABASE WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

BROKER_PORT=$(free_port)
BROKER_ARGS=()
if [[ ${BUS:-redis} == nats ]]; then
    nats-server -a 127.0.0.1 -p "$BROKER_PORT" >"$OUT/broker.log" 2>&1 &
    BUS_URL=nats://127.0.0.1:$BROKER_PORT
else
    redis-server --port "$BROKER_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$OUT/broker.log" 2>&1 &
    BUS_URL=redis://127.0.0.1:$BROKER_PORT
    # Only Redis reports its CPU (INFO) to the bench.
    BROKER_ARGS=(--broker "$BUS_URL")
fi
PIDS+=($!)
psql "$POSTGRES/postgres" -qc "CREATE DATABASE $DATABASE" >/dev/null
URLS=() PORTS=()
for ((n = 1; n <= nodes; n++)); do
    port=$(free_port)
    $NODE_BIN serve --listen 127.0.0.1:"$port" --node-id n$n --cluster huge --public-url ws://127.0.0.1:"$port"/ws \
        --bus "$BUS_URL" --store "$POSTGRES/$DATABASE" --jwt-secret "$SECRET" \
        --rate-per-sec 1000000 --rate-burst 1000000 ${NODE_ARGS:-} >"$OUT/n$n.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 300); do curl -sf "127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
    URLS+=(--url "ws://127.0.0.1:$port/ws") PORTS+=("$port")
done
LAST_PID=${PIDS[-1]}
LIFE=()
for arg in "$@"; do [[ $arg == --kill-at-secs ]] && LIFE=(--kill-node $((nodes - 1)) --kill-pid "$LAST_PID"); done
echo "cluster: $nodes nodes (${BUS:-redis} :$BROKER_PORT, postgres $DATABASE), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
bench/fanout-shards.sh "$processes" "${JOIN_SECS:-60}" "$BIN" "${URLS[@]}" --jwt-secret "$SECRET" \
    --members "$members" "${BROKER_ARGS[@]}" --timeout-secs 120 "${LIFE[@]}" "$@"
echo "after: load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for ((n = 1; n <= nodes; n++)); do curl -sf "127.0.0.1:${PORTS[n-1]}/metrics" >"$OUT/metrics-n$n.txt" || true; done
