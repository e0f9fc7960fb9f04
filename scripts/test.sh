#!/usr/bin/env bash
# test.sh is the project's whole test suite, the command the README gives and .ci/run
# runs. It installs, builds and starts whatever the integration tests need, then runs
# every test with the race detector. It sets AUTOSCALELUA_INTEGRATION=1, so an
# integration test that cannot find what it needs fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

export AUTOSCALELUA_INTEGRATION=1

# Headless Chromium, for the dashboard's browser test (Debian's package).
if ! command -v chromium >/dev/null 2>&1; then
  echo "== installing chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
fi

echo "== go test -race ./..."
go test -race -count=1 -timeout 30m ./...

# The race detector slows each request about tenfold, so under -race the middleware's
# million-tenant test sends 100,000; here it sends the full million.
echo "== go test (million tenants, without -race)"
go test -count=1 -run 'TestMillionTenants' ./middleware
