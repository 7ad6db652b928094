#!/usr/bin/env bash
# Side-by-side benchmark of FerrisDB and etcd on this machine (FerrisDB issue 8).
#
# Starts an etcd cluster of ETCD_MEMBERS members (default 3) and one FerrisDB local cluster
# (log replication FERRISDB_LOG_REPLICATION, default 2) on loopback, both with fsync on commit,
# and drives both with the same load generator (`ferrisdb bench`, `--store etcd` for etcd) for
# every workload x client count, writing one JSON file per run into the results directory, then
# prints the comparison table (report.py) and writes a chart. Not part of the default test run.
#
# Usage: bench/etcd/compare.sh [--duration S] [--clients "1 16 128"] [--workloads "w c cs a r t"]
#                              [--records N] [--results DIR] [--work-dir DIR]
# The same settings can come from the environment: DURATION, CLIENTS, WORKLOADS, RECORDS,
# RESULTS, WORK_DIR, ETCD_MEMBERS, FERRISDB_LOG_REPLICATION. Ports: ETCD_PORT (default 23790;
# member i listens for clients on ETCD_PORT+2i and for peers on ETCD_PORT+2i+1; the load
# generator talks to the first), FERRISDB_PORT_BASE (25600).
#
# Workloads: w (single-key writes), c (point reads, linearizable on etcd), cs (point reads,
# serializable on etcd; FerrisDB's row is its c run: its reads are always strictly
# serializable), a (50% reads, 50% writes), r (range reads of 100 keys), t (two-key
# read-modify-write transactions).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/bench/etcd"
DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-"1 16 128"}
WORKLOADS=${WORKLOADS:-"w c cs a r t"}
RECORDS=${RECORDS:-100000}
RESULTS=${RESULTS:-"$ROOT/bench/etcd/results/$(date +%Y%m%d-%H%M%S)"}
WORK_DIR=${WORK_DIR:-${TMPDIR:-/tmp}}
ETCD_PORT=${ETCD_PORT:-23790}
ETCD_MEMBERS=${ETCD_MEMBERS:-3}
FERRISDB_LOG_REPLICATION=${FERRISDB_LOG_REPLICATION:-2}
FERRISDB_PORT_BASE=${FERRISDB_PORT_BASE:-25600}
KEY_SIZE=16
VALUE_SIZE=100
LOAD_CLIENTS=16

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --clients) CLIENTS=$2; shift 2 ;;
        --workloads) WORKLOADS=$2; shift 2 ;;
        --records) RECORDS=$2; shift 2 ;;
        --results) RESULTS=$2; shift 2 ;;
        --work-dir) WORK_DIR=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "compare.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
for w in $WORKLOADS; do
    case "$w" in w|c|cs|a|r|t) ;; *) echo "compare.sh: unknown workload $w (w c cs a r t)" >&2; exit 2 ;; esac
done

log() { printf '\n== %s\n' "$*" >&2; }
die() { echo "compare.sh: $*" >&2; exit 1; }

# --- etcd, installed if missing -----------------------------------------------------------
if ! command -v etcd >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then
        log "installing etcd (apt-get install -y etcd-server)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server >/dev/null \
            || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server >/dev/null; } \
            || die "could not install etcd-server with apt-get"
    else
        die "etcd is not installed and this is not root: run 'sudo apt-get install -y etcd-server' first"
    fi
fi
command -v python3 >/dev/null 2>&1 || die "python3 is needed for the fsync probe and the report"

# --- build ---------------------------------------------------------------------------------
log "building release binaries"
(cd "$ROOT" && cargo build --release --bins -p ferrisdb -p ferrisdb-server)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
FERRISDB="$BIN/ferrisdb"
[ -x "$FERRISDB" ] || die "$FERRISDB was not built"

mkdir -p "$RESULTS"
RESULTS=$(cd "$RESULTS" && pwd)
TMP=$(mktemp -d "$WORK_DIR/ferrisdb-vs-etcd.XXXXXX")
ETCD_PID=""
ETCD_PIDS=()
FDB_PID=""
cleanup() {
    # No errexit here: a killed child's `wait` status must not skip the rest.
    set +e
    for pid in "${ETCD_PIDS[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
    if [ -n "$FDB_PID" ]; then kill "$FDB_PID" 2>/dev/null; wait "$FDB_PID" 2>/dev/null; fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ETCD_URL="http://127.0.0.1:$ETCD_PORT"
etcd_client_url() { echo "http://127.0.0.1:$((ETCD_PORT + 2 * $1))"; }
etcd_peer_url() { echo "http://127.0.0.1:$((ETCD_PORT + 2 * $1 + 1))"; }
start_etcd() {
    # fsync on (etcd's default), generous quota (8 GiB): the runs write many revisions. Every
    # member on this host, each with its own data directory.
    local cluster="" i
    for i in $(seq 0 $((ETCD_MEMBERS - 1))); do
        cluster="${cluster:+$cluster,}m$i=$(etcd_peer_url "$i")"
    done
    ETCD_PIDS=()
    for i in $(seq 0 $((ETCD_MEMBERS - 1))); do
        etcd --name "m$i" --data-dir "$TMP/etcd-$i" \
            --listen-client-urls "$(etcd_client_url "$i")" --advertise-client-urls "$(etcd_client_url "$i")" \
            --listen-peer-urls "$(etcd_peer_url "$i")" --initial-advertise-peer-urls "$(etcd_peer_url "$i")" \
            --initial-cluster "$cluster" --initial-cluster-state new \
            --quota-backend-bytes $((8 << 30)) \
            >>"$TMP/etcd-$i.log" 2>&1 &
        ETCD_PIDS+=($!)
    done
    ETCD_PID=${ETCD_PIDS[0]}
    for _ in $(seq 150); do
        local healthy=0
        for i in $(seq 0 $((ETCD_MEMBERS - 1))); do
            if curl -fsS "$(etcd_client_url "$i")/health" 2>/dev/null | grep -q '"health":"true"'; then
                healthy=$((healthy + 1))
            fi
        done
        [ "$healthy" -eq "$ETCD_MEMBERS" ] && return 0
        for pid in "${ETCD_PIDS[@]}"; do
            kill -0 "$pid" 2>/dev/null || { tail -20 "$TMP"/etcd-*.log >&2; die "an etcd member exited"; }
        done
        sleep 0.1
    done
    tail -20 "$TMP"/etcd-*.log >&2
    die "etcd did not become healthy ($ETCD_MEMBERS members from $ETCD_URL)"
}
stop_etcd() {
    local pid
    for pid in "${ETCD_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${ETCD_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    ETCD_PIDS=()
    ETCD_PID=""
}
restart_etcd() {
    log "restarting etcd before a read phase (etcd 3.4 reads slow down after write bursts until restarted)"
    stop_etcd
    start_etcd
}
# A counter from etcd's Prometheus metrics (0 if absent).
etcd_metric() {
    curl -fsS "$ETCD_URL/metrics" 2>/dev/null | awk -v m="$1" '$1 == m { print $2; found=1 } END { if (!found) print 0 }'
}

start_ferrisdb() {
    "$FERRISDB" cluster up --dir "$TMP/ferrisdb" --port-base "$FERRISDB_PORT_BASE" \
        --log-replication "$FERRISDB_LOG_REPLICATION" \
        >"$TMP/ferrisdb-cluster.log" 2>&1 &
    FDB_PID=$!
    for _ in $(seq 300); do
        if [ -f "$TMP/ferrisdb/ferrisdb.cluster" ] \
            && "$FERRISDB" --cluster-file "$TMP/ferrisdb/ferrisdb.cluster" --timeout 2 \
                exec 'get bench/probe' >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "$FDB_PID" 2>/dev/null || { tail -20 "$TMP/ferrisdb-cluster.log" >&2; die "ferrisdb cluster up exited"; }
        sleep 0.2
    done
    tail -20 "$TMP/ferrisdb-cluster.log" >&2
    die "the FerrisDB cluster did not answer within 60 s"
}

# One run of `ferrisdb bench`. $1: output name; the rest: bench flags. A run with failed
# operations still writes its JSON (the report shows its errors); the matrix goes on.
bench() {
    local name=$1; shift
    echo "-- $name" >&2
    if ! "$FERRISDB" --cluster-file "$TMP/ferrisdb/ferrisdb.cluster" bench --uniform \
        --records "$RECORDS" --key-size "$KEY_SIZE" --value-size "$VALUE_SIZE" \
        --json "$RESULTS/$name.json" "$@" | tee "$RESULTS/$name.txt"; then
        echo "compare.sh: run $name failed (see above)" >&2
        return 1
    fi
}

# --- machine facts -------------------------------------------------------------------------
log "measuring the disk's fsync rate under $TMP (4 KiB write + fdatasync, 3 s)"
python3 "$HERE/fsync_rate.py" "$TMP" 3 | tee "$RESULTS/fsync.json"
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "ferrisdb commit: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "etcd: $(etcd --version 2>/dev/null | head -1), $ETCD_MEMBERS members"
    echo "ferrisdb log replication: $FERRISDB_LOG_REPLICATION"
    echo "cpus: $(nproc)  kernel: $(uname -r)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "duration: $DURATION s  records: $RECORDS  key/value: $KEY_SIZE/$VALUE_SIZE bytes  clients: $CLIENTS"
} | tee "$RESULTS/machine.txt"

# --- start both and load -------------------------------------------------------------------
log "starting etcd on $ETCD_URL and FerrisDB (port base $FERRISDB_PORT_BASE) in $TMP"
start_etcd
start_ferrisdb

log "loading $RECORDS records into each (etcd: Txns of up to 128 puts)"
bench load-etcd --store etcd --etcd-endpoint "127.0.0.1:$ETCD_PORT" --workload c \
    --clients "$LOAD_CLIENTS" --duration 1 >/dev/null
bench load-ferrisdb --workload c --clients "$LOAD_CLIENTS" --duration 1 >/dev/null
log "restarting etcd after loading (etcd 3.4 reads slow down after write bursts until restarted)"
stop_etcd
start_etcd
ETCD_WROTE=0

# --- the matrix ----------------------------------------------------------------------------
for w in $WORKLOADS; do
    case "$w" in
        cs) letter=c; etcd_flags=(--etcd-serializable); etcd_name=etcd-serializable ;;
        *) letter=$w; etcd_flags=(); etcd_name=etcd ;;
    esac
    case "$letter" in c|r) reads_only=1 ;; *) reads_only=0 ;; esac
    if [ "$reads_only" = 1 ] && [ "$ETCD_WROTE" = 1 ]; then
        restart_etcd
        ETCD_WROTE=0
    fi
    for n in $CLIENTS; do
        log "workload $w, $n clients"
        fsyncs_before=$(etcd_metric etcd_disk_wal_fsync_duration_seconds_count)
        bench "$etcd_name-$letter-$n" --store etcd --etcd-endpoint "127.0.0.1:$ETCD_PORT" \
            "${etcd_flags[@]}" --workload "$letter" --clients "$n" --duration "$DURATION" --no-load \
            || true
        fsyncs_after=$(etcd_metric etcd_disk_wal_fsync_duration_seconds_count)
        echo "{\"wal_fsyncs\": $(python3 -c "print(int(float('$fsyncs_after') - float('$fsyncs_before')))")}" \
            >"$RESULTS/$etcd_name-$letter-$n.fsyncs.json"
        if [ "$w" != cs ]; then
            # The coordinator's counters arrive with its heartbeats: sample them a heartbeat
            # after each edge of the run, and report the difference.
            if [ "$reads_only" = 0 ]; then
                sleep 1.5
                "$FERRISDB" --cluster-file "$TMP/ferrisdb/ferrisdb.cluster" status --json \
                    >"$RESULTS/ferrisdb-$letter-$n.status-before.json" 2>/dev/null || true
            fi
            bench "ferrisdb-$letter-$n" --workload "$letter" --clients "$n" --duration "$DURATION" \
                --no-load || true
            if [ "$reads_only" = 0 ]; then
                sleep 1.5
                "$FERRISDB" --cluster-file "$TMP/ferrisdb/ferrisdb.cluster" status --json \
                    >"$RESULTS/ferrisdb-$letter-$n.status.json" 2>/dev/null || true
            fi
        fi
    done
    [ "$reads_only" = 0 ] && ETCD_WROTE=1
done

log "results in $RESULTS"
python3 "$HERE/report.py" "$RESULTS" | tee "$RESULTS/report.md"
