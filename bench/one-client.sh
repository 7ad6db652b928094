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
. "$(dirname "$0")/local-cluster.sh"
start_local_cluster "$BIN/ferrisdb" "$PORT_BASE" "$BIN"
for w in $WORKLOADS; do
    line=$("$BIN/ferrisdb" bench --controller "$CONTROLLER" --workload "$w" --clients 1 \
        --records 100000 --duration "$DURATION" --no-load --uniform 2>&1 | grep -E "total" | head -1)
    echo "$LABEL $w $line"
done
