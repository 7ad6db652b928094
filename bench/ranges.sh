#!/usr/bin/env bash
# Range reads against a local cluster (`ferrisdb cluster up` defaults) started from the
# binaries in BIN_DIR, fresh and after the key space is overwritten: loads 100,000 records,
# runs workload r (range reads of exactly 100 keys) for DURATION seconds at each client count,
# then writes every record OVERWRITES more times (the bench's load: batched transactions of
# 500 keys) and runs workload r again at once, while the storage servers still hold the older
# versions. Prints ops/s and p50/p99 per run. For before/after comparisons, build each
# version's release binaries into its own directory and alternate runs (A B A B). Not part of
# the test suite.
#
# Usage: bench/ranges.sh BIN_DIR [LABEL]
# Environment: PORT_BASE (default 27900), DURATION (default 10), CLIENTS (default "16 128"),
# OVERWRITES (default 5).
set -euo pipefail
BIN=${1:?usage: bench/ranges.sh BIN_DIR [LABEL]}
LABEL=${2:-$BIN}
PORT_BASE=${PORT_BASE:-27900}
DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-"16 128"}
OVERWRITES=${OVERWRITES:-5}
. "$(dirname "$0")/local-cluster.sh"
start_local_cluster "$BIN/ferrisdb" "$PORT_BASE" "$BIN"

ranges() {
    for clients in $CLIENTS; do
        line=$("$BIN/ferrisdb" bench --controller "$CONTROLLER" --workload r --clients "$clients" \
            --records 100000 --duration "$DURATION" --no-load --uniform 2>&1 | grep -E "total" | head -1)
        echo "$LABEL $1 clients=$clients $line"
    done
}

ranges fresh
for _ in $(seq "$OVERWRITES"); do
    # Loading writes every record once; the 1 s of point reads after it is the bench's minimum.
    "$BIN/ferrisdb" bench --controller "$CONTROLLER" --workload c --clients 16 \
        --records 100000 --duration 1 >/dev/null 2>&1
done
ranges "after-${OVERWRITES}x-overwrites"
