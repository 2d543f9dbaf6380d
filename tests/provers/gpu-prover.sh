#!/bin/sh
# Records the GPU each run was given and whether another run held it at the
# same time. Per run, appends "<block> [<CUDA_VISIBLE_DEVICES>]" to
# $GPU_DIR/runs ("<unset>" when the variable is not set). It holds its
# device for $GPU_HOLD_SECONDS (default 1) by an atomic
# `mkdir $GPU_DIR/gpu-<device>.lock`; if that directory is already there,
# another job is on the same device: it appends the run to
# $GPU_DIR/overlaps for the test to fail on, and proves anyway.
set -eu
. "$(dirname "$0")/contract.sh"
device=${CUDA_VISIBLE_DEVICES-<unset>}
echo "$block [$device]" >> "$GPU_DIR/runs"
lock="$GPU_DIR/gpu-$device.lock"
if mkdir "$lock" 2>/dev/null; then
  sleep "${GPU_HOLD_SECONDS:-1}"
  rmdir "$lock"
else
  echo "$block [$device]" >> "$GPU_DIR/overlaps"
  sleep "${GPU_HOLD_SECONDS:-1}"
fi
write_proof gpu-prover
