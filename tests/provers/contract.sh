# Sourced by the test provers: the prover binary contract, implemented the way
# a third-party binary would, `BINARY --input-path IN.json --output-path OUT.json`
# with the arguments in any order. Sets $input_path, $output_path and $block
# (the input is a bare JSON block number) and defines write_proof.
input_path='' output_path=''
while [ $# -gt 0 ]; do
  case "$1" in
    --input-path) input_path=$2; shift 2 ;;
    --output-path) output_path=$2; shift 2 ;;
    *) echo "$0: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
if [ -z "$input_path" ] || [ -z "$output_path" ]; then
  echo "usage: $0 --input-path IN.json --output-path OUT.json" >&2; exit 2
fi
block=$(tr -d ' \t\r\n' < "$input_path")

# write_proof NAME: writes the proof of $block by prover NAME.
write_proof() {
  printf '{"block":%s,"proof":"0xabc","prover":"%s"}\n' "$block" "$1" > "$output_path"
}
