#!/usr/bin/env bash
# A three-node Switchboard cluster on this machine, for trying it out:
#
#   - builds the release binary (cargo only rebuilds what changed),
#   - starts a broker for the cluster bus: redis-server (default) or nats-server (--bus nats),
#     on a free port or the one given with --bus-port,
#   - creates the PostgreSQL database the nodes share if it does not exist yet
#     (postgres://postgres@127.0.0.1:5432, database switchboard_local; see the environment below),
#   - starts three nodes, n1..n3, on 127.0.0.1:8081, :8082 and :8083,
#   - starts nginx on port 8080 with deploy/nginx.conf in front of them, when nginx is installed,
#   - prints the URLs, and stops everything it started on Ctrl-C (or SIGTERM, or when one of its
#     processes dies).
#
# Usage: scripts/local-cluster.sh [options] [-- extra node flags]
#
#   --bus redis|nats    broker for the cluster bus [redis]
#   --bus-port PORT     broker port [a free one]
#   --no-nginx          do not start nginx
#   --no-open-auth      no login_open (user name without password); it is on by default for demos
#   --reset-db          drop the database first (start with no users and no messages)
#   -h, --help          this help
#
# Flags after `--` go to every node, e.g. `-- --jwt-secret dev-secret`.
#
# Environment:
#   LOCAL_CLUSTER_POSTGRES  PostgreSQL server URL, without database [postgres://postgres@127.0.0.1:5432]
#   LOCAL_CLUSTER_DATABASE  database name [switchboard_local]
#   LOCAL_CLUSTER_LOGS      folder for logs, node data and nginx's files [target/local-cluster]
#   LOCAL_CLUSTER_BIN       switchboard binary to run instead of building target/release/switchboard
#
# Needs: psql and a running PostgreSQL, redis-server or nats-server, cargo (unless
# LOCAL_CLUSTER_BIN is set), curl; nginx is optional.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

BUS=redis
BUS_PORT=
WITH_NGINX=yes
OPEN_AUTH=yes
RESET_DB=no
EXTRA=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --bus) BUS=${2:?--bus needs redis or nats}; shift 2 ;;
        --bus=*) BUS=${1#*=}; shift ;;
        --bus-port) BUS_PORT=${2:?--bus-port needs a port}; shift 2 ;;
        --bus-port=*) BUS_PORT=${1#*=}; shift ;;
        --no-nginx) WITH_NGINX=no; shift ;;
        --no-open-auth) OPEN_AUTH=no; shift ;;
        --reset-db) RESET_DB=yes; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        --) shift; EXTRA=("$@"); break ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done

POSTGRES=${LOCAL_CLUSTER_POSTGRES:-postgres://postgres@127.0.0.1:5432}
POSTGRES=${POSTGRES%/}
DATABASE=${LOCAL_CLUSTER_DATABASE:-switchboard_local}
LOGS=${LOCAL_CLUSTER_LOGS:-$ROOT/target/local-cluster}
BIN=${LOCAL_CLUSTER_BIN:-}
HOST=127.0.0.1
NODE_IDS=(n1 n2 n3)
NODE_PORTS=(8081 8082 8083) # deploy/nginx.conf's upstream
NGINX_PORT=8080             # deploy/nginx.conf's listen port
CLUSTER=local

say() { printf '%s\n' "$*"; }
fail() { printf 'local-cluster: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }
# A URL without its password, for messages.
redact() { sed -E 's#://[^@/]*@#://***@#' <<<"$1"; }

port_in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

free_port() {
    local port
    for _ in $(seq 100); do
        port=$((20000 + RANDOM % 40000))
        if ! port_in_use "$port"; then
            echo "$port"
            return
        fi
    done
    fail "no free port found"
}

wait_for_port() { # PORT PID NAME LOG
    for _ in $(seq 200); do
        port_in_use "$1" && return 0
        alive "$2" || fail "$3 exited during start; its log ($4):$(printf '\n'; tail -n 20 "$4")"
        sleep 0.05
    done
    fail "$3 does not listen on port $1 after 10 s; see $4"
}

# Running, and not a zombie waiting to be reaped.
alive() {
    local state
    state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ $state != Z* ]]
}

# --- what is needed --------------------------------------------------------------------------

case $BUS in
    redis) BROKER=redis-server ;;
    nats) BROKER=nats-server ;;
    *) fail "--bus must be redis or nats, not '$BUS'" ;;
esac
for tool in psql curl "$BROKER"; do
    have "$tool" || fail "$tool is not installed (or not on PATH)"
done
[[ $DATABASE =~ ^[a-z_][a-z0-9_]*$ ]] || fail "database name '$DATABASE': use lowercase letters, digits and _"
if [[ $WITH_NGINX == yes ]] && ! have nginx; then
    say "nginx is not installed: no proxy on port $NGINX_PORT, connect to the nodes directly."
    WITH_NGINX=no
fi
PORTS_NEEDED=("${NODE_PORTS[@]}")
[[ $WITH_NGINX == yes ]] && PORTS_NEEDED+=("$NGINX_PORT")
for port in "${PORTS_NEEDED[@]}"; do
    port_in_use "$port" && fail "port $port is in use (another local cluster, or a server?)"
done
if [[ -n $BUS_PORT ]]; then
    [[ $BUS_PORT =~ ^[0-9]+$ ]] || fail "--bus-port must be a number"
    port_in_use "$BUS_PORT" && fail "port $BUS_PORT for $BROKER is in use"
else
    BUS_PORT=$(free_port)
fi

if [[ -z $BIN ]]; then
    TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
    BIN=$TARGET_DIR/release/switchboard
    if have cargo; then
        say "== building the release binary (cargo build --release)"
        (cd "$ROOT" && cargo build --release -p switchboard --bin switchboard)
    elif [[ ! -x $BIN ]]; then
        fail "cargo is not installed and $BIN does not exist; set LOCAL_CLUSTER_BIN"
    fi
fi
[[ -x $BIN ]] || fail "$BIN is not an executable"

# --- stopping what was started ---------------------------------------------------------------

NGINX_PID=
NODE_PIDS=()
BROKER_PID=
STOPPED=no

# TERM, then up to 15 s to exit (a node drains its connections), then KILL.
stop() {
    local pid pids=() deadline=$((SECONDS + 15))
    for pid in "$@"; do
        if [[ -n $pid ]] && alive "$pid"; then
            pids+=("$pid")
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    for pid in "${pids[@]}"; do
        while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
        if alive "$pid"; then
            say "process $pid did not stop in time: killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
}

cleanup() {
    [[ $STOPPED == yes ]] && return
    STOPPED=yes
    # Bounded (see stop), so a second Ctrl-C does not cut it short and leave processes behind.
    trap '' INT TERM HUP
    say ""
    say "== stopping the local cluster"
    # The proxy first, then the nodes (they flush to the store and say goodbye on the bus), then
    # the broker.
    stop "$NGINX_PID"
    stop "${NODE_PIDS[@]}"
    stop "$BROKER_PID"
    say "stopped; logs in $LOGS (the database $DATABASE is kept: --reset-db drops it)"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# Started in their own session (when setsid is there), so a Ctrl-C in the terminal reaches only
# this script, which then stops them in order.
start() { # LOG COMMAND...
    local log=$1
    shift
    if have setsid; then
        setsid "$@" >"$log" 2>&1 </dev/null &
    else
        "$@" >"$log" 2>&1 </dev/null &
    fi
}

# --- starting --------------------------------------------------------------------------------

mkdir -p "$LOGS"
LOGS=$(cd "$LOGS" && pwd)

say "== broker: $BROKER on $HOST:$BUS_PORT"
if [[ $BUS == redis ]]; then
    mkdir -p "$LOGS/redis"
    start "$LOGS/redis.log" redis-server --port "$BUS_PORT" --bind "$HOST" --save "" --appendonly no \
        --dir "$LOGS/redis"
else
    start "$LOGS/nats.log" nats-server -a "$HOST" -p "$BUS_PORT"
fi
BROKER_PID=$!
wait_for_port "$BUS_PORT" "$BROKER_PID" "$BROKER" "$LOGS/$BUS.log"
BUS_URL=$BUS://$HOST:$BUS_PORT

say "== database: $(redact "$POSTGRES")/$DATABASE"
pg() { psql "$POSTGRES/postgres" -v ON_ERROR_STOP=1 -qtAc "$1"; }
pg "SELECT 1" >/dev/null 2>"$LOGS/psql.log" ||
    fail "cannot reach PostgreSQL at $(redact "$POSTGRES") (set LOCAL_CLUSTER_POSTGRES): $(cat "$LOGS/psql.log")"
if [[ $RESET_DB == yes ]]; then
    pg "DROP DATABASE IF EXISTS $DATABASE WITH (FORCE)" >/dev/null
    say "   dropped"
fi
if [[ $(pg "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'") == 1 ]]; then
    say "   exists: keeping its users and messages"
else
    pg "CREATE DATABASE $DATABASE" >/dev/null
    say "   created"
fi
STORE=$POSTGRES/$DATABASE

NODE_ARGS=(--bus "$BUS_URL" --store "$STORE" --cluster "$CLUSTER")
[[ $OPEN_AUTH == yes ]] && NODE_ARGS+=(--open-auth)
# nginx on this machine reports the real client address; let login throttling count per client.
NODE_ARGS+=(--trusted-proxies 127.0.0.1)
for i in "${!NODE_IDS[@]}"; do
    id=${NODE_IDS[i]}
    port=${NODE_PORTS[i]}
    say "== node $id on $HOST:$port"
    start "$LOGS/$id.log" "$BIN" serve --listen "$HOST:$port" --node-id "$id" --data-dir "$LOGS/$id" \
        --public-url "ws://$HOST:$port/ws" "${NODE_ARGS[@]}" "${EXTRA[@]}"
    NODE_PIDS+=($!)
done
for i in "${!NODE_IDS[@]}"; do
    id=${NODE_IDS[i]}
    pid=${NODE_PIDS[i]}
    ready=no
    for _ in $(seq 300); do
        alive "$pid" || fail "node $id exited during start; its log ($LOGS/$id.log):$(printf '\n'; tail -n 20 "$LOGS/$id.log")"
        if curl -fsS -o /dev/null --max-time 2 "http://$HOST:${NODE_PORTS[i]}/readyz" 2>/dev/null; then
            ready=yes
            break
        fi
        sleep 0.1
    done
    [[ $ready == yes ]] || fail "node $id not ready after 30 s; see $LOGS/$id.log"
done

if [[ $WITH_NGINX == yes ]]; then
    say "== nginx on port $NGINX_PORT (deploy/nginx.conf)"
    PREFIX=$LOGS/nginx
    mkdir -p "$PREFIX/logs" "$PREFIX/temp"
    nginx -t -q -p "$PREFIX" -c "$ROOT/deploy/nginx.conf" || fail "nginx -t rejects deploy/nginx.conf"
    start "$LOGS/nginx.log" nginx -p "$PREFIX" -c "$ROOT/deploy/nginx.conf" -g "daemon off;"
    NGINX_PID=$!
    wait_for_port "$NGINX_PORT" "$NGINX_PID" nginx "$LOGS/nginx.log"
fi

# --- running ---------------------------------------------------------------------------------

say ""
say "Switchboard cluster '$CLUSTER' is running (bus $BUS_URL, store $(redact "$STORE")):"
for i in "${!NODE_IDS[@]}"; do
    say "  ${NODE_IDS[i]}      ws://$HOST:${NODE_PORTS[i]}/ws    http://$HOST:${NODE_PORTS[i]}/metrics"
done
if [[ $WITH_NGINX == yes ]]; then
    say "  nginx   ws://$HOST:$NGINX_PORT/ws    http://$HOST:$NGINX_PORT/api/nodes"
    say "Connect clients to ws://$HOST:$NGINX_PORT/ws: nginx spreads them over the nodes."
else
    say "  gateway http://$HOST:${NODE_PORTS[0]}/api/nodes, http://$HOST:${NODE_PORTS[0]}/api/connect"
fi
[[ $OPEN_AUTH == yes ]] && say 'Log in without a password: {"type":"login_open","username":"alice"}'
say "Logs: $LOGS"
say "Press Ctrl-C to stop everything."

ALL_PIDS=("$BROKER_PID" "${NODE_PIDS[@]}")
[[ -n $NGINX_PID ]] && ALL_PIDS+=("$NGINX_PID")
while true; do
    code=0
    wait -n || code=$?
    [[ $code == 127 ]] && fail "nothing left to wait for"
    for pid in "${ALL_PIDS[@]}"; do
        if ! alive "$pid"; then
            case $pid in
                "$BROKER_PID") name=$BROKER log=$LOGS/$BUS.log ;;
                "$NGINX_PID") name=nginx log=$LOGS/nginx.log ;;
                *)
                    for i in "${!NODE_PIDS[@]}"; do
                        [[ ${NODE_PIDS[i]} == "$pid" ]] && name="node ${NODE_IDS[i]}" log=$LOGS/${NODE_IDS[i]}.log
                    done
                    ;;
            esac
            fail "$name stopped (exit $code); see $log"
        fi
    done
done
