// What the API needs from the rest of the runner. The Runner and the
// RunnerService satisfy these interfaces; tests pass fakes. Each handler group
// picks the members it uses (see handlers/), so its dependencies show in its
// signature.
import type { RunnerConfig } from "../../apis/index.ts";
import type { AgeIdentities } from "../../encryption/identity.ts";
import type { CatalogEntry, UnreadableBackup } from "../catalog.ts";
import type { Owner } from "../manifest.ts";
import type { RetentionDecision } from "../retention.ts";
import type { BackupTrigger, Operation, RestoreRequest, RunnerStatus } from "../runner.ts";

/** What the API uses of the Runner (the Runner class satisfies it; tests may pass a fake). */
export interface ApiRunner {
  readonly config: RunnerConfig;
  readonly owner: Owner;
  readonly catalog: {
    list(): CatalogEntry[];
    get(id: string): CatalogEntry | undefined;
    unreadable(): UnreadableBackup[];
    getUnreadable(id: string): UnreadableBackup | undefined;
    setPinned(id: string, pinned: boolean): Promise<CatalogEntry>;
  };
  status(): RunnerStatus;
  health(signal?: AbortSignal): Promise<{ storage: string; engine: string; engineVersion?: string | undefined }>;
  operation(id: string): Operation | undefined;
  operations(): Operation[];
  cancel(id: string, by: string): Operation;
  retentionDecision(): RetentionDecision;
  startBackup(trigger: BackupTrigger): { operation: Operation; finished: Promise<Operation> };
  startRestore(req: RestoreRequest, trigger?: string, idempotencyKey?: string): { operation: Operation; finished: Promise<Operation>; replayed?: true };
  startVerify(ref: string, trigger?: string, identities?: AgeIdentities): { operation: Operation; finished: Promise<Operation> };
}

/** What the API uses of the RunnerService. */
export interface ApiService {
  readonly runner: ApiRunner;
  /** Ready for every operation (catalog loaded, interrupted restores cleaned up). */
  readonly ready: boolean;
  /** The catalog is loaded (listing, pins and verify work); defaults to `ready`. */
  readonly catalogLoaded?: boolean;
  /** Why the runner is not ready yet, for /readyz and 503 answers. */
  startupProblem?(): string | undefined;
  nextRun(): Date | undefined;
}

export interface ApiTimeouts {
  /** Whole request (headers and body) must arrive within this (default 30 s). */
  requestMs?: number;
  /** Headers must arrive within this (default 10 s). */
  headersMs?: number;
  /** Idle keep-alive connections are closed after this (default 5 s). */
  keepAliveMs?: number;
  /** Readiness checks of storage and database give up after this (default 4 s). */
  healthMs?: number;
}

/** Replaces configured secrets in text that leaves the process (see views.ts secretRedactor). */
export type Redact = (text: string) => string;
