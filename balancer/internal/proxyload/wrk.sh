#!/usr/bin/env bash
# Throughput of balancer.Proxy against a bare httputil.ReverseProxy, measured with wrk
# (a separate process, so the load generator does not share the Go runtime), in
# alternating rounds in the same run. Usage, from the module root:
#
#	balancer/internal/proxyload/wrk.sh [rounds] [seconds] [connections]
set -euo pipefail
rounds=${1:-6}
secs=${2:-3}
conns=${3:-32}
bin=$(mktemp -d)/proxyload
go build -o "$bin" ./balancer/internal/proxyload
fifo=$(mktemp -u)
mkfifo "$fifo"
"$bin" -serve <"$fifo" >"$fifo.out" &
pid=$!
exec 3>"$fifo" # keeps the server's stdin open; closing it stops the server
trap 'exec 3>&-; wait $pid; rm -f "$fifo" "$fifo.out"' EXIT
for _ in $(seq 50); do grep -q '^balancer=' "$fifo.out" 2>/dev/null && break; sleep 0.1; done
bare=$(sed -n 's/^bare=//p' "$fifo.out")
ours=$(sed -n 's/^balancer=//p' "$fifo.out")
rate() { wrk -t1 -c"$conns" -d"${secs}s" "$1" | awk '/^Requests\/sec/ {print $2}'; }
rate "$bare" >/dev/null; rate "$ours" >/dev/null # warm up
b=(); o=()
for i in $(seq "$rounds"); do
	if (( i % 2 )); then x=$(rate "$bare"); y=$(rate "$ours"); else y=$(rate "$ours"); x=$(rate "$bare"); fi
	b+=("$x"); o+=("$y")
	printf 'round %d: bare %8.0f req/s   balancer %8.0f req/s   ratio %.3f\n' "$i" "$x" "$y" "$(echo "$y / $x" | bc -l)"
done
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mb=$(med "${b[@]}"); mo=$(med "${o[@]}")
printf 'median: bare %.0f req/s, balancer %.0f req/s, ratio %.3f\n' "$mb" "$mo" "$(echo "$mo / $mb" | bc -l)"
