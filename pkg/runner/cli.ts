// Command-line parsing for backup-runner (pure: argv in, command out).
import { parseArgs } from "node:util";
import type { ExistingTablePolicy } from "../backupengine/types.ts";

export type Command =
  | { cmd: "serve"; config: string | undefined }
  | { cmd: "backup"; config: string | undefined; target: string | undefined }
  | {
      cmd: "restore";
      config: string | undefined;
      from: string | undefined;
      backup: string | undefined;
      databases: string[];
      tables: string[];
      rename: Record<string, string>;
      existing: ExistingTablePolicy;
      allowUnstagedDrop: boolean;
      /** A cluster backup restored into the one server of the config. */
      mergeShards?: boolean | undefined;
      identity?: string | undefined;
    }
  | { cmd: "verify"; config: string | undefined; from: string | undefined; backup: string | undefined; identity?: string | undefined }
  | { cmd: "list"; config: string | undefined }
  | { cmd: "help" };

export const USAGE = `Usage:
  backup-runner [serve] [--config FILE]
      Run the runner: scheduled backups with retention (or the single backup
      of single mode), restores and status over the HTTP API.
  backup-runner backup --once [--config FILE] [--target PATH]
      One-off export: one backup to exactly PATH (default: the definition's
      singleBackup.target), no catalog, no labels, no retention.
  backup-runner restore [--config FILE] (--from PATH | --backup ID|latest)
                        [--database DB]... [--table DB.TABLE]...
                        [--rename FROM=TO]... [--existing fail|drop|append]
                        [--allow-unstaged-drop] [--merge-shards] [--identity FILE]
      Restore a one-off export (--from) or a catalog backup (--backup).
      An encrypted backup needs --identity: an age identity file
      (AGE-SECRET-KEY-1… lines, as age-keygen writes) of one of its
      recipients; without one the restore is refused before anything changes.
      Each table is restored into a staging table and swapped in once its
      data is proven; --allow-unstaged-drop lets --existing drop replace the
      objects that cannot be staged (for example replicated tables) by
      dropping them first. A backup of a cluster is restored onto the cluster
      of the config (the same number of shards); --merge-shards restores
      every shard into the one server of the config instead (replicated
      tables become plain MergeTree tables).
  backup-runner verify [--config FILE] (--from PATH | --backup ID|latest) [--identity FILE]
      Prove a backup whole from storage alone (no database needed): read
      every object, check its SHA-256, decompress it and count its rows
      against the manifest. Prints a table per table; exits 0 when the
      backup is whole, 1 naming every table that is not. An encrypted
      backup without --identity is checked for integrity only (sizes and
      SHA-256 of the stored bytes); with it, its content too.
  backup-runner list [--config FILE]
      Print the catalog as JSON lines.

Ctrl-C (SIGINT) cancels a running backup, restore or verify, SIGTERM aborts
it; either way it stops cleanly (a backup's objects are removed, a restore
rolls back) and the command exits 1.

The config file defaults to $RUNNER_CONFIG, then /etc/backup-runner/config.json.`;

export class UsageError extends Error {
  constructor(message: string) {
    super(`${message}\n\n${USAGE}`);
    this.name = "UsageError";
  }
}

export function parseCommand(argv: readonly string[]): Command {
  const [first, ...rest] = argv;
  const sub = first && !first.startsWith("-") ? first : "serve";
  const args = first && !first.startsWith("-") ? rest : [...argv];
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: false,
      strict: true,
      options: {
        config: { type: "string" },
        once: { type: "boolean" },
        target: { type: "string" },
        from: { type: "string" },
        backup: { type: "string" },
        database: { type: "string", multiple: true },
        table: { type: "string", multiple: true },
        rename: { type: "string", multiple: true },
        existing: { type: "string" },
        "allow-unstaged-drop": { type: "boolean" },
        "merge-shards": { type: "boolean" },
        identity: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (err: unknown) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  const v = parsed.values;
  if (v.help || sub === "help") return { cmd: "help" };
  const config = v.config;
  switch (sub) {
    case "serve":
      return { cmd: "serve", config };
    case "list":
      return { cmd: "list", config };
    case "backup":
      if (!v.once) throw new UsageError("backup needs --once (scheduled backups run under `serve`)");
      if (v.identity !== undefined) throw new UsageError("backup takes no --identity: backups are encrypted to the recipients of the config (public keys)");
      return { cmd: "backup", config, target: v.target };
    case "restore": {
      if (!!v.from === !!v.backup) throw new UsageError("restore needs exactly one of --from PATH or --backup ID|latest");
      const existing = v.existing ?? "fail";
      if (existing !== "fail" && existing !== "drop" && existing !== "append") throw new UsageError(`--existing must be fail, drop or append, not "${existing}"`);
      const rename: Record<string, string> = {};
      for (const r of v.rename ?? []) {
        const m = /^([^=]+)=([^=]+)$/.exec(r);
        if (!m) throw new UsageError(`--rename wants FROM=TO, got "${r}"`);
        rename[m[1]!] = m[2]!;
      }
      return {
        cmd: "restore",
        config,
        from: v.from,
        backup: v.backup,
        databases: v.database ?? [],
        tables: v.table ?? [],
        rename,
        existing,
        allowUnstagedDrop: v["allow-unstaged-drop"] ?? false,
        ...(v["merge-shards"] ? { mergeShards: true } : {}),
        ...(v.identity !== undefined ? { identity: v.identity } : {}),
      };
    }
    case "verify": {
      if (!!v.from === !!v.backup) throw new UsageError("verify needs exactly one of --from PATH or --backup ID|latest");
      const restoreOnly = (["database", "table", "rename", "existing", "allow-unstaged-drop", "merge-shards", "once", "target"] as const).filter((k) => v[k] !== undefined);
      if (restoreOnly.length) throw new UsageError(`verify takes no ${restoreOnly.map((k) => `--${k}`).join(", ")}`);
      return { cmd: "verify", config, from: v.from, backup: v.backup, ...(v.identity !== undefined ? { identity: v.identity } : {}) };
    }
    default:
      throw new UsageError(`unknown command "${sub}"`);
  }
}

/**
 * RUNNER_LISTEN ("host:port", "[v6]:port" or ":port"): where `serve` listens instead of
 * api.host/api.port, for running a runner outside its pod (tests, a workstation).
 */
export function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new UsageError(`RUNNER_LISTEN must be host:port, e.g. 127.0.0.1:8080 (got ${JSON.stringify(value)})`);
  return { host: m[1] ?? (m[2] || "0.0.0.0"), port };
}
