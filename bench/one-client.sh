#!/usr/bin/env bash
# One client's throughput and latency against a local cluster (`ferrisdb cluster up` defaults)
# started from the binaries in BIN_DIR: loads 100,000 records, then runs one client of each
# workload for DURATION seconds and prints `ferrisdb bench`'s total line per workload (ops,
# ops/s, latency percentiles). For before/after comparisons, build each version's release
# binaries into its own directory and alternate runs (A B A B). Not part of the test suite.
#
# Usage: bench/one-client.sh BIN_DIR [LABEL]
# Environment: PORT_BASE (default 27700), DURATION (default 8), WORKLOADS (default "c t a w").
set -euo pipefail
BIN=${1:?usage: bench/one-client.sh BIN_DIR [LABEL]}
LABEL=${2:-$BIN}
PORT_BASE=${PORT_BASE:-27700}
DURATION=${DURATION:-8}
WORKLOADS=${WORKLOADS:-"c t a w"}
CONTROLLER="127.0.0.1:$PORT_BASE"
DIR=$(mktemp -d)
"$BIN/ferrisdb" cluster up --dir "$DIR" --port-base "$PORT_BASE" --bin-dir "$BIN" >"$DIR/up.log" 2>&1 &
UP=$!
trap 'kill $UP 2>/dev/null; wait $UP 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 150); do
    "$BIN/ferrisdb" status --controller "$CONTROLLER" >/dev/null 2>&1 && break
    kill -0 "$UP" 2>/dev/null || { cat "$DIR/up.log" >&2; exit 1; }
    sleep 0.2
done
"$BIN/ferrisdb" bench --controller "$CONTROLLER" --workload w --clients 16 --records 100000 --duration 1 >/dev/null
for w in $WORKLOADS; do
    line=$("$BIN/ferrisdb" bench --controller "$CONTROLLER" --workload "$w" --clients 1 \
        --records 100000 --duration "$DURATION" --no-load --uniform 2>&1 | grep -E "total" | head -1)
    echo "$LABEL $w $line"
done
