#!/usr/bin/env bash
# Makes sure a Docker engine answers, for the container test and the compose
# targets on a machine like CI's: installs Debian's docker.io, docker-compose
# (v1) and debootstrap when missing, and starts `dockerd` when none runs (as
# root only; its log and pid file go to .deps/dockerd/). Waits, bounded, for
# the engine to answer. Idempotent.
#
# Exit 0: an engine answers. Exit 1: it cannot be had here; the one line on
# stderr says why (the container test then reports itself skipped).
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
state="$root/.deps/dockerd"
ready_timeout="${DOCKERD_READY_TIMEOUT:-60}"

say() { echo "containers: $*" >&2; }
cannot() { say "no Docker engine: $*"; exit 1; }

engine_answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

missing=()
command -v docker >/dev/null 2>&1 || missing+=(docker.io)
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || missing+=(docker-compose)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)

if [ "${#missing[@]}" -gt 0 ] && ! engine_answers; then
  [ "$(id -u)" -eq 0 ] || cannot "missing ${missing[*]} and not root to install them"
  command -v apt-get >/dev/null 2>&1 || cannot "missing ${missing[*]} and no apt-get"
  say "installing ${missing[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q "${missing[@]}" >"$root/.deps/apt-docker.log" 2>&1; then
    apt-get update -q >>"$root/.deps/apt-docker.log" 2>&1 || true
    apt-get install -y -q "${missing[@]}" >>"$root/.deps/apt-docker.log" 2>&1 \
      || cannot "apt-get install ${missing[*]} failed (see .deps/apt-docker.log)"
  fi
fi

engine_answers && exit 0

command -v dockerd >/dev/null 2>&1 || cannot "dockerd not installed"
[ "$(id -u)" -eq 0 ] || cannot "no engine answers and not root to start dockerd"

mkdir -p "$state"
say "starting dockerd (log: .deps/dockerd/dockerd.log)"
# setsid: the engine outlives this script and the test that called it, so
# its image cache serves the next run.
setsid dockerd --pidfile "$state/dockerd.pid" >"$state/dockerd.log" 2>&1 </dev/null &

deadline=$((SECONDS + ready_timeout))
until engine_answers; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    cannot "dockerd did not answer within ${ready_timeout}s: $(tail -n 1 "$state/dockerd.log" 2>/dev/null)"
  fi
  if [ -f "$state/dockerd.pid" ] && ! kill -0 "$(cat "$state/dockerd.pid")" 2>/dev/null; then
    cannot "dockerd exited: $(tail -n 1 "$state/dockerd.log" 2>/dev/null)"
  fi
  sleep 0.5
done
say "dockerd $(docker version --format '{{.Server.Version}}') is up"
