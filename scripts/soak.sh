#!/usr/bin/env bash
# soak.sh runs the demo gateway (examples/gateway) for 10 minutes under its flash-sale
# load with a fault injected every 30 s, in turn: a backend killed (replaced 5 s
# later, as a ReplicaSet would), a backend slowed 10× for 20 s, the actuator failing
# for 20 s, a broken policy reload. It prints the heap and goroutines each minute and
# fails unless they stay flat after the first load period (2 minutes), every request
# sent is accounted for (served + shed + throttled + errored, on the client's side and
# the gateway's) and nothing panics. It is not part of ./scripts/test.sh.
#
#   ./scripts/soak.sh                  # 10 minutes
#   ./scripts/soak.sh -duration 1m     # a smoke test; flags go to the gateway
#
# -min 2 keeps a replica serving while another is killed.
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o "${TMPDIR:-/tmp}/autoscalelua-soak-gateway" ./examples/gateway
exec "${TMPDIR:-/tmp}/autoscalelua-soak-gateway" -soak -load flash-sale -addr 127.0.0.1:0 -min 2 -duration 10m "$@"
