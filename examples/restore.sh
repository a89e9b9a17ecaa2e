#!/usr/bin/env bash
# Restores a backup of a BackupDefinition through its runner's HTTP API, with
# kubectl port-forward to the runner Service and the API token from the
# runner's Secret (key `token`). The curl lines are the README's.
#
# Usage: examples/restore.sh NAMESPACE DEFINITION [BACKUP [DATABASE [TARGET_DATABASE]]]
#   NAMESPACE, DEFINITION  the BackupDefinition (for example: shop orders)
#   BACKUP                 "latest" (default) or a backup id from the list this script prints
#   DATABASE               restore only this database (default: every database in the backup)
#   TARGET_DATABASE        restore DATABASE under this name (default: its own name)
# Environment:
#   EXISTING_TABLES  fail (default) | drop | append: what to do with tables that are not empty
#   LOCAL_PORT       local port of the port-forward (default 18080)
#   KUBECTL          the kubectl command (default kubectl)
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 2 ] && [ $# -le 5 ] || usage
NS=$1 DEFINITION=$2 BACKUP=${3:-latest} DATABASE=${4:-} TARGET=${5:-}
EXISTING_TABLES=${EXISTING_TABLES:-fail}
LOCAL_PORT=${LOCAL_PORT:-18080}
KUBECTL=${KUBECTL:-kubectl}
for v in "$BACKUP" "$DATABASE" "$TARGET"; do
  case $v in *[\"\\]*) echo "names must not contain quotes or backslashes: $v" >&2; exit 2 ;; esac
done
case $EXISTING_TABLES in fail | drop | append) ;; *) echo "EXISTING_TABLES must be fail, drop or append" >&2; exit 2 ;; esac
[ -z "$TARGET" ] || [ -n "$DATABASE" ] || { echo "TARGET_DATABASE needs DATABASE" >&2; exit 2; }

# The runner objects, as the controller reports them on the definition (names can be hash-shortened).
read -r RUNNER_NS SERVICE SECRET < <($KUBECTL -n "$NS" get backupdefinition "$DEFINITION" \
  -o jsonpath='{.status.runner.namespace} {.status.runner.service} {.status.runner.secret}{"\n"}')
if [ -z "${SECRET:-}" ]; then
  echo "backupdefinition $NS/$DEFINITION has no runner yet: kubectl -n $NS describe backupdefinition $DEFINITION" >&2
  exit 1
fi
TOKEN=$($KUBECTL -n "$RUNNER_NS" get secret "$SECRET" -o jsonpath='{.data.token}' | base64 -d)

$KUBECTL -n "$RUNNER_NS" port-forward "svc/$SERVICE" "$LOCAL_PORT:8080" >/dev/null &
forward=$!
tmp=$(mktemp -d)
trap 'kill "$forward" 2>/dev/null || true; rm -rf "$tmp"' EXIT
RUNNER=http://localhost:$LOCAL_PORT
for _ in $(seq 1 60); do
  curl -fsS -o /dev/null "$RUNNER/healthz" 2>/dev/null && break
  kill -0 "$forward" 2>/dev/null || { echo "kubectl port-forward svc/$SERVICE failed" >&2; exit 1; }
  sleep 0.5
done

echo "== status of runner $RUNNER_NS/$SERVICE"
curl -fsS -H "Authorization: Bearer $TOKEN" "$RUNNER/api/v1/status"
echo "== backups, newest first"
curl -fsS -H "Authorization: Bearer $TOKEN" "$RUNNER/api/v1/backups"

body="{\"backup\":\"$BACKUP\",\"existingTables\":\"$EXISTING_TABLES\""
[ -z "$DATABASE" ] || body="$body,\"databases\":[\"$DATABASE\"]"
[ -z "$TARGET" ] || body="$body,\"renameDatabases\":{\"$DATABASE\":\"$TARGET\"}"
body="$body}"
echo "== restore $body"
curl -fsS -X POST -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \
  -d "$body" -D "$tmp/headers" -o "$tmp/started" \
  "$RUNNER/api/v1/restores"                                                              # 202, Location: /api/v1/restores/<id>
location=$(sed -n 's/^[Ll]ocation: *//p' "$tmp/headers" | tr -d '\r')
ID=${location##*/}
[ -n "$ID" ] || { echo "no restore id in the answer: $(cat "$tmp/started")" >&2; exit 1; }

state=running
while [ "$state" = running ]; do
  sleep 1
  curl -fsS -H "Authorization: Bearer $TOKEN" "$RUNNER/api/v1/restores/$ID" >"$tmp/op"
  state=$(grep -o '"state":"[a-z]*"' "$tmp/op" | head -1 | cut -d'"' -f4)
done
cat "$tmp/op"
echo "== restore $ID $state"
[ "$state" = succeeded ]
