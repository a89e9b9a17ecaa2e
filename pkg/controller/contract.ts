// What the controller, the runner image and the deploy manifests must agree on.
// The deploy renderers (RBAC, Deployment) and the controller's own renderers
// read these constants, so there is one place to change each fact.

/** The field manager of every server-side apply the controller makes. */
export const FIELD_MANAGER = "chbackup-controller";

/** Finalizer on each BackupDefinition: its runner objects are removed before it goes. */
export const FINALIZER = "chbackup.dev/runner-cleanup";

/** Labels on every object the controller generates. */
export const LABELS = {
  managedBy: "app.kubernetes.io/managed-by",
  name: "app.kubernetes.io/name",
  component: "app.kubernetes.io/component",
  instance: "app.kubernetes.io/instance",
  /** Namespace of the source BackupDefinition. */
  sourceNamespace: "chbackup.dev/definition-namespace",
  /** Name of the source BackupDefinition. */
  sourceName: "chbackup.dev/definition-name",
} as const;
export const MANAGED_BY = "chbackup-controller";
export const RUNNER_COMPONENT = "backup-runner";

/** Annotations the controller sets. */
export const ANNOTATIONS = {
  /** SHA-256 of the runner config: on the pod template, so a changed config rolls the pod. */
  configHash: "chbackup.dev/config-hash",
  /** The source definition as "namespace/name" (label values cannot hold every name). */
  source: "chbackup.dev/definition",
  /** SHA-256 of the complete desired object as last applied: a different one means "apply it again". */
  desiredHash: "chbackup.dev/desired-hash",
} as const;

/** How the runner runs inside its container (the image's ENTRYPOINT runs the runner). */
export const RUNNER_CONTAINER = {
  name: "runner",
  /** Arguments after the image's entrypoint (`backup-runner`). */
  args: ["serve", "--config", "/etc/backup-runner/config.json"],
  configDir: "/etc/backup-runner",
  configKey: "config.json",
  /** The API token is also stored under this key of the config Secret, for clients. */
  tokenKey: "token",
  scratchDir: "/var/lib/backup-runner",
  /** The runner's operation journal (definition.stateDir): on the scratch volume, so it survives a restart of the pod. */
  stateDir: "/var/lib/backup-runner/state",
  /**
   * Encrypted backups: where the optional Secret `<runner name>-identity` (controller namespace) is mounted,
   * definition.encryption.identityDir. The controller never reads that Secret; a platform engineer creates it to
   * restore (a restore request's identityFile names one of its keys) and deletes it afterwards.
   */
  identityDir: "/etc/backup-runner-identity",
  identitySecretSuffix: "-identity",
  port: 8080,
  portName: "http",
  /** UID/GID of the non-root user in the runner image. */
  uid: 10001,
  terminationGracePeriodSeconds: 60,
  /** RUNNER_SHUTDOWN_GRACE_MS given to the runner: below the termination grace period. */
  shutdownGraceMs: 45_000,
} as const;

/** The controller's own process (Deployment). */
export const CONTROLLER_CONTAINER = {
  name: "controller",
  /** Port of /healthz, /readyz and /metrics. */
  probePort: 8081,
  uid: 10001,
} as const;

/** Environment variables cmd/backup-controller reads (each also has a flag, see --help). */
export const CONTROLLER_ENV = {
  namespace: "CONTROLLER_NAMESPACE",
  podName: "POD_NAME",
  runnerImage: "RUNNER_IMAGE",
  runnerImagePullPolicy: "RUNNER_IMAGE_PULL_POLICY",
  imagePullSecrets: "IMAGE_PULL_SECRETS",
  resyncSeconds: "RESYNC_SECONDS",
  leaderElection: "LEADER_ELECTION",
  leaseName: "LEASE_NAME",
  probePort: "PROBE_PORT",
  workers: "WORKERS",
  runnerDefaults: "RUNNER_DEFAULTS",
  cacheSyncTimeoutSeconds: "CACHE_SYNC_TIMEOUT_SECONDS",
  runnerStatusSeconds: "RUNNER_STATUS_SECONDS",
  runnerUrlTemplate: "RUNNER_URL_TEMPLATE",
  backupHealthTolerance: "BACKUP_HEALTH_TOLERANCE",
  logLevel: "LOG_LEVEL",
} as const;

export interface PolicyRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}

/**
 * Every API call the controller makes, as RBAC rules. The deploy manifests
 * render their ClusterRole and Role from these, and a test runs the
 * controller under exactly these grants and checks each one is used
 * (test/rbac.test.ts). It reads through informers (list + watch); get only
 * for its Lease and for Secrets that become referenced after they were cached.
 */
export const CONTROLLER_PERMISSIONS: { cluster: PolicyRule[]; namespaced: PolicyRule[] } = {
  // Across all namespaces: definitions live in app namespaces, so do their password Secrets and their Events.
  cluster: [
    { apiGroups: ["chbackup.dev"], resources: ["backupdefinitions"], verbs: ["list", "watch", "patch"] },
    { apiGroups: ["chbackup.dev"], resources: ["backupdefinitions/status"], verbs: ["patch"] },
    // Restore objects: read, and their status written; nothing else (no finalizer, no spec change).
    { apiGroups: ["chbackup.dev"], resources: ["restores"], verbs: ["list", "watch"] },
    { apiGroups: ["chbackup.dev"], resources: ["restores/status"], verbs: ["patch"] },
    // get: a Secret cached without its data (nothing referred to it) is read once something does.
    { apiGroups: [""], resources: ["secrets"], verbs: ["get", "list", "watch"] },
    { apiGroups: [""], resources: ["events"], verbs: ["create"] },
    // Every namespace's StorageLocations: one outside the controller's namespace gets a Warning Event.
    { apiGroups: ["chbackup.dev"], resources: ["storagelocations"], verbs: ["list", "watch"] },
    // Namespace labels decide a location's allowedNamespaces.selector.
    { apiGroups: [""], resources: ["namespaces"], verbs: ["list", "watch"] },
  ],
  // In the controller's namespace only: storage locations, the runner objects, the leader lease.
  namespaced: [
    { apiGroups: ["chbackup.dev"], resources: ["storagelocations/status"], verbs: ["patch"] },
    // create: a server-side apply that creates its object needs it besides patch.
    { apiGroups: [""], resources: ["secrets", "services"], verbs: ["list", "watch", "create", "patch", "delete"] },
    { apiGroups: ["apps"], resources: ["statefulsets"], verbs: ["list", "watch", "create", "patch", "delete"] },
    { apiGroups: ["coordination.k8s.io"], resources: ["leases"], verbs: ["get", "create", "update"] },
  ],
};
