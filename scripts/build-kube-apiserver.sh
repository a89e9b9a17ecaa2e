#!/usr/bin/env bash
# Builds kube-apiserver from the Go module proxy once per pinned version; prints the binary path.
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
dir="$TOOLS_CACHE/kube-apiserver-$KUBERNETES_VERSION"
if [ ! -x "$dir/kube-apiserver" ]; then
  log "building kube-apiserver $KUBERNETES_VERSION (first time only, several minutes)"
  minor="${KUBERNETES_VERSION#v1.}"; minor="${minor%%.*}"
  pkg=k8s.io/component-base/version
  ldflags="-s -w -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  mkdir -p "$dir.partial"
  (cd "$ROOT_DIR/test/tools/kube-apiserver" && go build -trimpath -ldflags "$ldflags" -o "$dir.partial/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver)
  rm -rf "$dir" && mv "$dir.partial" "$dir"
fi
echo "$dir/kube-apiserver"
