# shellcheck shell=bash
# Shared helpers for the setup scripts. Source it; do not run it.
set -euo pipefail
ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=versions.env
. "$ROOT_DIR/scripts/versions.env"
TOOLS_CACHE="${BACKUP_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/chbackup-tools}"
mkdir -p "$TOOLS_CACHE"
log() { printf '[setup] %s\n' "$*" >&2; }
