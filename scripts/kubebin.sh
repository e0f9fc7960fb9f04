#!/usr/bin/env bash
# kubebin.sh builds kube-apiserver and etcd from the Go module proxy (internal/kubebin)
# into a cache outside the repository, keyed by their versions, and prints the folder.
# A cold build takes 11-17 minutes and about 3.5 GB of Go caches; later runs take seconds.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mod="$root/internal/kubebin"
k8s=$(awk '$1=="k8s.io/kubernetes"{print $2}' "$mod/go.mod")
etcd=$(awk '$1=="go.etcd.io/etcd/server/v3"{print $2}' "$mod/go.mod")
cache="${AUTOSCALELUA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/autoscalelua}/kubebin/k8s-$k8s-etcd-$etcd-$(go env GOVERSION)"
if [[ -x "$cache/kube-apiserver" && -x "$cache/etcd" ]]; then
  echo "$cache"
  exit 0
fi
mkdir -p "$cache.tmp"
(
  cd "$mod"
  go build -trimpath -o "$cache.tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
  go build -trimpath -o "$cache.tmp/etcd" go.etcd.io/etcd/server/v3
) >&2
rm -rf "$cache"
mv "$cache.tmp" "$cache"
echo "$cache"
