#!/usr/bin/env bash
# Runs the fuzz targets (fuzz/src, one cargo-fuzz binary each in
# fuzz/libfuzzer) with libFuzzer on the nightly toolchain. Each target's
# whole corpus lives in target/fuzz-corpus/<target>/ (outside git, kept
# from run to run, seeded from fuzz/corpus/<target>/); after the run it is
# minimized (cargo fuzz cmin) and fuzz/corpus/<target>/ is rewritten with
# the inputs that cover the most edges (scripts/fuzz-select.py, at most
# --keep of them), so that what is committed stays small.
#
# Usage: scripts/fuzz.sh [--runs N] [--time SECS] [--keep N] [--asan] [TARGET...]
#   --runs N     stop a target after N executions    (default 10000000)
#   --time SECS  or after SECS seconds, if sooner    (default 1800)
#   --keep N     inputs committed per target         (default 20)
#   --asan       build with AddressSanitizer (slower; for the C in
#                libsecp256k1 and aws-lc; our own code forbids unsafe)
#   TARGET...    only these (default: every target in fuzz/libfuzzer)
#
# Each target's log is target/fuzz-logs/<target>.log; a summary line per
# target (executions, coverage, features, corpus size) goes to stdout and
# to target/fuzz-logs/summary.txt. A crash stops that target: its input is
# in fuzz/libfuzzer/artifacts/<target>/. Fix it, then copy the input to
# fuzz/regressions/<target>/ so that `cargo test -p fuzz` replays it.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=10000000
time=1800
keep=20
sanitizer=none
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --time) time=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    --asan) sanitizer=address; shift ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "error: the nightly toolchain is missing: rustup toolchain install nightly" >&2
  exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(ls fuzz/libfuzzer/fuzz_targets | sed 's/\.rs$//')
fi

fuzz=(cargo +nightly fuzz)
common=(--fuzz-dir fuzz/libfuzzer --sanitizer "$sanitizer")
"${fuzz[@]}" build "${common[@]}"

logs=target/fuzz-logs
mkdir -p "$logs"
for t in "${targets[@]}"; do
  corpus=fuzz/corpus/$t
  work=target/fuzz-corpus/$t
  mkdir -p "$corpus" "$work"
  # The committed inputs join the whole corpus (existing names are kept).
  find "$corpus" -maxdepth 1 -type f -exec cp -n {} "$work"/ \;
  dict=()
  [ -f "fuzz/dict/$t.dict" ] && dict=(-dict="fuzz/dict/$t.dict")
  echo "== $t: up to $runs executions or $time s"
  status=0
  "${fuzz[@]}" run "${common[@]}" "$t" "$work" -- \
    -runs="$runs" -max_total_time="$time" -max_len=65536 -rss_limit_mb=4096 \
    -print_final_stats=1 "${dict[@]}" >"$logs/$t.log" 2>&1 || status=$?
  # The whole corpus: the smallest set with the same coverage.
  "${fuzz[@]}" cmin "${common[@]}" "$t" "$work" >>"$logs/$t.log" 2>&1 || true
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$logs/$t.log" | tail -1 | grep -o '[0-9]*$' || echo '?')
  cov=$(grep -Eo 'DONE +cov: [0-9]+ ft: [0-9]+' "$logs/$t.log" | tail -1 | sed -E 's/DONE +//' || true)
  files=$(find "$work" -type f | wc -l)
  # What is committed: the inputs that cover the most edges.
  kept=$(python3 scripts/fuzz-select.py --max "$keep" --from "$work" "$t" 2>&1 | tail -1)
  line="$t: $execs executions, ${cov:-cov: ?}, corpus $files files; committed: $kept; exit $status"
  echo "$line" | tee -a "$logs/summary.txt"
  if [ "$status" -ne 0 ]; then
    echo "   crash or leak: see $logs/$t.log and fuzz/libfuzzer/artifacts/$t/" >&2
  fi
done
