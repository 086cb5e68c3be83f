//go:build tools

// Package controlplane pins the Kubernetes and etcd releases that kube402's
// local development and test control plane is built from. Nothing here is
// product code; build.sh compiles the listed commands into a cache outside
// the repository.
package controlplane

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
