#!/usr/bin/env bash
# Builds the orchestrator image for the container test from binaries already
# built on the host, instead of compiling the workspace again inside a
# container (minutes on 2 cores): the repository's Dockerfile with
# BINARIES=.deps/container-bin (stripped copies of BIN_DIR's binaries) and the
# Debian stand-in as the builder's base. The runtime stage is the one users
# get; only where the three binaries come from differs.
#
#   test-image.sh BIN_DIR [IMAGE]     (default IMAGE: ethproofs-orchestrator:test)
#
# Never tag it ethproofs-orchestrator:local: `make start-*` would then run
# the test's debug build.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
bin_dir="${1:?usage: $0 BIN_DIR [IMAGE]}"
image="${2:-ethproofs-orchestrator:test}"
out="$root/.deps/container-bin"

mkdir -p "$out"
# One build at a time (test binaries may run side by side).
exec 9>"$root/.deps/container-bin.lock"
flock 9
old="$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
for bin in orchestrator mock-prover mock-multistep-prover; do
  [ -x "$bin_dir/$bin" ] || { echo "containers: $bin_dir/$bin not built" >&2; exit 1; }
  # Debug info is most of a debug binary; the image does not need it.
  if command -v strip >/dev/null 2>&1; then
    strip -o "$out/$bin.new" "$bin_dir/$bin"
  else
    cp "$bin_dir/$bin" "$out/$bin.new"
  fi
  # Unchanged bytes keep the file (and the build cache) as it was.
  if cmp -s "$out/$bin.new" "$out/$bin"; then rm "$out/$bin.new"; else mv "$out/$bin.new" "$out/$bin"; fi
done

docker build -q -t "$image" \
  --build-arg BINARIES=.deps/container-bin \
  --build-arg RUST_IMAGE=debian:bookworm-slim \
  "$root" >/dev/null 2>"$root/.deps/test-image.log" \
  || { cat "$root/.deps/test-image.log" >&2; exit 1; }
# The image it replaces would stay behind untagged, run after run.
new="$(docker image inspect --format '{{.Id}}' "$image")"
if [ -n "$old" ] && [ "$old" != "$new" ]; then docker rmi "$old" >/dev/null 2>&1 || true; fi
echo "containers: image $image built from $bin_dir" >&2
