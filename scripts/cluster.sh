#!/usr/bin/env bash
# Builds FerrisDB (release) and starts a local cluster on default settings:
# data in ./ferrisdb-data, controller on 127.0.0.1:4500, gateway (KV, Transactions) on 4501,
# storage from 4502.
# Extra arguments go to `ferrisdb cluster up` (see `ferrisdb cluster up --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins
exec target/release/ferrisdb cluster up "$@"
