// Desired runner objects of one definition: pure functions (plan in, objects out).
import { createHash } from "node:crypto";
import type { V1Secret, V1Service, V1StatefulSet, V1Container, V1Volume, V1VolumeMount, V1Affinity } from "@kubernetes/client-node";
import type { PlanSuccess } from "./plan.ts";
import type { ControllerSettings } from "./settings.ts";
import { ANNOTATIONS, LABELS, MANAGED_BY, RUNNER_COMPONENT, RUNNER_CONTAINER } from "./contract.ts";
import { labelValue, runnerName } from "./names.ts";
import { withDesiredHash } from "./diff.ts";

export interface RunnerObjects {
  name: string;
  configHash: string;
  secret: V1Secret & { metadata: { name: string; namespace: string } };
  statefulSet: V1StatefulSet & { metadata: { name: string; namespace: string } };
  service: V1Service & { metadata: { name: string; namespace: string } };
}

export function configHash(configJson: string): string {
  return createHash("sha256").update(configJson).digest("hex");
}

/** Labels on every object generated for the definition namespace/name. */
export function runnerLabels(namespace: string, name: string): Record<string, string> {
  return {
    [LABELS.managedBy]: MANAGED_BY,
    [LABELS.name]: "chbackup",
    [LABELS.component]: RUNNER_COMPONENT,
    [LABELS.instance]: runnerName(namespace, name),
    [LABELS.sourceNamespace]: labelValue(namespace),
    [LABELS.sourceName]: labelValue(name),
  };
}

/** The pod selector of the StatefulSet and the Service (immutable on the StatefulSet). */
export function runnerSelector(namespace: string, name: string): Record<string, string> {
  return { [LABELS.component]: RUNNER_COMPONENT, [LABELS.instance]: runnerName(namespace, name) };
}

export function renderRunnerObjects(plan: PlanSuccess, settings: ControllerSettings): RunnerObjects {
  const namespace = plan.config.definition.namespace;
  const defName = plan.config.definition.name;
  const name = runnerName(namespace, defName);
  const ns = settings.namespace;
  const labels = runnerLabels(namespace, defName);
  const annotations = { [ANNOTATIONS.source]: `${namespace}/${defName}` };
  const meta = { name, namespace: ns, labels, annotations };
  const hash = configHash(plan.configJson);
  const runner = plan.spec.runner ?? {};
  const defaults = settings.runnerDefaults;

  const secret: RunnerObjects["secret"] = {
    apiVersion: "v1",
    kind: "Secret",
    metadata: meta,
    type: "Opaque",
    data: {
      [RUNNER_CONTAINER.configKey]: Buffer.from(plan.configJson).toString("base64"),
      [RUNNER_CONTAINER.tokenKey]: Buffer.from(plan.config.api.token).toString("base64"),
    },
  };

  const mounts: V1VolumeMount[] = [
    { name: "config", mountPath: RUNNER_CONTAINER.configDir, readOnly: true },
    { name: "scratch", mountPath: RUNNER_CONTAINER.scratchDir },
    { name: "tmp", mountPath: "/tmp" },
  ];
  const volumes: V1Volume[] = [
    { name: "config", secret: { secretName: name, defaultMode: 0o440 } },
    { name: "tmp", emptyDir: { sizeLimit: "64Mi" } },
  ];
  if (plan.config.definition.encryption) {
    // The identity that opens encrypted backups is not in the runner: a platform engineer creates this Secret to restore.
    volumes.push({ name: "identity", secret: { secretName: `${name}${RUNNER_CONTAINER.identitySecretSuffix}`, optional: true, defaultMode: 0o440 } });
    mounts.push({ name: "identity", mountPath: RUNNER_CONTAINER.identityDir, readOnly: true });
  }
  const fs = plan.location.filesystem;
  // S3 backups never touch the runner's disk: its scratch volume holds only the operation journal (stateDir), so it is an
  // emptyDir (kept across container restarts, not across pod deletion) and the runner gets no volume claim.
  const scratchClaim = !!fs;
  const storageSize = runner.storageSize ?? defaults.storageSize;
  if (!scratchClaim) volumes.push({ name: "scratch", emptyDir: { sizeLimit: storageSize } });
  if (fs) {
    if (fs.claimName) {
      volumes.push({ name: "backups", persistentVolumeClaim: { claimName: fs.claimName } });
      mounts.push({ name: "backups", mountPath: fs.path });
    } else {
      mounts.push({ name: "scratch", mountPath: fs.path, subPath: "backups" });
    }
  }

  const resources = runner.resources ?? defaults.resources;
  const container: V1Container = {
    name: RUNNER_CONTAINER.name,
    image: runner.image ?? settings.runnerImage,
    ...(settings.runnerImagePullPolicy ? { imagePullPolicy: settings.runnerImagePullPolicy } : {}),
    args: [...RUNNER_CONTAINER.args],
    env: [{ name: "RUNNER_SHUTDOWN_GRACE_MS", value: String(RUNNER_CONTAINER.shutdownGraceMs) }],
    ports: [{ name: RUNNER_CONTAINER.portName, containerPort: RUNNER_CONTAINER.port, protocol: "TCP" }],
    readinessProbe: { httpGet: { path: "/readyz", port: RUNNER_CONTAINER.portName }, periodSeconds: 10, timeoutSeconds: 5, failureThreshold: 3 },
    livenessProbe: { httpGet: { path: "/healthz", port: RUNNER_CONTAINER.portName }, periodSeconds: 20, timeoutSeconds: 5, failureThreshold: 3 },
    ...(resources && (resources.requests || resources.limits) ? { resources: { ...(resources.requests ? { requests: resources.requests } : {}), ...(resources.limits ? { limits: resources.limits } : {}) } } : {}),
    securityContext: {
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ["ALL"] },
    },
    volumeMounts: mounts,
  };

  let affinity: V1Affinity | undefined;
  if (runner.databaseAffinity) {
    affinity = {
      podAffinity: {
        preferredDuringSchedulingIgnoredDuringExecution: [
          {
            weight: runner.databaseAffinity.weight,
            podAffinityTerm: {
              labelSelector: { matchLabels: runner.databaseAffinity.podLabels },
              namespaces: [namespace],
              topologyKey: runner.databaseAffinity.topologyKey,
            },
          },
        ],
      },
    };
  }

  const storageClassName = runner.storageClassName ?? defaults.storageClassName;
  const statefulSet: RunnerObjects["statefulSet"] = {
    apiVersion: "apps/v1",
    kind: "StatefulSet",
    metadata: meta,
    spec: {
      replicas: 1,
      serviceName: name,
      // The scratch claim goes with the StatefulSet, unless it holds filesystem backups (never deleted with a definition).
      ...(scratchClaim ? { persistentVolumeClaimRetentionPolicy: { whenDeleted: fs && !fs.claimName ? "Retain" : "Delete", whenScaled: "Retain" } } : {}),
      selector: { matchLabels: runnerSelector(namespace, defName) },
      template: {
        // The definition's pod labels and annotations first: the controller's own always win (validation refuses such keys anyway).
        metadata: { labels: { ...runner.podLabels, ...labels }, annotations: { ...runner.podAnnotations, ...annotations, [ANNOTATIONS.configHash]: hash } },
        spec: {
          // A named ServiceAccount gets its token mounted: workload identity (IRSA and the like) reads the projected token.
          // The deprecated `serviceAccount` is sent too: the apiserver mirrors serviceAccountName into it, and a mirror
          // nobody owns would survive removing the field from the spec (and put serviceAccountName back).
          ...(runner.serviceAccountName
            ? { serviceAccountName: runner.serviceAccountName, serviceAccount: runner.serviceAccountName, automountServiceAccountToken: true }
            : { automountServiceAccountToken: false }),
          ...(runner.priorityClassName ? { priorityClassName: runner.priorityClassName } : {}),
          enableServiceLinks: false,
          ...(settings.imagePullSecrets.length ? { imagePullSecrets: settings.imagePullSecrets.map((n) => ({ name: n })) } : {}),
          securityContext: {
            runAsNonRoot: true,
            runAsUser: RUNNER_CONTAINER.uid,
            runAsGroup: RUNNER_CONTAINER.uid,
            fsGroup: RUNNER_CONTAINER.uid,
            seccompProfile: { type: "RuntimeDefault" },
          },
          terminationGracePeriodSeconds: RUNNER_CONTAINER.terminationGracePeriodSeconds,
          ...(runner.nodeSelector ? { nodeSelector: runner.nodeSelector } : {}),
          ...(runner.tolerations ? { tolerations: runner.tolerations } : {}),
          ...(affinity ? { affinity } : {}),
          containers: [container],
          volumes,
        },
      },
      ...(scratchClaim
        ? {
            volumeClaimTemplates: [
              {
                metadata: { name: "scratch", labels },
                spec: {
                  accessModes: ["ReadWriteOnce"],
                  resources: { requests: { storage: storageSize } },
                  ...(storageClassName ? { storageClassName } : {}),
                },
              },
            ],
          }
        : {}),
    },
  };

  const service: RunnerObjects["service"] = {
    apiVersion: "v1",
    kind: "Service",
    metadata: meta,
    spec: {
      // Headless: the StatefulSet's serviceName names it (stable DNS for the pod); clients reach the one runner pod through it all the same.
      type: "ClusterIP",
      clusterIP: "None",
      selector: runnerSelector(namespace, defName),
      ports: [{ name: RUNNER_CONTAINER.portName, port: RUNNER_CONTAINER.port, targetPort: RUNNER_CONTAINER.portName, protocol: "TCP" }],
    },
  };

  // Each object carries the hash of its complete self: how the controller knows to apply it again,
  // which also removes whatever it applied before and no longer renders (see diff.ts).
  return { name, configHash: hash, secret: withDesiredHash(secret), statefulSet: withDesiredHash(statefulSet), service: withDesiredHash(service) };
}
