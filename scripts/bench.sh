#!/usr/bin/env bash
# bench.sh measures the README's cost table ("## Costs") again: it runs every benchmark
# a row of the table names, -count 6 so that benchstat can give medians and their
# spread, then the latency the demo gateway adds at fixed offered rates (vegeta, open
# loop) and its throughput against a bare proxy under wrk. It writes the raw output to
# a directory, and prints benchstat's summary, the latency table and wrk's figures.
# The table's figures are from a 2-core VM with nothing else running: on a busy
# machine, expect wider spreads and worse tails.
#
# Settings, from the environment:
#   BENCH_COUNT     -count of each benchmark (6)
#   BENCH_TIME      -benchtime of the micro-benchmarks ("" for go test's 1s; "100ms" to
#                   check quickly that all run)
#   BENCH_OUT       directory for the raw output (a new one under /tmp)
#   LATENCY_ROUND, LATENCY_ROUNDS   the latency harness's round length and rounds per
#                   rate (2s, 5)
#   WRK_ROUND, WRK_ROUNDS           wrk's round length and rounds per server (3s, 5)
#
#   ./scripts/bench.sh
#   BENCH_COUNT=1 BENCH_TIME=100ms LATENCY_ROUND=500ms LATENCY_ROUNDS=2 WRK_ROUND=1s WRK_ROUNDS=1 ./scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

count=${BENCH_COUNT:-6}
benchtime=${BENCH_TIME:-}
out=${BENCH_OUT:-$(mktemp -d /tmp/autoscalelua-bench.XXXXXX)}
mkdir -p "$out"

# redis-server for metrics/redisshare's merge benchmark; wrk for the throughput run.
need_apt_package redis-server redis-server
need_apt_package wrk wrk

# Each line: a package, the benchmarks of the cost table it holds (a -bench pattern
# over top-level names; sub-benchmarks all run), and "1x" where one iteration is the
# whole measurement (the load benchmarks run their own interleaved rounds).
benchmarks=(
  "./metrics RecordAt|RecordWithClock|ClockReads|SnapshotRepeated|SnapshotWholeWindow|SnapshotNaive|Snapshot1000Windows"
  "./middleware Middleware|MiddlewareParallel|MiddlewareTenant|Otelhttp|Admit|AdmitPlain|AdmitAdaptive|AdmitAdaptiveParallel"
  "./middleware/redislimit Allow|Admit"
  "./metrics/redisshare Payload1000|Merge1000x3"
  "./balancer PickDone|PickDoneParallel|PickDoneScale|DoneParts"
  "./luabind OnRequest|OnTick1000Windows|OnTickParts|OnTickScale"
  "./autoscale StepLua100"
  "./autoscale/simulate HourAt1000rps"
  "./examples/gateway GatewayVsBareProxy 1x"
)

raw="$out/benchmarks.txt"
: >"$raw"
for line in "${benchmarks[@]}"; do
  read -r pkg pattern once <<<"$line"
  bt=()
  if [[ -n "${once:-}" ]]; then
    bt=(-benchtime 1x)
  elif [[ -n "$benchtime" ]]; then
    bt=(-benchtime "$benchtime")
  fi
  echo "== go test -bench '^Benchmark($pattern)\$' -count $count ${bt[*]} $pkg" >&2
  go test -run '^$' -bench "^Benchmark($pattern)\$" -benchmem -count "$count" "${bt[@]}" "$pkg" | tee -a "$raw" >&2
done

echo "== latency added (vegeta) and throughput (wrk): ./examples/gateway" >&2
go test -run '^$' -bench '^Benchmark(LatencyAdded|WrkGatewayVsBare)$' -benchtime 1x -count 1 ./examples/gateway \
  -latency.round "${LATENCY_ROUND:-2s}" -latency.rounds "${LATENCY_ROUNDS:-5}" \
  -wrk.round "${WRK_ROUND:-3s}" -wrk.rounds "${WRK_ROUNDS:-5}" 2>&1 | tee "$out/latency.txt" >&2

go run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da "$raw" >"$out/benchstat.txt"

echo
echo "# benchstat: medians of $count runs (raw output: $raw)"
cat "$out/benchstat.txt"
echo
sed -n '/^latency added by/,/^$/p' "$out/latency.txt"
grep '^wrk ' "$out/latency.txt"
echo
echo "raw output in $out"
