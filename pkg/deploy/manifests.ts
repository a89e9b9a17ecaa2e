// The controller's install manifests (Namespace, ServiceAccount, RBAC,
// Deployment), written once against a `ValueSource`. Two sources read it:
// `concreteSource` fills in a values object (the kustomize base, tests), and
// the Helm source in helm.ts puts `{{ .Values.x }}` expressions in the same
// places (the chart's templates). So the chart and the base cannot drift.
import { CONTROLLER_CONTAINER, CONTROLLER_ENV, CONTROLLER_PERMISSIONS, type PolicyRule } from "../controller/contract.ts";
import { monitoringFiles } from "./monitoring.ts";
import { canonicalJson, CONTROLLER_NAME, runnerDefaults, type ChartValues } from "./values.ts";

export type Obj = Record<string, unknown>;

/** Where a value of the rendered manifests comes from. Paths are dotted paths into ChartValues. */
export interface ValueSource {
  /** The namespace the controller lives in. */
  namespace(): unknown;
  /** The namespace a value names; when it is empty, the controller's. */
  namespaceOr(path: string): unknown;
  /** A scalar value as it is (string, number or boolean). */
  value(path: string): unknown;
  /** A scalar value as a string (environment variables). */
  text(path: string): unknown;
  /** "repository:tag" of an image ("image" or "runner.image"). */
  imageRef(path: string): unknown;
  /** A list of strings joined with ",". */
  joined(path: string): unknown;
  /** The RUNNER_DEFAULTS JSON. */
  runnerDefaultsJson(): unknown;
  /** An optional map or list: left out when empty. */
  optional(path: string): unknown;
  /** A list of names as `[{name}]` (imagePullSecrets), left out when empty. */
  nameList(path: string): unknown;
  /** Labels added by the packaging (Helm's chart and release labels); spread into metadata.labels. */
  packagingLabels(): Obj;
  /** The entries of a map value (extra labels or annotations), spread into a map. */
  entries(path: string): Obj;
  /** A scalar value as text inside a longer string (a threshold inside a PromQL expression). */
  inline(path: string): string;
}

export interface RenderedFile {
  /** File name, e.g. "rbac.yaml". */
  name: string;
  /** Dotted path of a boolean value: the file only exists when it is true. */
  when?: string;
  objects: Obj[];
}

/** Labels of the controller's own objects (not the runner objects; those carry contract LABELS). */
export const CONTROLLER_LABELS = {
  "app.kubernetes.io/name": CONTROLLER_NAME,
  "app.kubernetes.io/component": "controller",
  "app.kubernetes.io/part-of": "chbackup",
} as const;
export const CONTROLLER_SELECTOR = { "app.kubernetes.io/name": CONTROLLER_NAME } as const;

const rules = (list: PolicyRule[]) => list.map((r) => ({ apiGroups: [...r.apiGroups], resources: [...r.resources], verbs: [...r.verbs] }));

export function renderControllerFiles(s: ValueSource): RenderedFile[] {
  const meta = (extra: Obj = {}) => ({ name: CONTROLLER_NAME, ...extra, labels: { ...CONTROLLER_LABELS, ...s.packagingLabels() } });
  const ns = s.namespace();
  const subject = { kind: "ServiceAccount", name: CONTROLLER_NAME, namespace: ns };
  const port = CONTROLLER_CONTAINER.probePort;
  const env = (name: string, value: unknown) => ({ name, value });
  const fieldEnv = (name: string, fieldPath: string) => ({ name, valueFrom: { fieldRef: { fieldPath } } });

  return [
    {
      name: "namespace.yaml",
      when: "createNamespace",
      objects: [{ apiVersion: "v1", kind: "Namespace", metadata: { name: ns, labels: { ...CONTROLLER_LABELS, ...s.packagingLabels() } } }],
    },
    {
      name: "serviceaccount.yaml",
      objects: [{ apiVersion: "v1", kind: "ServiceAccount", metadata: meta({ namespace: ns }), automountServiceAccountToken: true }],
    },
    {
      name: "rbac.yaml",
      objects: [
        { apiVersion: "rbac.authorization.k8s.io/v1", kind: "ClusterRole", metadata: meta(), rules: rules(CONTROLLER_PERMISSIONS.cluster) },
        {
          apiVersion: "rbac.authorization.k8s.io/v1",
          kind: "ClusterRoleBinding",
          metadata: meta(),
          roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: CONTROLLER_NAME },
          subjects: [subject],
        },
        { apiVersion: "rbac.authorization.k8s.io/v1", kind: "Role", metadata: meta({ namespace: ns }), rules: rules(CONTROLLER_PERMISSIONS.namespaced) },
        {
          apiVersion: "rbac.authorization.k8s.io/v1",
          kind: "RoleBinding",
          metadata: meta({ namespace: ns }),
          roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: CONTROLLER_NAME },
          subjects: [subject],
        },
      ],
    },
    {
      name: "deployment.yaml",
      objects: [
        {
          apiVersion: "apps/v1",
          kind: "Deployment",
          metadata: meta({ namespace: ns }),
          spec: {
            replicas: s.value("replicas"),
            revisionHistoryLimit: 5,
            selector: { matchLabels: { ...CONTROLLER_SELECTOR } },
            template: {
              metadata: { labels: { ...CONTROLLER_LABELS }, annotations: s.optional("podAnnotations") },
              spec: {
                serviceAccountName: CONTROLLER_NAME,
                automountServiceAccountToken: true,
                imagePullSecrets: s.nameList("imagePullSecrets"),
                securityContext: {
                  runAsNonRoot: true,
                  runAsUser: CONTROLLER_CONTAINER.uid,
                  runAsGroup: CONTROLLER_CONTAINER.uid,
                  seccompProfile: { type: "RuntimeDefault" },
                },
                terminationGracePeriodSeconds: 30,
                containers: [
                  {
                    name: CONTROLLER_CONTAINER.name,
                    image: s.imageRef("image"),
                    imagePullPolicy: s.value("image.pullPolicy"),
                    env: [
                      fieldEnv(CONTROLLER_ENV.namespace, "metadata.namespace"),
                      fieldEnv(CONTROLLER_ENV.podName, "metadata.name"),
                      env(CONTROLLER_ENV.runnerImage, s.imageRef("runner.image")),
                      env(CONTROLLER_ENV.runnerImagePullPolicy, s.text("runner.image.pullPolicy")),
                      env(CONTROLLER_ENV.imagePullSecrets, s.joined("imagePullSecrets")),
                      env(CONTROLLER_ENV.resyncSeconds, s.text("resyncSeconds")),
                      env(CONTROLLER_ENV.leaderElection, s.text("leaderElection.enabled")),
                      env(CONTROLLER_ENV.leaseName, s.text("leaderElection.leaseName")),
                      env(CONTROLLER_ENV.probePort, String(port)),
                      env(CONTROLLER_ENV.workers, s.text("workers")),
                      env(CONTROLLER_ENV.cacheSyncTimeoutSeconds, s.text("cacheSyncTimeoutSeconds")),
                      env(CONTROLLER_ENV.runnerStatusSeconds, s.text("runnerStatusSeconds")),
                      env(CONTROLLER_ENV.backupHealthTolerance, s.text("backupHealthTolerance")),
                      env(CONTROLLER_ENV.runnerUrlTemplate, s.text("runnerUrlTemplate")),
                      env(CONTROLLER_ENV.runnerDefaults, s.runnerDefaultsJson()),
                      env(CONTROLLER_ENV.logLevel, s.text("logLevel")),
                    ],
                    ports: [{ name: "http-metrics", containerPort: port, protocol: "TCP" }],
                    livenessProbe: { httpGet: { path: "/healthz", port }, initialDelaySeconds: 5, periodSeconds: 10, timeoutSeconds: 3, failureThreshold: 3 },
                    readinessProbe: { httpGet: { path: "/readyz", port }, periodSeconds: 5, timeoutSeconds: 3, failureThreshold: 3 },
                    resources: s.optional("resources"),
                    securityContext: {
                      allowPrivilegeEscalation: false,
                      readOnlyRootFilesystem: true,
                      runAsNonRoot: true,
                      capabilities: { drop: ["ALL"] },
                    },
                    volumeMounts: [{ name: "tmp", mountPath: "/tmp" }],
                  },
                ],
                volumes: [{ name: "tmp", emptyDir: { sizeLimit: "64Mi" } }],
                nodeSelector: s.optional("nodeSelector"),
                tolerations: s.optional("tolerations"),
                affinity: s.optional("affinity"),
              },
            },
          },
        },
      ],
    },
    ...monitoringFiles(s, { ...CONTROLLER_LABELS, ...s.packagingLabels() }),
  ];
}

/** The value at a dotted path; throws on a path that does not exist, so a typo cannot render silently. */
export function valueAt(values: unknown, path: string): unknown {
  let cur: unknown = values;
  for (const part of path.split(".")) {
    if (!cur || typeof cur !== "object" || !(part in cur)) throw new Error(`no value ${path}`);
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

const isEmpty = (v: unknown) => v === undefined || v === null || (Array.isArray(v) ? v.length === 0 : typeof v === "object" && Object.keys(v).length === 0);

/** Fills in a values object. An empty `namespace` value means `releaseNamespace`. */
export function concreteSource(values: ChartValues, releaseNamespace: string): ValueSource {
  const at = (p: string) => valueAt(values, p);
  return {
    namespace: () => values.namespace || releaseNamespace,
    namespaceOr: (p) => (at(p) as string) || values.namespace || releaseNamespace,
    value: at,
    text: (p) => String(at(p)),
    imageRef: (p) => `${String(at(`${p}.repository`))}:${String(at(`${p}.tag`))}`,
    joined: (p) => (at(p) as string[]).join(","),
    runnerDefaultsJson: () => canonicalJson(runnerDefaults(values)),
    optional: (p) => (isEmpty(at(p)) ? undefined : structuredClone(at(p))),
    nameList: (p) => (isEmpty(at(p)) ? undefined : (at(p) as string[]).map((name) => ({ name }))),
    packagingLabels: () => ({}),
    entries: (p) => structuredClone(at(p) as Obj),
    inline: (p) => String(at(p)),
  };
}

/** Drops undefined object fields at every level (what YAML output would leave out). */
export function prune<T>(v: T): T {
  if (Array.isArray(v)) return v.map(prune) as T;
  if (v && typeof v === "object") {
    return Object.fromEntries(
      Object.entries(v)
        .filter(([, x]) => x !== undefined)
        .map(([k, x]) => [k, prune(x)]),
    ) as T;
  }
  return v;
}

/** The install objects for concrete values, in apply order (Namespace first), without undefined fields. */
export function renderControllerObjects(values: ChartValues, releaseNamespace: string): Obj[] {
  return renderControllerFiles(concreteSource(values, releaseNamespace))
    .filter((f) => !f.when || valueAt(values, f.when) === true)
    .flatMap((f) => f.objects.map(prune));
}
