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

/** The operation was cancelled by a user (DELETE /api/v1/operations/{id}, Ctrl-C on the command line). */
export class CancelledError extends Error {
  readonly by: string;
  constructor(by: string) {
    super(`cancelled by ${by}`);
    this.name = "CancelledError";
    this.by = by;
  }
}

export class OperationNotFoundError extends Error {
  readonly operationId: string;
  constructor(operationId: string) {
    super(`operation ${operationId} not found`);
    this.name = "OperationNotFoundError";
    this.operationId = operationId;
  }
}

/** Cancel of an operation that has already ended. */
export class OperationFinishedError extends Error {
  readonly operationId: string;
  readonly state: string;
  constructor(operationId: string, state: string) {
    super(`operation ${operationId} has already ended (${state})`);
    this.name = "OperationFinishedError";
    this.operationId = operationId;
    this.state = state;
  }
}

/** The runner cannot take this operation yet (catalog not loaded, interrupted restores not cleaned up). */
export class NotReadyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NotReadyError";
  }
}

/** verify found a backup that is not whole; `tables` names every damaged table (and object). */
export class BackupNotWholeError extends Error {
  readonly backupId: string;
  readonly damaged: string[];
  constructor(backupId: string, damaged: string[]) {
    super(`backup ${backupId} is not whole: ${damaged.join("; ")}`);
    this.name = "BackupNotWholeError";
    this.backupId = backupId;
    this.damaged = damaged;
  }
}

// describeError lives in pkg/common (shared with the controller); re-exported for the runner's importers.
export { describeError } from "../common/errors.ts";
