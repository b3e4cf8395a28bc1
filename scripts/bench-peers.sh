#!/usr/bin/env bash
# Switchboard and two peer servers (bench/peers: plain `ws` + Redis pub/sub, Socket.IO 4 + the
# Redis adapter) measured in the same run, on the same machine, by the same load generator
# (`switchboard bench`), side by side:
#
#   idle     one node: RSS per idle authenticated connection, connects/s, handshake latency
#   fanout   one node: one room, many members, stepped rates: CPU per million deliveries
#   pm       one node: private messages between pairs at a few rates: CPU per million messages
#   pm2      two nodes over Redis: the same, every message crossing nodes, broker CPU included
#   fanout2  two nodes over Redis: one room spread over both nodes, broker CPU included
#
#   scripts/bench-peers.sh [RESULTS.jsonl]      run everything, then print the table
#   scripts/bench-peers.sh table RESULTS.jsonl  print the table of an earlier run
#
# Every bench run's `--json` line goes to RESULTS (default bench/peers/results/peers-<date>.jsonl),
# tagged with `system` (switchboard, ws, socketio), `case`, `nodes`, `store`, `bus` and the load
# average before the run (the load generator shares the machine; so does anything else running).
# The table also goes to RESULTS with .md for .jsonl. Switchboard runs standalone with its default SQLite store
# (one node) or with `--store postgres://` and `--bus redis://` (two nodes); the peers persist
# nothing. Each scenario gets freshly started servers (and a fresh Redis and database for the
# two-node ones). Everything started here is stopped (and the database dropped) on exit.
#
# Sizes come from the environment (defaults in brackets):
#   SERVERS ["switchboard ws socketio"]; also switchboard-tls (the same over wss://, a test CA
#   and certificate made with openssl) and switchboard-sio (its own /socket.io/ endpoint, EIO4 on
#   a WebSocket, docs/socketio.md)  SCENARIOS ["idle fanout pm pm2 fanout2"]
#   IDLE_CONNECTIONS [18000] IDLE_SOURCES [8] IDLE_CONCURRENCY [128] IDLE_HOLD_SECS [3]
#   FANOUT_MEMBERS [1000] FANOUT_SENDERS [2] FANOUT_STEPS [20,50]
#   FANOUT2_MEMBERS [1000] FANOUT2_SENDERS [1] FANOUT2_STEPS [20,50]
#   PM_PAIRS [1000] PM_RATES ["1000 4000"]  PM2_PAIRS [1000] PM2_RATES ["1000 4000"]
#   WARMUP_SECS [2] DURATION_SECS [8] GRACE_SECS [5]
#   BENCH_POSTGRES [postgres://postgres@127.0.0.1:5432]
#   SERVER_BIN [target/release/switchboard]: another build of the server (say, an older commit's)
#   driven by this build's load generator, for before/after runs
set -euo pipefail
cd "$(dirname "$0")/.."

table() {
    python3 - "$1" <<'PY'
import json, sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
servers = [("switchboard", "Switchboard"), ("switchboard-tls", "Switchboard, TLS"),
           ("switchboard-sio", "Switchboard, Socket.IO"), ("ws", "ws + Redis"), ("socketio", "Socket.IO + Redis")]
present = [(key, title) for key, title in servers if any(r["system"] == key for r in rows)]

def pick(server, case):
    found = [r for r in rows if r["system"] == server and r["case"] == case]
    return found[-1] if found else None

def num(value, fmt="{:.1f}"):
    return "n/a" if value is None else fmt.format(value)

def lat(latency):
    if not latency:
        return "n/a"
    return f"{latency['p50_ms']:.2f} / {latency['p99_ms']:.2f} ms"

def per_million(cpu, units):
    return None if cpu is None or not units else cpu / units * 1e6

table_rows = []
cases = []
for r in rows:
    if r["case"] not in cases:
        cases.append(r["case"])
for case in cases:
    sample = next(r for r in rows if r["case"] == case)
    scenario = sample["scenario"]
    if scenario == "idle":
        lines = {
            f"{case}: RSS per connection": lambda r: num(r.get("server_rss_per_connection_kib"), "{:.2f} KiB"),
            f"{case}: opened / failed": lambda r: f"{r['opened']} / {r['failed']}",
            f"{case}: connects/s": lambda r: num(r.get("connect_rate"), "{:,.0f}"),
            f"{case}: handshake p50 / p99": lambda r: lat(r.get("handshake")),
            f"{case}: server CPU per connect": lambda r: num(per_million(r.get("server_cpu_connect_secs"), r.get("opened")), "{:.0f} µs"),
        }
        for label, cell in lines.items():
            table_rows.append([label] + [cell(pick(k, case)) if pick(k, case) else "" for k, _ in present])
    elif scenario == "pm":
        def cpu(r):
            s = r["server"]
            total = s.get("cpu_seconds")
            broker = s.get("broker_cpu_seconds")
            node = per_million(total, r["sent"])
            if broker is None:
                return num(node, "{:.1f} s")
            both = per_million(total + broker, r["sent"]) if total is not None else None
            return f"{num(both, '{:.1f}')} s ({num(node, '{:.1f}')} + {num(per_million(broker, r['sent']), '{:.1f}')} broker)"
        lines = {
            f"{case}: CPU-s per million messages": cpu,
            f"{case}: sent / lost / dup": lambda r: f"{r['sent']} / {r['lost']} / {r['duplicates']}",
            f"{case}: send→receive p50 / p99": lambda r: lat(r.get("latency")),
            f"{case}: bus msgs per delivery": lambda r: num(r.get("bus_messages_per_delivery"), "{:.2f}"),
        }
        for label, cell in lines.items():
            table_rows.append([label] + [cell(pick(k, case)) if pick(k, case) else "" for k, _ in present])
    elif scenario == "fanout":
        steps = max(len(r["steps"]) for r in rows if r["case"] == case)
        for i in range(steps):
            def step(r):
                return r["steps"][i] if i < len(r["steps"]) else None
            rate = next(r["steps"][i]["rate"] for r in rows if r["case"] == case and i < len(r["steps"]))
            def cpu(r):
                s = step(r)
                if s is None:
                    return ""
                d = s["server"]
                units = d.get("deliveries") or s["arrived"]
                node = per_million(d.get("cpu_seconds"), units)
                broker = d.get("broker_cpu_seconds")
                if broker is None:
                    return num(node, "{:.1f} s")
                both = per_million(d["cpu_seconds"] + broker, units) if d.get("cpu_seconds") is not None else None
                return f"{num(both, '{:.1f}')} s ({num(node, '{:.1f}')} + {num(per_million(broker, units), '{:.1f}')} broker)"
            def kept(r):
                s = step(r)
                if s is None:
                    return ""
                return f"{s['deliveries_per_sec']:,.0f}/s {'kept up' if s['kept_up'] else 'NOT kept up'}, missing {s['missing']}"
            lines = {
                f"{case} @ {rate:g} msg/s: CPU-s per million deliveries": cpu,
                f"{case} @ {rate:g} msg/s: deliveries": kept,
                f"{case} @ {rate:g} msg/s: send→receive p50 / p99": lambda r: lat(step(r)["latency"]) if step(r) else "",
            }
            for label, cell in lines.items():
                table_rows.append([label] + [cell(pick(k, case)) if pick(k, case) else "" for k, _ in present])

loads = [r.get("loadavg_before") for r in rows if r.get("loadavg_before") is not None]
if loads:
    table_rows.append(["1-min load average before the runs (min / max)", f"{min(loads):.2f} / {max(loads):.2f}"] + [""] * (len(present) - 1))
header = ["figure"] + [title for _, title in present]
print("| " + " | ".join(header) + " |")
print("|" + "---|" * len(header))
for row in table_rows:
    print("| " + " | ".join(row) + " |")
PY
}

if [[ ${1:-} == table ]]; then
    table "${2:?usage: $0 table RESULTS.jsonl}"
    exit 0
fi

SERVERS=${SERVERS:-switchboard ws socketio}
SCENARIOS=${SCENARIOS:-floor idle fanout pm pm2 fanout2 pm2nats storm storm2 presence presence2}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-18000}
IDLE_SOURCES=${IDLE_SOURCES:-8}
IDLE_CONCURRENCY=${IDLE_CONCURRENCY:-128}
IDLE_HOLD_SECS=${IDLE_HOLD_SECS:-3}
FANOUT_MEMBERS=${FANOUT_MEMBERS:-1000}
FANOUT_SENDERS=${FANOUT_SENDERS:-2}
FANOUT_STEPS=${FANOUT_STEPS:-20,50}
FANOUT2_MEMBERS=${FANOUT2_MEMBERS:-1000}
FANOUT2_SENDERS=${FANOUT2_SENDERS:-1}
FANOUT2_STEPS=${FANOUT2_STEPS:-20,50}
PM_PAIRS=${PM_PAIRS:-1000}
PM_RATES=${PM_RATES:-1000 4000}
PM2_PAIRS=${PM2_PAIRS:-1000}
PM2_RATES=${PM2_RATES:-1000 4000}
WARMUP_SECS=${WARMUP_SECS:-2}
DURATION_SECS=${DURATION_SECS:-8}
GRACE_SECS=${GRACE_SECS:-5}
# Switchboard only (the peers keep no history to resume from): storm and presence.
STORM_CLIENTS=${STORM_CLIENTS:-18000}
STORM_RATE=${STORM_RATE:-1000}
STORM_DOWN_MS=${STORM_DOWN_MS:-1000}
PRESENCE_WATCHERS=${PRESENCE_WATCHERS:-1000}
PRESENCE_RATES=${PRESENCE_RATES:-10 50}
POSTGRES=${BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}
RESULTS=${1:-bench/peers/results/peers-$(date +%Y%m%d-%H%M%S).jsonl}
BIN=target/release/switchboard
# The server under test; the load generator is always $BIN. Builds from before the presence
# setting (early December 2026) told everyone anyway and do not know the option.
SERVER_BIN=${SERVER_BIN:-$BIN}
PRESENCE_ARGS=()
if "$SERVER_BIN" serve --help | grep -q -- '--presence '; then PRESENCE_ARGS=(--presence everyone); fi
SECRET=bench-peers-secret
LOGS=$(mktemp -d)
DATABASES=()
PIDS=()

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

stop_all() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}

cleanup() {
    stop_all
    local database
    for database in "${DATABASES[@]}"; do
        psql "$POSTGRES/postgres" -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1 || true
    done
    rm -rf "$LOGS"
}
trap cleanup EXIT

wait_http() { # url [curl options]
    for _ in $(seq 150); do curl -sf "${@:2}" "$1" >/dev/null && return 0; sleep 0.1; done
    echo "$1 did not answer; logs in $LOGS" >&2
    return 1
}

# A Redis of our own on a free port; sets REDIS_URL_OF_RUN.
start_redis() {
    local port
    port=$(free_port)
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no >"$LOGS/redis-$port.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    REDIS_URL_OF_RUN=redis://127.0.0.1:$port
}

# A NATS server of our own on a free port; sets NATS_URL_OF_RUN.
start_nats() {
    local port
    port=$(free_port)
    nats-server -a 127.0.0.1 -p "$port" >"$LOGS/nats-$port.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
    NATS_URL_OF_RUN=nats://127.0.0.1:$port
}

# A CA and a certificate for 127.0.0.1 signed by it, in $LOGS (once); sets TLS_CA.
make_certificate() {
    TLS_CA=$LOGS/ca.pem
    [[ -f $TLS_CA ]] && return 0
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "/CN=bench CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
        -keyout "$LOGS/ca.key" -out "$TLS_CA" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=localhost" \
        -keyout "$LOGS/server.key" -out "$LOGS/server.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$LOGS/ext.cnf"
    openssl x509 -req -in "$LOGS/server.csr" -CA "$TLS_CA" -CAkey "$LOGS/ca.key" -CAcreateserial -days 2 \
        -extfile "$LOGS/ext.cnf" -out "$LOGS/server.crt" 2>/dev/null
}

# Starts `nodes` (1 or 2) nodes of `server` over a `bus_kind` (redis, or nats for Switchboard);
# sets URLS (bench --url flags), PROTOCOL, BROKER, BUS_KIND and TLS_ARGS (bench options).
start_server() { # server nodes [bus_kind]
    local server=$1 nodes=$2 bus="" n port database
    BUS_KIND=none
    URLS=()
    BROKER=()
    PROTOCOL=native
    TLS_ARGS=()
    if ((nodes > 1)); then
        BUS_KIND=${3:-redis}
        if [[ $BUS_KIND == nats ]]; then
            start_nats
            bus=$NATS_URL_OF_RUN
        else
            start_redis
            bus=$REDIS_URL_OF_RUN
            # The bench reads Redis's own CPU (broker included); NATS's is not read.
            BROKER=(--broker "$bus")
        fi
    fi
    if [[ $server == switchboard && $nodes -gt 1 ]]; then
        database=bench_peers_$$_${#DATABASES[@]}
        psql "$POSTGRES/postgres" -qc "CREATE DATABASE $database" >/dev/null
        DATABASES+=("$database")
    fi
    for n in $(seq "$nodes"); do
        port=$(free_port)
        case $server in
            switchboard)
                if ((nodes > 1)); then
                    $SERVER_BIN serve --listen 127.0.0.1:"$port" --node-id n$n --cluster peers \
                        --public-url ws://127.0.0.1:"$port"/ws --bus "$bus" --store "$POSTGRES/$database" \
                        --jwt-secret "$SECRET" --rate-per-sec 1000000 --rate-burst 1000000 "${PRESENCE_ARGS[@]}" >"$LOGS/sb-$port.log" 2>&1 &
                else
                    $SERVER_BIN serve --listen 127.0.0.1:"$port" --data-dir "$LOGS/sb-data-$port" \
                        --jwt-secret "$SECRET" --rate-per-sec 1000000 --rate-burst 1000000 "${PRESENCE_ARGS[@]}" >"$LOGS/sb-$port.log" 2>&1 &
                fi
                PIDS+=($!)
                wait_http "127.0.0.1:$port/readyz"
                URLS+=(--url "ws://127.0.0.1:$port/ws")
                ;;
            switchboard-tls | switchboard-sio)
                local tls=()
                if [[ $server == switchboard-tls ]]; then
                    make_certificate
                    tls=(--tls-cert "$LOGS/server.crt" --tls-key "$LOGS/server.key")
                fi
                $SERVER_BIN serve --listen 127.0.0.1:"$port" --data-dir "$LOGS/sb-data-$port" "${tls[@]}" \
                    --jwt-secret "$SECRET" --rate-per-sec 1000000 --rate-burst 1000000 >"$LOGS/sb-$port.log" 2>&1 &
                PIDS+=($!)
                if [[ $server == switchboard-tls ]]; then
                    wait_http "https://127.0.0.1:$port/readyz" --cacert "$TLS_CA"
                    URLS+=(--url "wss://127.0.0.1:$port/ws")
                    TLS_ARGS=(--tls-ca "$TLS_CA")
                else
                    wait_http "127.0.0.1:$port/readyz"
                    URLS+=(--url "ws://127.0.0.1:$port/socket.io/?EIO=4&transport=websocket")
                    PROTOCOL=switchboard-socketio
                fi
                ;;
            ws)
                PORT=$port NODE_ID=ws$n JWT_SECRET=$SECRET REDIS_URL=$bus \
                    node bench/peers/ws-redis/server.js >"$LOGS/ws-$port.log" 2>&1 &
                PIDS+=($!)
                wait_http "127.0.0.1:$port/healthz"
                URLS+=(--url "ws://127.0.0.1:$port/ws")
                ;;
            socketio)
                PORT=$port NODE_ID=sio$n JWT_SECRET=$SECRET REDIS_URL=$bus \
                    node bench/peers/socketio-redis/server.js >"$LOGS/socketio-$port.log" 2>&1 &
                PIDS+=($!)
                wait_http "127.0.0.1:$port/healthz"
                URLS+=(--url "ws://127.0.0.1:$port/socket.io/?EIO=4&transport=websocket")
                PROTOCOL=socketio
                ;;
            *) echo "unknown server $server (switchboard, switchboard-tls, switchboard-sio, ws, socketio)" >&2; exit 2 ;;
        esac
    done
}

# Runs `switchboard bench ARGS... --json` and appends its line to RESULTS, tagged.
record() { # server case nodes args...
    local server=$1 case=$2 nodes=$3 line load
    shift 3
    # Everything shares the machine: what else was running shows in the load average.
    load=$(cut -d" " -f1 /proc/loadavg)
    echo "== $server: $case (load average $load)" >&2
    if ! line=$($BIN bench "$@" "${TLS_ARGS[@]}" --json 2> >(tee -a "$LOGS/bench.log" | grep -v '^\[' >&2)); then
        echo "   (failed: $server $case)" >&2
        return 0
    fi
    SERVER=$server CASE=$case NODES=$nodes LINE=$line LOAD=$load BUS_KIND=${BUS_KIND:-none} python3 -c '
import json, os, datetime
report = json.loads(os.environ["LINE"])
nodes = int(os.environ["NODES"])
server = os.environ["SERVER"]
store = ("sqlite" if nodes == 1 else "postgres") if server.startswith("switchboard") else "none"
tags = {"system": server, "case": os.environ["CASE"], "nodes": nodes, "store": store,
        "bus": os.environ["BUS_KIND"], "loadavg_before": float(os.environ["LOAD"]),
        "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
print(json.dumps({**tags, **report}))' >>"$RESULTS"
}

mkdir -p "$(dirname "$RESULTS")"
echo "building switchboard (release)" >&2
cargo build --release -q -p switchboard
if [[ $SERVERS == *ws* || $SERVERS == *socketio* ]] && [[ ! -d bench/peers/node_modules ]]; then
    (cd bench/peers && npm ci --no-audit --no-fund)
fi
echo "results: $RESULTS" >&2
COMMON=(--jwt-secret "$SECRET" --warmup-secs "$WARMUP_SECS" --duration-secs "$DURATION_SECS" --grace-secs "$GRACE_SECS")

for scenario in $SCENARIOS; do
    if [[ $scenario == floor ]]; then
        BUS_KIND=none
        record machine "floor" 1 floor
        continue
    fi
    for server in $SERVERS; do
        # The peers have no storm or presence; the Switchboard variants (TLS, Socket.IO) run on one node.
        if [[ $server != switchboard* && $scenario =~ ^(pm2nats|storm|storm2|presence|presence2)$ ]] \
            || [[ $server == switchboard-* && $scenario =~ ^(fanout2|pm2|pm2nats|storm|storm2|presence|presence2)$ ]]; then
            continue
        fi
        case $scenario in
            idle)
                start_server "$server" 1
                record "$server" "idle $IDLE_CONNECTIONS" 1 idle --url "${URLS[1]}" --protocol "$PROTOCOL" \
                    --jwt-secret "$SECRET" --connections "$IDLE_CONNECTIONS" --sources "$IDLE_SOURCES" \
                    --concurrency "$IDLE_CONCURRENCY" --hold-secs "$IDLE_HOLD_SECS"
                ;;
            fanout)
                start_server "$server" 1
                record "$server" "fanout $FANOUT_MEMBERS members, 1 node" 1 fanout "${URLS[@]}" --protocol "$PROTOCOL" \
                    "${COMMON[@]}" --members "$FANOUT_MEMBERS" --senders "$FANOUT_SENDERS" --steps "$FANOUT_STEPS"
                ;;
            pm)
                start_server "$server" 1
                for rate in $PM_RATES; do
                    record "$server" "pm $PM_PAIRS pairs @ $rate/s, 1 node" 1 pm "${URLS[@]}" --protocol "$PROTOCOL" \
                        "${COMMON[@]}" --pairs "$PM_PAIRS" --rate "$rate"
                done
                ;;
            pm2)
                start_server "$server" 2
                for rate in $PM2_RATES; do
                    record "$server" "pm $PM2_PAIRS pairs @ $rate/s, 2 nodes" 2 pm "${URLS[@]}" "${BROKER[@]}" \
                        --protocol "$PROTOCOL" "${COMMON[@]}" --pairs "$PM2_PAIRS" --rate "$rate"
                done
                ;;
            fanout2)
                start_server "$server" 2
                record "$server" "fanout $FANOUT2_MEMBERS members, 2 nodes" 2 fanout "${URLS[@]}" "${BROKER[@]}" \
                    --protocol "$PROTOCOL" "${COMMON[@]}" --members "$FANOUT2_MEMBERS" --senders "$FANOUT2_SENDERS" \
                    --steps "$FANOUT2_STEPS"
                ;;
            pm2nats)
                start_server "$server" 2 nats
                for rate in $PM2_RATES; do
                    record "$server" "pm $PM2_PAIRS pairs @ $rate/s, 2 nodes, NATS" 2 pm "${URLS[@]}" \
                        "${COMMON[@]}" --pairs "$PM2_PAIRS" --rate "$rate"
                done
                ;;
            storm | storm2)
                nodes=1
                [[ $scenario == storm2 ]] && nodes=2
                start_server "$server" "$nodes"
                record "$server" "storm $STORM_CLIENTS clients, $nodes node(s)" "$nodes" storm "${URLS[@]}" "${BROKER[@]}" \
                    --jwt-secret "$SECRET" --clients "$STORM_CLIENTS" --sources "$IDLE_SOURCES" --senders 4 \
                    --rate "$STORM_RATE" --down-ms "$STORM_DOWN_MS" --duration-secs 5
                ;;
            presence | presence2)
                nodes=1
                [[ $scenario == presence2 ]] && nodes=2
                start_server "$server" "$nodes"
                for rate in $PRESENCE_RATES; do
                    record "$server" "presence $PRESENCE_WATCHERS watchers @ $rate/s, $nodes node(s)" "$nodes" presence \
                        "${URLS[@]}" "${BROKER[@]}" --jwt-secret "$SECRET" --watchers "$PRESENCE_WATCHERS" \
                        --rate "$rate" --online-ms 2000 --duration-secs "$DURATION_SECS"
                done
                ;;
            *) echo "unknown scenario $scenario (floor idle fanout pm pm2 fanout2 pm2nats storm storm2 presence presence2)" >&2; exit 2 ;;
        esac
        stop_all
    done
done

echo >&2
table "$RESULTS" | tee "${RESULTS%.jsonl}.md"
echo "results: $RESULTS (table: ${RESULTS%.jsonl}.md)" >&2
