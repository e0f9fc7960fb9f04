package kubernetes

import (
	"errors"
	"fmt"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// ErrNotInCluster is returned by [InClusterConfig] outside a pod: the service
// account's token or the KUBERNETES_SERVICE_HOST variable is missing.
var ErrNotInCluster = errors.New("kubernetes: not running in a cluster")

// InClusterConfig returns the configuration of a process running in a pod: the API
// server from KUBERNETES_SERVICE_HOST and _PORT, the pod's service account token
// (re-read when it rotates) and CA certificate. Outside a pod the error wraps
// [ErrNotInCluster].
func InClusterConfig() (*rest.Config, error) {
	cfg, err := rest.InClusterConfig()
	if err != nil {
		if errors.Is(err, rest.ErrNotInCluster) {
			return nil, fmt.Errorf("%w: %w", ErrNotInCluster, err)
		}
		return nil, fmt.Errorf("kubernetes: in-cluster config: %w", err)
	}
	return cfg, nil
}

// KubeconfigConfig returns the configuration of a kubeconfig file, as kubectl reads
// it: path names the file ("" means the KUBECONFIG variable, else ~/.kube/config),
// context the context to use ("" means the file's current context).
func KubeconfigConfig(path, context string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if path != "" {
		rules.ExplicitPath = path
	}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: context}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubernetes: kubeconfig %q: %w", path, err)
	}
	return cfg, nil
}

// Config returns the in-cluster configuration when path is "" and the process runs
// in a pod, and otherwise the kubeconfig's (see [KubeconfigConfig]): the usual
// behaviour of a program with a --kubeconfig flag.
func Config(path, context string) (*rest.Config, error) {
	if path == "" && context == "" {
		cfg, err := InClusterConfig()
		if err == nil {
			return cfg, nil
		}
		if !errors.Is(err, ErrNotInCluster) {
			return nil, err
		}
	}
	return KubeconfigConfig(path, context)
}
