#!/usr/bin/env bash
# One huge room held by several `switchboard bench fanout` processes (one process may open at most
# its open-files cap of connections): each runs a shard of the members (`--shard I/N`), all start
# their steps at the same wall-clock time (`--start-at`) on a common clock, and their JSON reports
# are merged here: counts added up, latency percentiles the worst shard's (each shard is a
# uniform sample of the room), server figures from shard 0 (every shard scrapes every node).
#
#   bench/fanout-shards.sh PROCESSES JOIN_SECS SWITCHBOARD_BINARY [fanout options...]
#
# JOIN_SECS: how long the joins may take before the first step starts. Prints the merged figures
# as one JSON line on stdout; each shard's output stays in $OUT (default a temporary directory).
set -euo pipefail
processes=$1 join_secs=$2 binary=$3
shift 3
out=${OUT:-$(mktemp -d)}
tag=$(date +%s%N | tail -c 7)
start_at=$(( $(date +%s%3N) + join_secs * 1000 ))
pids=()
for ((shard = 0; shard < processes; shard++)); do
  "$binary" bench fanout "$@" --user-prefix "huge-$tag" --room "huge-$tag" \
    --shard "$shard/$processes" --start-at "$start_at" --json \
    >"$out/shard-$shard.json" 2>"$out/shard-$shard.log" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
[[ $status == 0 ]] || { echo "a shard failed: see $out/shard-*.log" >&2; exit 1; }
python3 - "$out" "$processes" <<'EOF'
import json, sys
out, processes = sys.argv[1], int(sys.argv[2])
shards = [json.loads(open(f"{out}/shard-{i}.json").read().strip().splitlines()[-1]) for i in range(processes)]
first = shards[0]
members = first["members"]
merged = {"scenario": "fanout-shards", "processes": processes, "members": members, "urls": first["urls"],
          "connect_secs": max(s["connect_secs"] for s in shards),
          "join_secs": max(s["connect_secs"] + s["join_secs"] for s in shards),
          "join_events": sum(s["join_events"] for s in shards),
          "size_events": sum(s.get("size_events", 0) for s in shards),
          "join_retries": sum(s.get("join_retries", 0) for s in shards), "steps": []}
for k, step in enumerate(first["steps"]):
    parts = [s["steps"][k] for s in shards]
    sent = sum(p["sent"] for p in parts)
    received = sum(p["received"] for p in parts)
    arrived = sum(p["arrived"] for p in parts)
    expected = sent * (members - 1)
    lat = [p["latency"] for p in parts if p.get("latency")]
    worst = {q: max(l[q] for l in lat) for q in lat[0]} if lat else None
    if worst:
        worst["count"] = sum(l["count"] for l in lat)
    server = step["server"]
    merged["steps"].append({
        "rate": step["rate"], "sent": sent, "expected_deliveries": expected, "received": received,
        "delivered_ratio": received / expected if expected else None,
        "arrived_per_sec": arrived / first["duration_secs"],
        "duplicates": sum(p["duplicates"] for p in parts), "out_of_order": sum(p["out_of_order"] for p in parts),
        "latency_worst_shard": worst,
        "server_cpu_secs_per_million_deliveries": step["server_cpu_secs_per_million_deliveries"],
        "bus_messages_per_delivery": step["bus_messages_per_delivery"], "server": server,
        "bench_cpu_secs": sum(p["bench_cpu_secs"] or 0 for p in parts),
    })
lives = [s["life"] for s in shards if s.get("life")]
if lives:
    total = lambda key: sum(l[key] for l in lives)
    worst = lambda key: max((l[key] for l in lives if l[key] is not None), default=None, key=lambda v: v["p99_ms"])
    steady, sent_all = total("steady_members"), total("sent_all")
    merged["life"] = {
        "joins_per_sec": members / merged["connect_secs"],
        "churn_members": total("churn_members"), "rejoined": total("rejoined"),
        "rejoin_latency_worst_shard": worst("rejoin_latency"),
        "rejoins_per_sec": sum(l["rejoins_per_sec"] or 0 for l in lives),
        "killed_node": lives[0]["killed_node"], "reconnected": total("reconnected"),
        "reconnect_failures": total("reconnect_failures"),
        "reconnect_latency_worst_shard": worst("reconnect_latency"),
        "reconnect_secs": max((l["reconnect_secs"] or 0 for l in lives), default=None),
        "sent_all": sent_all, "steady_members": steady, "steady_received": total("steady_received"),
        # Every sender is steady: each message is owed to every steady member but its sender.
        "steady_lost": sent_all * (steady - 1) - total("steady_received") if steady else None,
    }
merged["errors"] = [s["errors"] for s in shards if s["errors"]]
merged["drops"] = [s["drops"] for s in shards if s["drops"]]
print(json.dumps(merged))
EOF
