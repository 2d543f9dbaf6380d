#!/bin/sh
# Runs $WRAPPED_BINARY with the same arguments, then keeps a copy of the
# output it wrote as $KEEP_DIR/<block>.json, <block> being the output's
# leading "block" field (a block proof: {"block":N,...}). A test compares the
# copy with what the orchestrator stored, byte for byte.
set -eu
output_path=''
for arg in "$@"; do
  if [ "${previous:-}" = --output-path ]; then output_path=$arg; fi
  previous=$arg
done
if [ -z "$output_path" ]; then
  echo "$0: no --output-path in '$*'" >&2; exit 2
fi
"$WRAPPED_BINARY" "$@"
block=$(head -c 64 "$output_path" | sed -n 's/^{"block":\([0-9][0-9]*\),.*/\1/p')
if [ -z "$block" ]; then
  echo "$0: the output of $WRAPPED_BINARY does not start with {\"block\":N," >&2; exit 1
fi
cp "$output_path" "$KEEP_DIR/$block.json.tmp.$$"
mv "$KEEP_DIR/$block.json.tmp.$$" "$KEEP_DIR/$block.json"
