// Package tools only exists so that `go mod tidy` keeps the kube-apiserver
// dependencies; the binary is built with `go build k8s.io/kubernetes/cmd/kube-apiserver`.
package tools
