#!/bin/sh
# A prover that knows nothing of the orchestrator but the binary contract
# (see contract.sh): it proves every block as "sh-prover".
set -eu
. "$(dirname "$0")/contract.sh"
write_proof sh-prover
