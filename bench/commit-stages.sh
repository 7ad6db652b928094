#!/usr/bin/env bash
# Where one client's commits spend their time: starts a local cluster (`ferrisdb cluster up`,
# release binaries), loads 100k records, then runs one client of the given workload for 10 s
# and prints the coordinator's mean time per commit in each pipeline stage over that run
# (from `ferrisdb status --json`, sampled before and after): queue (waiting for the batcher),
# resolve (version, conflict check, log submission), durable (until an fsync covered the
# record), reply (from the fsync back to the request handler). Not part of the test suite.
#
# Usage: bench/commit-stages.sh [WORKLOAD]   (w, a, t, ...; default w)
# Environment: PORT_BASE (default 26600), DURATION (default 10).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=${1:-w}
PORT_BASE=${PORT_BASE:-26600}
DURATION=${DURATION:-10}
(cd "$ROOT" && cargo build --release --bins -p ferrisdb -p ferrisdb-server >&2)
BIN="$ROOT/target/release/ferrisdb"
. "$ROOT/bench/local-cluster.sh"
start_local_cluster "$BIN" "$PORT_BASE"
# Heartbeats carry the counters: let one pass after the load and after the run.
sleep 1.5
snapshot() {
    "$BIN" status --controller "$CONTROLLER" --json | python3 -c '
import json, sys
c = json.load(sys.stdin)["coordinator"]
print(json.dumps([c["commits_total"], c.get("commit_stage_means_us") or {}]))'
}
BEFORE=$(snapshot)
"$BIN" bench --controller "$CONTROLLER" --workload "$W" --clients 1 --records 100000 \
    --duration "$DURATION" --no-load --uniform | grep -E "OPERATION|total"
sleep 1.5
AFTER=$(snapshot)
python3 - "$BEFORE" "$AFTER" <<'PY'
import json, sys
(n0, m0), (n1, m1) = (json.loads(a) for a in sys.argv[1:3])
runs = n1 - n0
stages = ["queue", "resolve", "durable", "reply"]
means = {s: (m1.get(s, 0) * n1 - m0.get(s, 0) * n0) / max(runs, 1) for s in stages}
print(f"{runs} commits; mean per commit: "
      + ", ".join(f"{s} {means[s]:.0f} µs" for s in stages))
PY
