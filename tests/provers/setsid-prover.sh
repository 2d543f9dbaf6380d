#!/bin/sh
# A prover with a child in its process group and a helper that left the
# group (`setsid`, as a daemonizing tool would): writes "<own pid> <child
# pid> <helper pid>" to $PIDS_DIR/<block>.pids, then waits for both. Only
# the environment the helper inherited still ties it to the orchestrator.
set -eu
. "$(dirname "$0")/contract.sh"
sleep 300 &
child=$!
helper_file="$PIDS_DIR/$block.helper"
setsid sh -c 'echo $$ > "$0"; exec sleep 300' "$helper_file" &
while [ ! -s "$helper_file" ]; do sleep 0.05; done
echo "$$ $child $(cat "$helper_file")" > "$PIDS_DIR/$block.tmp"
mv "$PIDS_DIR/$block.tmp" "$PIDS_DIR/$block.pids"
wait
write_proof setsid-prover
