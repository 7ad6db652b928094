#!/usr/bin/env bash
# Sourced by the bench scripts: `start_local_cluster FERRISDB PORT_BASE [BIN_DIR]` starts
# `ferrisdb cluster up` (defaults; the server binaries from BIN_DIR, or next to FERRISDB) in a
# temporary directory that is removed, with the cluster, when the script exits; waits until
# the controller answers; and loads 100,000 records (workload w's keys, 16 clients, 1 s).
# Sets CONTROLLER to the controller's address.

start_local_cluster() {
    local ferrisdb=$1 port_base=$2 bin_dir=${3:-}
    CONTROLLER="127.0.0.1:$port_base"
    CLUSTER_DIR=$(mktemp -d)
    local args=(cluster up --dir "$CLUSTER_DIR" --port-base "$port_base")
    [ -n "$bin_dir" ] && args+=(--bin-dir "$bin_dir")
    "$ferrisdb" "${args[@]}" >"$CLUSTER_DIR/up.log" 2>&1 &
    CLUSTER_PID=$!
    trap 'kill $CLUSTER_PID 2>/dev/null; wait $CLUSTER_PID 2>/dev/null; rm -rf "$CLUSTER_DIR"' EXIT
    for _ in $(seq 150); do
        "$ferrisdb" status --controller "$CONTROLLER" >/dev/null 2>&1 && break
        kill -0 "$CLUSTER_PID" 2>/dev/null || { cat "$CLUSTER_DIR/up.log" >&2; exit 1; }
        sleep 0.2
    done
    "$ferrisdb" bench --controller "$CONTROLLER" --workload w --clients 16 --records 100000 \
        --duration 1 >/dev/null
}
