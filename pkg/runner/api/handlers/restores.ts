// Restores: POST /api/v1/restores starts one (202), GET /api/v1/restores/{id}
// follows it. A POST with an Idempotency-Key header that a remembered restore
// already carries starts nothing and answers 200 with that restore (the
// controller sends a Restore object's uid, so a resend never restores twice).
import type { RestoreRequest } from "../../runner.ts";
import type { Gate } from "../gate.ts";
import { ApiError, readJsonBody, sendJson } from "../http.ts";
import { NOT_FOUND_OPERATION, invalidRequest, requestIdentities, sendOperationAccepted } from "../requests.ts";
import type { Ctx, Route } from "../router.ts";
import type { ApiRunner, Redact } from "../types.ts";
import { operationView, restoreBody, type RestoreBody } from "../views.ts";

export interface RestoreDeps {
  runner: Pick<ApiRunner, "startRestore" | "operation" | "config">;
  gate: Pick<Gate, "requireReady">;
  redact: Redact;
  maxBodyBytes: number;
}

function toRestoreRequest(b: RestoreBody): RestoreRequest {
  return {
    backup: b.backup,
    existingTables: b.existingTables,
    ...(b.allowUnstagedDrop ? { allowUnstagedDrop: true } : {}),
    ...(b.mergeShards ? { mergeShards: true } : {}),
    ...(b.databases ? { databases: b.databases } : {}),
    ...(b.tables ? { tables: b.tables } : {}),
    // a prototype-less copy: database names like "constructor" must not resolve to Object's members
    ...(b.renameDatabases ? { renameDatabases: Object.assign(Object.create(null) as Record<string, string>, b.renameDatabases) } : {}),
  };
}

const IDEMPOTENCY_KEY = /^[A-Za-z0-9._:-]{1,128}$/;

/** The Idempotency-Key header: absent, or 1 to 128 characters of A-Z a-z 0-9 . _ : - (400 otherwise). */
export function idempotencyKeyOf(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined;
  if (typeof header !== "string" || !IDEMPOTENCY_KEY.test(header)) {
    throw new ApiError(400, "invalid_idempotency_key", "Idempotency-Key must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_', ':' and '-', given once", { field: "Idempotency-Key" });
  }
  return header;
}

async function startRestore({ runner, gate, redact, maxBodyBytes }: RestoreDeps, { req, res }: Ctx): Promise<void> {
  const key = idempotencyKeyOf(req.headers["idempotency-key"]);
  gate.requireReady();
  const body = await readJsonBody(req, maxBodyBytes);
  const parsed = restoreBody.safeParse(body);
  if (!parsed.success) throw invalidRequest(parsed.error);
  const identities = await requestIdentities(runner.config, parsed.data.identityFile);
  const { operation, replayed } = runner.startRestore({ ...toRestoreRequest(parsed.data), ...(identities ? { identities } : {}) }, "api", key);
  if (replayed) sendJson(res, 200, { operation: operationView(operation, redact) }, { Location: `/api/v1/restores/${operation.id}` });
  else sendOperationAccepted(res, operation, `/api/v1/restores/${operation.id}`, redact);
}

function showRestore({ runner, redact }: RestoreDeps, { res, params }: Ctx): void {
  const op = runner.operation(params["id"] ?? "");
  if (!op || op.kind !== "restore") throw new ApiError(404, "restore_not_found", NOT_FOUND_OPERATION.replace("operation", "restore"));
  sendJson(res, 200, { operation: operationView(op, redact) });
}

export function restoreRoutes(deps: RestoreDeps): Route[] {
  return [
    { pattern: ["api", "v1", "restores"], methods: { POST: (ctx) => startRestore(deps, ctx) } },
    { pattern: ["api", "v1", "restores", ":id"], methods: { GET: (ctx) => showRestore(deps, ctx) } },
  ];
}
