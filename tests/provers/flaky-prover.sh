#!/bin/sh
# Proves every block as "flaky-prover", except blocks divisible by
# $FLAKY_EVERY (default 3), on which it fails the way $FLAKY_MODE says:
#   exit     exits 1 with a message on stderr
#   badjson  exits 0 after writing an output file that is not JSON
#   hang     sleeps 60 s first (run it with a much shorter --job-timeout;
#            if the timeout is not enforced, the block ends up proved)
# Every attempt appends a line to $ATTEMPTS_DIR/<block>, before anything else.
set -eu
. "$(dirname "$0")/contract.sh"
echo attempt >> "$ATTEMPTS_DIR/$block"
if [ $((block % ${FLAKY_EVERY:-3})) -eq 0 ]; then
  case "${FLAKY_MODE:-}" in
    exit) echo "flaky-prover: refusing block $block" >&2; exit 1 ;;
    badjson) echo "this is not json" > "$output_path"; exit 0 ;;
    hang) sleep 60 ;;
    *) echo "flaky-prover: unknown FLAKY_MODE '${FLAKY_MODE:-}'" >&2; exit 2 ;;
  esac
fi
write_proof flaky-prover
