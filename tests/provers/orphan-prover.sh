#!/bin/sh
# A prover with a child of its own: starts `sleep 300`, writes "<own pid>
# <sleep pid>" to $PIDS_DIR/<block>.pids, then waits for the sleep. Killing
# only this shell would leave the sleep behind as an orphan.
set -eu
. "$(dirname "$0")/contract.sh"
sleep 300 &
echo "$$ $!" > "$PIDS_DIR/$block.tmp"
mv "$PIDS_DIR/$block.tmp" "$PIDS_DIR/$block.pids"
wait
write_proof orphan-prover
