#!/usr/bin/env bash
# Creates (or updates) the project's Python environment for the examples in examples/python:
# a virtualenv at .ci-tools/pyenv with examples/python/requirements.txt installed. Idempotent
# and quick once done (pip runs only when grpc or grpc_tools cannot be imported or
# requirements.txt changed). Prints the environment's python on its last line of stdout:
#   py=$(scripts/python-env.sh | tail -1)
#   "$py" examples/python/bank_transfer.py --target 127.0.0.1:4501
# Needs python3 and its venv module; as root with apt-get, installs python3-venv if missing.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="$repo/.ci-tools/pyenv"
requirements="$repo/examples/python/requirements.txt"

if ! command -v python3 >/dev/null 2>&1; then
  echo "python-env: python3 is not installed (the examples need Python 3.9 or newer)" >&2
  exit 1
fi

make_venv() {
  python3 -m venv "$venv" >/dev/null 2>&1
}

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
  rm -rf "$venv"
  mkdir -p "$repo/.ci-tools"
  if ! make_venv; then
    rm -rf "$venv"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "python-env: python3 -m venv failed; installing python3-venv with apt-get" >&2
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      if ! make_venv; then
        rm -rf "$venv"
        echo "python-env: python3 -m venv $venv still fails after installing python3-venv:" >&2
        python3 -m venv "$venv" >&2 || true
        rm -rf "$venv"
        exit 1
      fi
    else
      echo "python-env: python3 -m venv $venv failed:" >&2
      python3 -m venv "$venv" >&2 || true
      rm -rf "$venv"
      echo "python-env: install Python's venv module (Debian: apt-get install python3-venv)" >&2
      exit 1
    fi
  fi
fi

# pip runs when the packages do not import or requirements.txt changed since the last install
# (the stamp holds a copy of the requirements it installed).
stamp="$venv/.requirements-installed"
if ! "$venv/bin/python" -c 'import grpc, grpc_tools' >/dev/null 2>&1 \
  || ! cmp -s "$requirements" "$stamp"; then
  echo "python-env: installing $requirements into $venv" >&2
  "$venv/bin/python" -m pip install --disable-pip-version-check --quiet -r "$requirements" >&2
  "$venv/bin/python" -c 'import grpc, grpc_tools'
  cp "$requirements" "$stamp"
fi

echo "$venv/bin/python"
