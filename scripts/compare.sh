#!/usr/bin/env bash
# compare.sh regenerates the simulator's comparison report: every standard scenario
# under the oracle and every shipped policy, on seeds 1 to comparisonSeeds (the one place
# that says how many: autoscale/simulate/comparison_test.go), as many runs at once as
# GOMAXPROCS allows. On a 2-core VM it takes about 4 minutes with other work running. It
# rewrites autoscale/simulate/testdata/comparison.md and the README's copy of its
# tables, and prints the wall time. `go test ./autoscale/simulate` then checks one short
# scenario's rows against the report.
#
# Settings, from the environment:
#   COMPARE_SEEDS   seeds 1 to N instead of the report's (to check quickly that it runs;
#                   the report it writes then says so, and the full run finds it stale)
#   COMPARE_CHECK   1: check that the report is up to date instead of rewriting it
#
#   ./scripts/compare.sh
#   COMPARE_SEEDS=1 ./scripts/compare.sh && git checkout README.md autoscale/simulate/testdata
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

args=(-run '^TestComparisonTable$' -count 1 -timeout 60m -full)
if [[ -n "${COMPARE_SEEDS:-}" ]]; then
  args+=(-seeds "$COMPARE_SEEDS")
fi
if [[ "${COMPARE_CHECK:-}" != 1 ]]; then
  args+=(-update)
fi

echo "== go test ./autoscale/simulate ${args[*]} (GOMAXPROCS ${GOMAXPROCS:-$(nproc)})" >&2
start=$(date +%s)
go test ./autoscale/simulate "${args[@]}"
echo "== comparison in $(($(date +%s) - start)) s" >&2
