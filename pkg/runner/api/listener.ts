// The request listener: logs every request when its response closes, hands
// it to the dispatcher, and answers any error as a JSON error body (errors of
// the runner are mapped to their status; anything else is logged and
// answered 500 without details).
import type { IncomingMessage, ServerResponse } from "node:http";
import { performance } from "node:perf_hooks";
import type { Logger } from "winston";
import { BackupNotFoundError, BackupUnreadableError, BusyError, NotReadyError, OperationFinishedError, OperationNotFoundError, ShuttingDownError, describeError } from "../errors.ts";
import { ApiError, sendError } from "./http.ts";
import { NOT_FOUND_OPERATION } from "./requests.ts";
import type { Dispatch } from "./router.ts";
import type { Redact } from "./types.ts";

/** Paths polled by kubelet and Prometheus: logged at debug level when they succeed. */
const QUIET_PATHS = new Set(["/healthz", "/readyz", "/metrics"]);

/** The API answer for an error of the runner; undefined for an unexpected one. */
export function toApiError(err: unknown, redact: Redact): ApiError | undefined {
  if (err instanceof ApiError) return err;
  if (err instanceof BusyError) return new ApiError(409, "busy", err.message);
  if (err instanceof ShuttingDownError) return new ApiError(503, "shutting_down", err.message);
  if (err instanceof BackupNotFoundError) return new ApiError(404, "backup_not_found", err.message);
  if (err instanceof BackupUnreadableError) return new ApiError(409, "backup_unreadable", redact(err.message));
  if (err instanceof OperationNotFoundError) return new ApiError(404, "operation_not_found", NOT_FOUND_OPERATION);
  if (err instanceof OperationFinishedError) return new ApiError(409, "operation_finished", err.message);
  if (err instanceof NotReadyError) return new ApiError(503, "not_ready", redact(err.message), { headers: { "Retry-After": "5" } });
  return undefined;
}

export function requestListener(dispatch: Dispatch, deps: { logger: Logger; redact: Redact }): (req: IncomingMessage, res: ServerResponse) => void {
  const { logger, redact } = deps;
  return (req, res) => {
    const started = performance.now();
    const rawTarget = req.url ?? "/";
    const q = rawTarget.indexOf("?");
    const path = q >= 0 ? rawTarget.slice(0, q) : rawTarget;
    const logPath = path.length > 256 ? `${path.slice(0, 256)}…` : path;
    res.once("close", () => {
      const line = { method: req.method, path: logPath, status: res.statusCode, durationMs: Math.round((performance.now() - started) * 10) / 10 };
      if (QUIET_PATHS.has(path) && res.statusCode < 400) logger.debug("request", line);
      else logger.info("request", line);
    });
    dispatch(req, res, path).catch((err: unknown) => {
      let apiErr = toApiError(err, redact);
      if (!apiErr) {
        logger.error("request failed", { method: req.method, path: logPath, error: redact(describeError(err)) });
        apiErr = new ApiError(500, "internal", "internal error; see the runner log");
      }
      if (res.headersSent) {
        res.destroy();
        return;
      }
      sendError(res, apiErr);
    });
  };
}
