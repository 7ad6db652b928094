#!/usr/bin/env bash
# Point reads against a local cluster (`ferrisdb cluster up` defaults) started from the
# binaries in BIN_DIR, with how the storage servers saw them: loads 100,000 records, then for
# each client count runs workload c (one point read per transaction) for DURATION seconds and
# prints ops/s and p50, the reads each storage server served over the run, and the reads per
# call (point_reads_total / point_read_calls_total in `ferrisdb status --json`, the clients'
# batching). For before/after comparisons, build each version's release binaries into its
# own directory and alternate runs (A B A B). Not part of the test suite.
#
# Usage: bench/read-calls.sh BIN_DIR [LABEL]
# Environment: PORT_BASE (default 27700), DURATION (default 10), CLIENTS (default "16 128").
set -euo pipefail
BIN=${1:?usage: bench/read-calls.sh BIN_DIR [LABEL]}
LABEL=${2:-$BIN}
PORT_BASE=${PORT_BASE:-27700}
DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-"16 128"}
. "$(dirname "$0")/local-cluster.sh"
start_local_cluster "$BIN/ferrisdb" "$PORT_BASE" "$BIN"

# "reads calls" per storage server, one line each, sorted by id.
counters() {
    # Heartbeats carry the counters: wait for one after the run.
    sleep 1.5
    "$BIN/ferrisdb" status --controller "$CONTROLLER" --json | python3 -c '
import json, sys
for s in sorted(json.load(sys.stdin)["storage_servers"], key=lambda s: s["id"]):
    print(s["id"], s.get("point_reads_total") or 0, s.get("point_read_calls_total") or 0)'
}

for clients in $CLIENTS; do
    before=$(counters)
    line=$("$BIN/ferrisdb" bench --controller "$CONTROLLER" --workload c --clients "$clients" \
        --records 100000 --duration "$DURATION" --no-load --uniform 2>&1 | grep -E "total" | head -1)
    after=$(counters)
    summary=$(python3 - "$before" "$after" <<'EOF'
import sys
def parse(text):
    return {l.split()[0]: (int(l.split()[1]), int(l.split()[2])) for l in text.splitlines() if l.strip()}
before, after = parse(sys.argv[1]), parse(sys.argv[2])
reads = [after[k][0] - before.get(k, (0, 0))[0] for k in sorted(after)]
calls = [after[k][1] - before.get(k, (0, 0))[1] for k in sorted(after)]
per_call = sum(reads) / max(sum(calls), 1)
print(f"reads per server {reads}, calls {sum(calls)}, {per_call:.1f} reads per call")
EOF
)
    echo "$LABEL clients=$clients $line | $summary"
done
