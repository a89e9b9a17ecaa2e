// Operations (backups, restores, verifies): list, follow, cancel.
import { ApiError, sendJson } from "../http.ts";
import { NOT_FOUND_OPERATION } from "../requests.ts";
import type { Ctx, Route } from "../router.ts";
import type { ApiRunner, Redact } from "../types.ts";
import { operationView } from "../views.ts";

export interface OperationDeps {
  runner: Pick<ApiRunner, "operations" | "operation" | "cancel">;
  redact: Redact;
}

function listOperations({ runner, redact }: OperationDeps, { res }: Ctx): void {
  sendJson(res, 200, { operations: runner.operations().map((op) => operationView(op, redact)) });
}

function showOperation({ runner, redact }: OperationDeps, { res, params }: Ctx): void {
  const op = runner.operation(params["id"] ?? "");
  if (!op) throw new ApiError(404, "operation_not_found", NOT_FOUND_OPERATION);
  sendJson(res, 200, { operation: operationView(op, redact) });
}

/** The operation stops with the same guarantees as a failure and ends "cancelled". */
function cancelOperation({ runner, redact }: OperationDeps, { res, params }: Ctx): void {
  const op = runner.cancel(params["id"] ?? "", "API request");
  sendJson(res, 202, { operation: operationView(op, redact) });
}

export function operationRoutes(deps: OperationDeps): Route[] {
  return [
    { pattern: ["api", "v1", "operations"], methods: { GET: (ctx) => listOperations(deps, ctx) } },
    { pattern: ["api", "v1", "operations", ":id"], methods: { GET: (ctx) => showOperation(deps, ctx), DELETE: (ctx) => cancelOperation(deps, ctx) } },
  ];
}
