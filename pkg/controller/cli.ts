// Command line and environment of backup-controller → settings input. The
// environment is passed in (cmd/ reads process.env); flags win over env vars.
import { parseArgs } from "node:util";
import { CONTROLLER_ENV } from "./contract.ts";
import { parseControllerSettings, SettingsError, type ControllerSettings } from "./settings.ts";

export const CONTROLLER_USAGE = `backup-controller: turns StorageLocations and BackupDefinitions into runner StatefulSets, Secrets and Services.

Usage: backup-controller [flags]

Flags (each also read from the environment variable in brackets):
  --namespace NS            the controller's namespace [${CONTROLLER_ENV.namespace}] (required)
  --runner-image IMAGE      default runner image [${CONTROLLER_ENV.runnerImage}] (required)
  --runner-image-pull-policy Always|IfNotPresent|Never [${CONTROLLER_ENV.runnerImagePullPolicy}]
  --image-pull-secrets A,B  imagePullSecrets of the runner pods [${CONTROLLER_ENV.imagePullSecrets}]
  --resync-seconds N        full resync and orphan sweep period, default 300 [${CONTROLLER_ENV.resyncSeconds}]
  --workers N               reconciles at once, default 4 [${CONTROLLER_ENV.workers}]
  --leader-election BOOL    campaign for the Lease before reconciling, default true [${CONTROLLER_ENV.leaderElection}]
  --lease-name NAME         default chbackup-controller [${CONTROLLER_ENV.leaseName}]
  --identity ID             this replica's name in the Lease, default the pod name [${CONTROLLER_ENV.podName}]
  --probe-port N            /healthz, /readyz and /metrics, default 8081 [${CONTROLLER_ENV.probePort}]
  --cache-sync-timeout-seconds N
                            a leader whose caches are not synced after N seconds fails /healthz, default 300 [${CONTROLLER_ENV.cacheSyncTimeoutSeconds}]
  --runner-status-seconds N how often each runner's API is read into its definition's status, default 60, 0 never [${CONTROLLER_ENV.runnerStatusSeconds}]
  --backup-health-tolerance X
                            BackupHealthy turns False when the newest backup is older than X times the
                            schedule's longest gap (a definition's spec.staleAfter wins), default 2 [${CONTROLLER_ENV.backupHealthTolerance}]
  --runner-url-template URL where runners answer, default http://{service}.{namespace}.svc:8080 [${CONTROLLER_ENV.runnerUrlTemplate}]
  --runner-defaults JSON    {"resources":{...},"storageSize":"1Gi","storageClassName":"..."} [${CONTROLLER_ENV.runnerDefaults}]
  --kubeconfig PATH         default: in-cluster, else $KUBECONFIG or ~/.kube/config
  --help
Also: ${CONTROLLER_ENV.logLevel} (error, warn, info, debug).`;

export interface ControllerCommand {
  help: boolean;
  kubeconfig?: string;
  settings?: ControllerSettings;
}

const int = (v: string | undefined, field: string, problems: string[]): number | undefined => {
  if (v === undefined || v === "") return undefined;
  if (!/^\d+$/.test(v)) {
    problems.push(`${field}: must be a whole number`);
    return undefined;
  }
  return Number(v);
};

const num = (v: string | undefined, field: string, problems: string[]): number | undefined => {
  if (v === undefined || v === "") return undefined;
  if (!/^\d+(\.\d+)?$/.test(v)) {
    problems.push(`${field}: must be a number`);
    return undefined;
  }
  return Number(v);
};

/** Throws SettingsError listing every problem. */
export function parseControllerCommand(argv: string[], env: Record<string, string | undefined>, hostname: string): ControllerCommand {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        namespace: { type: "string" },
        "runner-image": { type: "string" },
        "runner-image-pull-policy": { type: "string" },
        "image-pull-secrets": { type: "string" },
        "resync-seconds": { type: "string" },
        workers: { type: "string" },
        "leader-election": { type: "string" },
        "lease-name": { type: "string" },
        identity: { type: "string" },
        "probe-port": { type: "string" },
        "cache-sync-timeout-seconds": { type: "string" },
        "runner-defaults": { type: "string" },
        "runner-status-seconds": { type: "string" },
        "runner-url-template": { type: "string" },
        "backup-health-tolerance": { type: "string" },
        kubeconfig: { type: "string" },
        help: { type: "boolean" },
      },
    }));
  } catch (err: unknown) {
    throw new SettingsError([err instanceof Error ? err.message : String(err)]);
  }
  if (values["help"]) return { help: true };
  const pick = (flag: string, envName: string): string | undefined => {
    const v = values[flag];
    return typeof v === "string" ? v : env[envName] || undefined;
  };
  const problems: string[] = [];
  let runnerDefaults: unknown;
  const rd = pick("runner-defaults", CONTROLLER_ENV.runnerDefaults);
  if (rd) {
    try {
      runnerDefaults = JSON.parse(rd);
    } catch {
      problems.push("runnerDefaults: not valid JSON");
    }
  }
  const le = pick("leader-election", CONTROLLER_ENV.leaderElection);
  if (le !== undefined && !/^(true|false)$/.test(le)) problems.push("leaderElection.enabled: must be true or false");
  const input = {
    namespace: pick("namespace", CONTROLLER_ENV.namespace),
    runnerImage: pick("runner-image", CONTROLLER_ENV.runnerImage),
    runnerImagePullPolicy: pick("runner-image-pull-policy", CONTROLLER_ENV.runnerImagePullPolicy),
    imagePullSecrets: (pick("image-pull-secrets", CONTROLLER_ENV.imagePullSecrets) ?? "").split(",").map((s) => s.trim()).filter(Boolean),
    resyncSeconds: int(pick("resync-seconds", CONTROLLER_ENV.resyncSeconds), "resyncSeconds", problems),
    workers: int(pick("workers", CONTROLLER_ENV.workers), "workers", problems),
    leaderElection: {
      enabled: le === undefined ? undefined : le === "true",
      leaseName: pick("lease-name", CONTROLLER_ENV.leaseName),
      identity: pick("identity", CONTROLLER_ENV.podName) ?? hostname,
    },
    probePort: int(pick("probe-port", CONTROLLER_ENV.probePort), "probePort", problems),
    cacheSyncTimeoutSeconds: int(pick("cache-sync-timeout-seconds", CONTROLLER_ENV.cacheSyncTimeoutSeconds), "cacheSyncTimeoutSeconds", problems),
    runnerStatusSeconds: int(pick("runner-status-seconds", CONTROLLER_ENV.runnerStatusSeconds), "runnerStatusSeconds", problems),
    runnerUrlTemplate: pick("runner-url-template", CONTROLLER_ENV.runnerUrlTemplate),
    backupHealthTolerance: num(pick("backup-health-tolerance", CONTROLLER_ENV.backupHealthTolerance), "backupHealthTolerance", problems),
    runnerDefaults,
  };
  let settings: ControllerSettings | undefined;
  try {
    settings = parseControllerSettings(JSON.parse(JSON.stringify(input)));
  } catch (err: unknown) {
    if (err instanceof SettingsError) problems.push(...err.problems);
    else throw err;
  }
  if (problems.length || !settings) throw new SettingsError(problems);
  const kubeconfig = values["kubeconfig"];
  return { help: false, settings, ...(typeof kubeconfig === "string" ? { kubeconfig } : {}) };
}
