// The backup catalog: list and show backups (unreadable ones included),
// start an on-demand backup, pin and unpin, and start a verify.
import type { RetentionDecision } from "../../retention.ts";
import type { Gate } from "../gate.ts";
import { ApiError, readOptionalJsonBody, sendJson } from "../http.ts";
import { backupIdParam, invalidRequest, requestIdentities, requireNoBody, sendOperationAccepted } from "../requests.ts";
import type { Ctx, Route } from "../router.ts";
import type { ApiRunner, Redact } from "../types.ts";
import { backupSummary, unreadableSummary, verifyBody } from "../views.ts";

export interface BackupDeps {
  runner: Pick<ApiRunner, "config" | "owner" | "catalog" | "retentionDecision" | "startBackup" | "startVerify">;
  gate: Pick<Gate, "requireReady" | "requireCatalog">;
  redact: Redact;
  maxBodyBytes: number;
}

const labelsOf = (decision: RetentionDecision, id: string) => decision.labels.get(id) ?? [];

function listBackups({ runner, gate, redact }: BackupDeps, { res }: Ctx): void {
  gate.requireCatalog();
  const decision = runner.retentionDecision();
  // Newest first by start time: ids only order to the second (two backups in one second sort by their random suffix).
  const items = [
    ...runner.catalog.list().map((e) => ({ at: Date.parse(e.manifest.startedAt), view: backupSummary(e, labelsOf(decision, e.manifest.id), runner.owner) })),
    ...runner.catalog.unreadable().map((u) => ({ at: u.time.getTime(), view: unreadableSummary(u, redact) })),
  ].sort((a, b) => b.at - a.at || b.view.id.localeCompare(a.view.id));
  sendJson(res, 200, { backups: items.map((i) => i.view) });
}

async function startBackup({ runner, gate, redact, maxBodyBytes }: BackupDeps, { req, res }: Ctx): Promise<void> {
  gate.requireReady();
  await requireNoBody(req, maxBodyBytes);
  if (runner.config.definition.mode === "single") {
    throw new ApiError(409, "single_mode", "this runner is in single-backup mode: it takes its one backup and no others (scheduled mode only)");
  }
  const { operation } = runner.startBackup("api");
  sendOperationAccepted(res, operation, `/api/v1/operations/${operation.id}`, redact);
}

function showBackup({ runner, gate, redact }: BackupDeps, { res, params }: Ctx): void {
  const id = backupIdParam(params);
  gate.requireCatalog();
  const u = runner.catalog.getUnreadable(id);
  if (u) return sendJson(res, 200, { backup: unreadableSummary(u, redact), manifest: null });
  const e = runner.catalog.get(id);
  if (!e) throw new ApiError(404, "backup_not_found", `backup ${id} not found`);
  sendJson(res, 200, { backup: backupSummary(e, labelsOf(runner.retentionDecision(), id), runner.owner), manifest: e.manifest });
}

async function pin({ runner, gate }: BackupDeps, { res, params }: Ctx, pinned: boolean): Promise<void> {
  const id = backupIdParam(params);
  gate.requireCatalog();
  // setPinned waits for a running retention pass and then answers 404 if that pass deleted the backup.
  const e = await runner.catalog.setPinned(id, pinned);
  sendJson(res, 200, { backup: backupSummary(e, labelsOf(runner.retentionDecision(), id), runner.owner) });
}

async function startVerify({ runner, gate, redact, maxBodyBytes }: BackupDeps, { req, res, params }: Ctx): Promise<void> {
  const ref = params["id"] ?? "";
  if (ref !== "latest") backupIdParam(params);
  gate.requireCatalog();
  const body = verifyBody.safeParse((await readOptionalJsonBody(req, maxBodyBytes)) ?? {});
  if (!body.success) throw invalidRequest(body.error);
  const identities = await requestIdentities(runner.config, body.data.identityFile);
  const { operation } = runner.startVerify(ref, "api", identities);
  sendOperationAccepted(res, operation, `/api/v1/operations/${operation.id}`, redact);
}

export function backupRoutes(deps: BackupDeps): Route[] {
  return [
    { pattern: ["api", "v1", "backups"], methods: { GET: (ctx) => listBackups(deps, ctx), POST: (ctx) => startBackup(deps, ctx) } },
    { pattern: ["api", "v1", "backups", ":id"], methods: { GET: (ctx) => showBackup(deps, ctx) } },
    { pattern: ["api", "v1", "backups", ":id", "pin"], methods: { POST: (ctx) => pin(deps, ctx, true), DELETE: (ctx) => pin(deps, ctx, false) } },
    { pattern: ["api", "v1", "backups", ":id", "verify"], methods: { POST: (ctx) => startVerify(deps, ctx) } },
  ];
}
