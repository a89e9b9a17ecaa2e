#!/usr/bin/env bash
# Builds Helm from the Go module proxy once per pinned version; prints the binary path.
# The tests use it for `helm lint` and `helm template --include-crds` of deploy/helm/chbackup.
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
dir="$TOOLS_CACHE/helm-$HELM_VERSION"
if [ ! -x "$dir/helm" ]; then
  log "building helm $HELM_VERSION (first time only, about 1.5 minutes)"
  mkdir -p "$dir.partial"
  # The version stamp `make` would set, so `helm version` reports the pinned version.
  GOBIN="$dir.partial" GOFLAGS=-trimpath go install -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  rm -rf "$dir" && mv "$dir.partial" "$dir"
fi
echo "$dir/helm"
