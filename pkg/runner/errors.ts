// Errors the runner's callers (CLI, HTTP API) tell apart.
export class BackupNotFoundError extends Error {
  readonly backupId: string;
  constructor(backupId: string) {
    super(`backup ${backupId} not found`);
    this.name = "BackupNotFoundError";
    this.backupId = backupId;
  }
}

/** The backup exists but its manifest could not be read: it is kept, listed as unreadable, and cannot be restored. */
export class BackupUnreadableError extends Error {
  readonly backupId: string;
  readonly reason: string;
  constructor(backupId: string, reason: string) {
    super(`backup ${backupId} cannot be used: its manifest could not be read (${reason}); the backup is kept, fix or remove its manifest.json and restart the runner`);
    this.name = "BackupUnreadableError";
    this.backupId = backupId;
    this.reason = reason;
  }
}

export class BusyError extends Error {
  readonly runningOperationId: string;
  constructor(runningOperationId: string, kind: string) {
    super(`a ${kind} operation (${runningOperationId}) is already running`);
    this.name = "BusyError";
    this.runningOperationId = runningOperationId;
  }
}

export class ShuttingDownError extends Error {
  constructor() {
    super("the runner is shutting down");
    this.name = "ShuttingDownError";
  }
}

/** Message of an error with its causes, for status output and logs. */
export function describeError(err: unknown): string {
  const parts: string[] = [];
  let cur: unknown = err;
  for (let depth = 0; cur !== undefined && cur !== null && depth < 5; depth++) {
    if (cur instanceof Error) {
      if (!parts.some((p) => p.includes(cur instanceof Error ? cur.message : ""))) parts.push(cur.message);
      cur = cur.cause;
    } else {
      parts.push(String(cur));
      break;
    }
  }
  return parts.join(": ");
}
