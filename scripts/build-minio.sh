#!/usr/bin/env bash
# Builds MinIO from the Go module proxy once per pinned version; prints the binary path.
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
dir="$TOOLS_CACHE/minio-$MINIO_VERSION"
if [ ! -x "$dir/minio" ]; then
  log "building minio $MINIO_VERSION (first time only, a few minutes)"
  mkdir -p "$dir.partial"
  GOBIN="$dir.partial" GOFLAGS=-trimpath go install "github.com/minio/minio@$MINIO_VERSION"
  rm -rf "$dir" && mv "$dir.partial" "$dir"
fi
echo "$dir/minio"
