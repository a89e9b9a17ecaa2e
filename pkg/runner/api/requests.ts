// Request pieces shared by the handler groups: the backup id parameter,
// bodies that must be empty, validation errors, and the 202 answer of an
// operation that was started.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { z } from "zod";
import type { RunnerConfig } from "../../apis/index.ts";
import { AgeIdentities, IdentityError } from "../../encryption/identity.ts";
import { isBackupId } from "../ids.ts";
import type { Operation } from "../runner.ts";
import { ApiError, readOptionalJsonBody, sendJson } from "./http.ts";
import type { Redact } from "./types.ts";
import { emptyBody, firstIssue, operationView } from "./views.ts";

export const NOT_FOUND_OPERATION = "no such operation (the runner remembers the newest 100, across restarts when it has a state directory)";

/** 400 naming the first invalid field of a request body. */
export function invalidRequest(error: z.ZodError): ApiError {
  const { field, message } = firstIssue(error);
  return new ApiError(400, "invalid_request", `${field}: ${message}`, { field });
}

/** No body, an empty one, or `{}` (POST /api/v1/backups, .../verify). */
export async function requireNoBody(req: IncomingMessage, maxBodyBytes: number): Promise<void> {
  const body = await readOptionalJsonBody(req, maxBodyBytes);
  if (body === undefined) return;
  const parsed = emptyBody.safeParse(body);
  if (!parsed.success) throw invalidRequest(parsed.error);
}

/** The ":id" path parameter, which must be a backup id. */
export function backupIdParam(params: Record<string, string>): string {
  const id = params["id"] ?? "";
  if (!isBackupId(id)) throw new ApiError(400, "invalid_backup_id", "not a backup id (format 20261124T031000Z-a1b2c3)");
  return id;
}

/** 202 with the operation and where to follow it. */
export function sendOperationAccepted(res: ServerResponse, op: Operation, location: string, redact: Redact): void {
  sendJson(res, 202, { operation: operationView(op, redact) }, { Location: location });
}

/**
 * The identities of a request's identityFile, read from the runner's identity
 * directory (definition.encryption.identityDir). 400 when the runner has no
 * such directory or the file is missing or not an identity file; the answer
 * never holds the file's content.
 */
export async function requestIdentities(config: RunnerConfig, identityFile: string | undefined): Promise<AgeIdentities | undefined> {
  if (identityFile === undefined) return undefined;
  const dir = config.definition.encryption?.identityDir;
  if (!dir) {
    throw new ApiError(400, "no_identity_dir", "this runner reads no identity files: its config has no definition.encryption.identityDir", { field: "identityFile" });
  }
  try {
    return await AgeIdentities.fromDir(dir, identityFile);
  } catch (err: unknown) {
    if (err instanceof IdentityError) throw new ApiError(400, "invalid_identity", err.message, { field: "identityFile" });
    throw err;
  }
}
