#!/usr/bin/env bash
# test.sh is the project's whole test suite, the command the README gives and .ci/run
# runs. It installs, builds and starts whatever the integration tests need, then runs
# every test with the race detector. It sets AUTOSCALELUA_INTEGRATION=1, so an
# integration test that cannot find what it needs fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

export AUTOSCALELUA_INTEGRATION=1

# shellcheck source=scripts/lib.sh
source scripts/lib.sh

# Headless Chromium, for the dashboard's browser test (Debian's package).
need_apt_package chromium chromium fonts-dejavu-core

# redis-server, for the Redis integrations' tests (middleware/redislimit,
# middleware/redisdefer, metrics/redisshare, actuator/redisstate, examples/cluster): each
# test starts its own server on a free port (internal/redistest). Debian's package.
need_apt_package redis-server redis-server

# wrk, the outside throughput client of internal/latencybench and scripts/bench.sh.
need_apt_package wrk wrk

# Kubernetes integration tests (actuator/kubernetes, examples/kubernetes) run against a
# real etcd and kube-apiserver, built from the Go module proxy by scripts/kubebin.sh into
# a cache outside the repository (cold: 15-20 minutes; later runs: seconds). The build
# stays outside any `go test -timeout`; the tests' TestMain starts both binaries from
# the folder named by AUTOSCALELUA_KUBEBIN.
echo "== kube-apiserver and etcd (scripts/kubebin.sh)"
AUTOSCALELUA_KUBEBIN=$(./scripts/kubebin.sh)
export AUTOSCALELUA_KUBEBIN

echo "== go test -race ./..."
go test -race -count=1 -timeout 30m ./...

# The race detector slows work about tenfold, so a few tests do less under -race: the
# middleware's million-tenant test sends 100,000 tenants, the simulator's comparison
# table runs two scenarios at a tenth of the traffic and skips its staleness check, its
# halved-backend test sweeps fewer fixed limits, the LLM gateway's allocation count is
# loose (sync.Pool drops items under -race), and the compact windows' memory tests fill
# 2,000 busy tenants instead of 100,000 and send 200,000 distinct keys instead of
# 10,000,000. Here they run in full (the comparison table as the default suite has it:
# one short scenario checked against the report; scripts/compare.sh runs all of it).
echo "== go test (full-size tests, without -race)"
go test -count=1 -run 'TestMillionTenants' ./middleware
go test -count=1 -run 'TestGatewayRecyclesExchanges' ./middleware/llm
go test -count=1 -run 'TestComparisonTable|TestAdaptiveLimitFollowsAHalvedBackend' ./autoscale/simulate
go test -count=1 -run 'TestCompactMemory|TestCompactDistinctKeysBounded' ./metrics
