#!/usr/bin/env bash
# One-time (idempotent) setup.
#
#   bash scripts/setup.sh          what `npm run demo` needs: Node.js 24 and the npm dependencies.
#                                  No Go, no Debian packages, no server builds.
#   bash scripts/setup.sh --test   also what `npm test` needs (`.ci/run` uses this):
#                                  Debian packages (clickhouse-server 18.16, etcd-server, openssl,
#                                  time, curl, ...) and MinIO, kube-apiserver and Helm built from
#                                  the Go module proxy (needs Go 1.26+), cached by version.
#
# Everything downloaded comes from the npm registry, Debian's packages or the
# Go module proxy. Caches live in ~/.cache/chbackup-tools (BACKUP_TOOLS_CACHE).
# Node.js 24 comes from the npm registry, only if the system node is older.
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/node-env.sh"
cd "$ROOT_DIR"

with_test=false
for arg in "$@"; do
  case "$arg" in
    --test) with_test=true ;;
    -h|--help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) log "unknown argument: $arg (use --test to set up the test servers too)"; exit 2 ;;
  esac
done

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "installing npm dependencies"
  # npm install, not npm ci: chdb lists optional per-platform packages
  # (darwin, linux-arm64) that this registry does not serve, so they are not in
  # the lock file and npm ci would refuse; the lock file still pins every
  # package that is installed.
  npm install --no-audit --no-fund --loglevel=error
fi

if [ "$with_test" != true ]; then
  log "ready for npm run demo: node $(node --version). For npm test run: bash scripts/setup.sh --test"
  exit 0
fi

# ---- the test servers (bash scripts/setup.sh --test) ----
need_apt=()
# (look in sbin too: a non-login PATH may lack it)
PATH="$PATH:/usr/sbin:/sbin"
command -v clickhouse-server >/dev/null 2>&1 || need_apt+=(clickhouse-server)
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
[ -x /usr/bin/time ] || need_apt+=(time)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# age (the reference CLI) and zstd: the encryption tests decrypt the runner's objects with them (issue #17)
command -v age >/dev/null 2>&1 || need_apt+=(age)
command -v zstd >/dev/null 2>&1 || need_apt+=(zstd)
# ZooKeeper 3.8 for the ClickHouse cluster tests (test/env/zookeeper.ts runs its jars with java as a
# plain process; it brings the Java runtime it needs; the packaged service is never used)
[ -f /usr/share/java/zookeeper.jar ] || need_apt+=(zookeeperd)
if [ "${#need_apt[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
  log "installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

command -v go >/dev/null 2>&1 || { log "Go is needed once to build MinIO, kube-apiserver and Helm for the tests (install Go 1.26+)"; exit 1; }
# The builds share 2 cores poorly; run them one after the other.
bash "$ROOT_DIR/scripts/build-minio.sh" >/dev/null
bash "$ROOT_DIR/scripts/build-kube-apiserver.sh" >/dev/null
bash "$ROOT_DIR/scripts/build-helm.sh" >/dev/null
log "ready for npm test: node $(node --version), clickhouse-server $(dpkg-query -W -f '${Version}' clickhouse-server 2>/dev/null || echo "?"), etcd $(etcd --version | head -1 | awk '{print $3}'), minio $MINIO_VERSION, kube-apiserver $KUBERNETES_VERSION, helm $HELM_VERSION"
