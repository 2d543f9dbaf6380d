#!/usr/bin/env bash
# Local stand-ins for the public images the Dockerfile and the compose files
# name, for machines that reach no image registry (only Debian, PyPI, npm and
# crates.io). Each is built only when the engine does not have it yet, so the
# engine's image store is the cache between runs.
#
#   base-images.sh [debian] [nats] [rust]    (default: debian nats)
#
#   debian  debian:bookworm-slim   debootstrap --variant=minbase + docker import
#   nats    $NATS_IMAGE            (default ethproofs-test/nats:local) the
#           nats-server binary of scripts/install-test-deps.sh on the debian
#           stand-in, with wget for the compose health check
#   rust    $RUST_IMAGE            (default rust:1-bookworm) Debian's
#           rustc-web/cargo-web (1.96, bookworm-updates) on the debian stand-in;
#           only for building the Dockerfile from source by hand
#
# Needs a running engine (scripts/containers/engine.sh) and root for
# debootstrap.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
here="$root/scripts/containers"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
nats_image="${NATS_IMAGE:-ethproofs-test/nats:local}"
rust_image="${RUST_IMAGE:-rust:1-bookworm}"

say() { echo "containers: $*" >&2; }
have() { docker image inspect "$1" >/dev/null 2>&1; }

debian() {
  have debian:bookworm-slim && return
  local rootfs
  rootfs="$(mktemp -d "$root/.deps/rootfs.XXXXXX")"
  # A partly written rootfs is never imported; it is removed on any exit.
  trap 'rm -rf "$rootfs"' RETURN
  say "debootstrap bookworm (minbase) for debian:bookworm-slim"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$root/.deps/debootstrap.log" 2>&1 \
    || { say "debootstrap failed (see .deps/debootstrap.log)"; return 1; }
  # Like the real image: updates and security suites, no apt caches.
  cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security} bookworm-security main
EOF
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import -c 'CMD ["bash"]' - debian:bookworm-slim >/dev/null
  say "debian:bookworm-slim imported"
}

nats() {
  have "$nats_image" && return
  local deps context
  deps="$("$root/scripts/install-test-deps.sh")"
  context="$(mktemp -d "$root/.deps/nats-context.XXXXXX")"
  trap 'rm -rf "$context"' RETURN
  cp -L "$deps/nats-server" "$context/nats-server"
  say "building $nats_image from $("$context/nats-server" --version)"
  docker build -q -t "$nats_image" -f "$here/nats.Dockerfile" "$context" >/dev/null
}

rust() {
  have "$rust_image" && return
  local context
  context="$(mktemp -d "$root/.deps/rust-context.XXXXXX")"
  trap 'rm -rf "$context"' RETURN
  mkdir "$context/ca"
  find /usr/local/share/ca-certificates -maxdepth 1 -name '*.crt' -exec cp {} "$context/ca/" \; 2>/dev/null || true
  say "building $rust_image from Debian's rustc-web and cargo-web"
  docker build -q -t "$rust_image" -f "$here/rust.Dockerfile" "$context" >/dev/null
}

[ "$#" -gt 0 ] || set -- debian nats
for image in "$@"; do
  case "$image" in
    debian) debian ;;
    nats) debian && nats ;;
    rust) debian && rust ;;
    *) echo "usage: $0 [debian] [nats] [rust]" >&2; exit 2 ;;
  esac
done
