#!/usr/bin/env bash
# scripts/pm-probe.sh BIN RATE [PAIRS] [DURATION]: one node with its SQLite file store, driven by
# `switchboard bench pm`, with the server's system calls and context switches per message counted by
# `perf stat` over the measured window (docs/design/message-path.md).
#   PEER=ws      runs the Node ws peer (bench/peers/ws-redis) instead of BIN's server
#   STRACE=1     also writes the server's system-call mix (strace -c) to /tmp/probe-strace.txt
#   RECORD=1     also samples the server with call stacks (perf record -g) into /tmp/probe-perf.data
set -euo pipefail
BIN=${1}; RATE=${2}; PAIRS=${3:-1000}; DUR=${4:-6}
PORT=$((20000 + RANDOM % 10000))
DATA=$(mktemp -d)
if [ "${PEER:-}" = ws ]; then
  PORT=$PORT NODE_ID=ws1 JWT_SECRET=probe-secret node "$(dirname "$0")/../bench/peers/ws-redis/server.js" >/tmp/probe-server.log 2>&1 &
  SRV=$!
else
  ${SERVE_BIN:-$BIN} serve --listen 127.0.0.1:$PORT --data-dir $DATA --jwt-secret probe-secret --rate-per-sec 1000000 --rate-burst 1000000 >/tmp/probe-server.log 2>&1 &
  SRV=$!
fi
trap 'kill $SRV 2>/dev/null; wait $SRV 2>/dev/null; rm -rf $DATA' EXIT
for i in $(seq 50); do curl -sf http://127.0.0.1:$PORT/healthz >/dev/null && break; sleep 0.1; done
if [ -n "${RECORD:-}" ]; then ( sleep 5; perf record -F 999 -g --call-graph dwarf,16384 -p $SRV -o /tmp/probe-perf.data -- sleep $((DUR-1)) 2>/dev/null ) & fi
if [ -n "${STRACE:-}" ]; then ( sleep 5; timeout $((DUR-1)) strace -c -f -p $SRV -o /tmp/probe-strace.txt ) & fi
( sleep $((2 + 3)); perf stat -e raw_syscalls:sys_enter,sched:sched_switch,context-switches,syscalls:sys_enter_pwrite64,syscalls:sys_enter_fcntl,syscalls:sys_enter_pread64 -p $SRV -x, -o /tmp/probe-perf.txt -- sleep $((DUR-1)) ) &
PERF=$!
$BIN bench pm --url ws://127.0.0.1:$PORT/ws --jwt-secret probe-secret --pairs $PAIRS --rate $RATE --duration-secs $DUR --warmup-secs 2 --grace-secs 3 --json > /tmp/probe-out.json 2>/tmp/probe-bench.log
wait $PERF || true
python3 - "$RATE" "$DUR" <<'PY'
import json,sys
rate=float(sys.argv[1]); dur=float(sys.argv[2])
r=[json.loads(l) for l in open('/tmp/probe-out.json') if l.strip().startswith('{')][-1]
c={}
for line in open('/tmp/probe-perf.txt'):
    p=line.strip().split(',')
    if len(p)>3 and p[0].replace('.','').isdigit(): c[p[2]]=float(p[0])
msgs=rate*(dur-1)
lat=r.get('latency') or {}
print(f"rate {rate:.0f}: cpu/M {r.get('server_cpu_secs_per_million_messages'):.1f}  p50 {lat.get('p50_ms',0):.2f} p99 {lat.get('p99_ms',0):.2f} ms  sent {r['sent']} lost {r['lost']} dup {r['duplicates']} ooo {r['out_of_order']}  syscalls/msg {c.get('raw_syscalls:sys_enter',0)/msgs:.1f}  switches/msg {c.get('sched:sched_switch',0)/msgs:.2f}")
PY
