//go:build tools

// Package kubebin pins the versions of the kube-apiserver and etcd that the
// Kubernetes integration tests build and run.
package kubebin

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
