#!/usr/bin/env bash
# Data distribution at 1 GB (docs/data-distribution.md, "Measured at 1 GB"): a local cluster
# (`ferrisdb cluster up`, 3 storage servers, replication 2) from the binaries in BIN_DIR is
# loaded with RECORDS records of VALUE bytes under one key prefix (`bench/`), which the data
# distributor splits and balances; then 2 storage servers join while a write workload runs
# (throughput and latency before, during and after); then one of them is SIGKILLed with its
# data directory deleted, and the script waits until every shard is back at two healthy
# replicas; then the other joined server is SIGKILLed too (kept down) and every loaded record
# is read back (`ferrisdb bench --check`). Prints a status line (shards, moves under way,
# bytes on disk, shard bytes and shards per server) every few seconds with the time since
# each step. Not part of the test suite; takes 6-10 minutes.
#
# Usage: bench/data-distribution.sh BIN_DIR
# Environment: PORT_BASE (default 27800), RECORDS (default 1000000), VALUE (default 1000).
set -euo pipefail
BIN=${1:?usage: bench/data-distribution.sh BIN_DIR}
PORT_BASE=${PORT_BASE:-27800}
RECORDS=${RECORDS:-1000000}
VALUE=${VALUE:-1000}
CONTROLLER="127.0.0.1:$PORT_BASE"
DIR=$(mktemp -d)
"$BIN/ferrisdb" cluster up --dir "$DIR" --port-base "$PORT_BASE" --bin-dir "$BIN" \
    --storage-servers 3 >"$DIR/up.log" 2>&1 &
UP=$!
EXTRA=()
cleanup() {
    kill "${EXTRA[@]}" 2>/dev/null || true
    kill $UP 2>/dev/null || true
    wait $UP 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT
for _ in $(seq 150); do
    "$BIN/ferrisdb" status --controller "$CONTROLLER" >/dev/null 2>&1 && break
    kill -0 "$UP" 2>/dev/null || { cat "$DIR/up.log" >&2; exit 1; }
    sleep 0.2
done

# One line: shards, fully replicated shards, moves, healthy storage servers, bytes on disk
# and shards per server.
cat >"$DIR/summary.py" <<'PY'
import json, sys
s = json.load(sys.stdin)
shards = s["shards"]
ss = [x for x in s["storage_servers"] if x["healthy"]]
b = [x["data_bytes"] or 0 for x in ss]
m = sum(b) / len(b) if b else 0
dev = max(abs(x - m) for x in b) / m * 100 if m else 0
# Shard bytes held (the replicas' size reports), per server.
held_bytes = {x["id"]: 0 for x in ss}
for sh in shards:
    for r in sh["replicas"]:
        if r in held_bytes:
            held_bytes[r] += sh.get("bytes") or 0
hb = list(held_bytes.values())
hm = sum(hb) / len(hb) if hb else 0
hdev = max(abs(x - hm) for x in hb) / hm * 100 if hm else 0
full = sum(1 for x in shards if x["fully_replicated"])
moving = sum(1 for x in shards if x["moving_to"])
mb = [round(x / 1e6) for x in b]
held = [x["shards"] for x in ss]
print(f"shards {len(shards)} full {full} moving {moving} servers {len(ss)} "
      f"disk MB/server {mb} (max {dev:.0f}% from the mean) "
      f"shard MB/server {[round(x / 1e6) for x in hb]} (max {hdev:.0f}%) shards/server {held}")
PY
summary() {
    "$BIN/ferrisdb" status --controller "$CONTROLLER" --json 2>/dev/null | python3 "$DIR/summary.py"
}
# Waits (at most $2 polls of 5 s) until no shard moves and every shard is fully replicated.
settle() {
    local since=$1 polls=$2 line
    for i in $(seq "$polls"); do
        line=$(summary)
        echo "  t+$(($(date +%s) - since))s $line"
        if [[ $i -gt 2 && "$line" == *"moving 0 "* ]] &&
            [[ $(echo "$line" | awk '{print $2}') == $(echo "$line" | awk '{print $4}') ]]; then
            return
        fi
        sleep 5
    done
}
writes() {
    "$BIN/ferrisdb" bench --controller "$CONTROLLER" --workload w --records "$RECORDS" \
        --value-size "$VALUE" --clients 32 --no-load --duration "$1" 2>&1 | grep -E "total"
}

echo "== load: $RECORDS records of $VALUE bytes under bench/"
"$BIN/ferrisdb" bench --controller "$CONTROLLER" --workload w --records "$RECORDS" \
    --value-size "$VALUE" --clients 32 --duration 1 2>&1 | grep -i "loaded"
settle "$(date +%s)" 60

echo "== writes before (20 s)"
writes 20
echo "== 2 storage servers join; writes during (60 s)"
for i in 1 2; do
    port=$((PORT_BASE + 90 + i))
    "$BIN/ferrisdb-storage-server" --listen "127.0.0.1:$port" --data-dir "$DIR/joined-$i" \
        --controller "$CONTROLLER" >"$DIR/joined-$i.log" 2>&1 &
    EXTRA+=($!)
done
JOINED=$(date +%s)
writes 60
settle "$JOINED" 60
echo "== writes after (20 s)"
writes 20

echo "== SIGKILL one joined server and delete its data directory"
kill -9 "${EXTRA[0]}"
rm -rf "$DIR/joined-1"
settle "$(date +%s)" 60

echo "== SIGKILL the other joined server (kept down); read every record back"
kill -9 "${EXTRA[1]}"
"$BIN/ferrisdb" bench --controller "$CONTROLLER" --workload c --records "$RECORDS" \
    --value-size "$VALUE" --clients 32 --no-load --duration 5 --check 2>&1 | grep -E "checked|total|rror"
