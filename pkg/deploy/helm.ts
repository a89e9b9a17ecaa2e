// The Helm chart, rendered from the same manifests as the kustomize base: the
// Helm value source puts a marker where a value goes, the objects are written
// as YAML, and each marker becomes its `{{ ... }}` template text.
import { Document, isMap, isPair, isScalar, stringify, type Node as YamlNode } from "yaml";
import { z } from "zod";
import { API_GROUP } from "../apis/common.ts";
import { RUNNER_CONTAINER } from "../controller/contract.ts";
import { renderControllerFiles, valueAt, type Obj, type ValueSource } from "./manifests.ts";
import { CHART_NAME, CHART_VERSION, chartValues, DEFAULT_VALUES } from "./values.ts";

/** Template text put verbatim where a scalar goes. */
export class HelmExpr {
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }
}
/** Template lines that replace a whole `key: value` line (or, keyless, a line of its own). */
export class HelmBlock {
  readonly keyless: boolean;
  readonly lines: (indent: string, key: string) => string[];
  constructor(keyless: boolean, lines: (indent: string, key: string) => string[]) {
    this.keyless = keyless;
    this.lines = lines;
  }
}

const dot = (path: string) => `.Values.${path}`;

/** `{{ .Values.x }}` in every place a value goes; the type of the default value decides the conversion. */
export function helmSource(): ValueSource {
  const kind = (p: string) => typeof valueAt(DEFAULT_VALUES, p);
  return {
    namespace: () => new HelmExpr(`{{ include "chbackup.namespace" . | quote }}`),
    namespaceOr: (p) => {
      valueAt(DEFAULT_VALUES, p);
      return new HelmExpr(`{{ default (include "chbackup.namespace" .) ${dot(p)} | quote }}`);
    },
    value: (p) => {
      const k = kind(p);
      if (k === "number") return new HelmExpr(`{{ ${dot(p)} | int }}`);
      if (k === "boolean") return new HelmExpr(`{{ ${dot(p)} }}`);
      return new HelmExpr(`{{ ${dot(p)} | quote }}`);
    },
    text: (p) => new HelmExpr(kind(p) === "number" ? `{{ ${dot(p)} | int | toString | quote }}` : `{{ ${dot(p)} | toString | quote }}`),
    imageRef: (p) => new HelmExpr(`{{ printf "%s:%s" ${dot(p)}.repository (toString ${dot(p)}.tag) | quote }}`),
    joined: (p) => new HelmExpr(`{{ join "," ${dot(p)} | quote }}`),
    runnerDefaultsJson: () => new HelmExpr(`{{ include "chbackup.runnerDefaults" . | quote }}`),
    optional: (p) => {
      valueAt(DEFAULT_VALUES, p);
      return new HelmBlock(false, (ind, key) => [
        `${ind}{{- with ${dot(p)} }}`,
        `${ind}${key}:`,
        `${ind}  {{- toYaml . | nindent ${ind.length + 2} }}`,
        `${ind}{{- end }}`,
      ]);
    },
    nameList: (p) => {
      valueAt(DEFAULT_VALUES, p);
      return new HelmBlock(false, (ind, key) => [
        `${ind}{{- with ${dot(p)} }}`,
        `${ind}${key}:`,
        `${ind}  {{- range . }}`,
        `${ind}  - name: {{ . | quote }}`,
        `${ind}  {{- end }}`,
        `${ind}{{- end }}`,
      ]);
    },
    packagingLabels: () => ({ "(helm labels)": new HelmBlock(true, (ind) => [`${ind}{{- include "chbackup.labels" . | nindent ${ind.length} }}`]) }),
    entries: (p) => {
      valueAt(DEFAULT_VALUES, p);
      return { [`(helm ${p})`]: new HelmBlock(true, (ind) => [`${ind}{{- with ${dot(p)} }}`, `${ind}{{- toYaml . | nindent ${ind.length} }}`, `${ind}{{- end }}`]) };
    },
    inline: (p) => {
      valueAt(DEFAULT_VALUES, p);
      return `${INLINE_OPEN}${p}${INLINE_CLOSE}`;
    },
  };
}

/** Brackets an inline value's path in the YAML text until helmYaml turns it into `{{ .Values.path }}`. */
const INLINE_OPEN = "@@VALUES.";
const INLINE_CLOSE = "@@";
const INLINE_RE = /@@VALUES\.([A-Za-z0-9_.]+)@@/g;

/**
 * Text that Helm must print as it is: every `{{` and `}}` becomes a template action printing it
 * (PromQL annotations say `{{ $labels.name }}`, Grafana legends `{{name}}`).
 */
export function escapeTemplateText(text: string): string {
  return text.replace(/\{\{|\}\}/g, (m) => (m === "{{" ? '{{ "{{" }}' : '{{ "}}" }}'));
}

/** YAML of objects holding HelmExpr/HelmBlock markers, with the markers turned into template text. */
export function helmYaml(obj: Obj): string {
  const nodes: (HelmExpr | HelmBlock)[] = [];
  const marker = (n: HelmExpr | HelmBlock) => `__HELM${nodes.push(n) - 1}__`;
  const walk = (v: unknown): unknown => {
    if (v instanceof HelmExpr || v instanceof HelmBlock) return marker(v);
    if (Array.isArray(v)) return v.map(walk);
    if (v && typeof v === "object") {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) {
        if (x === undefined) continue;
        if (x instanceof HelmBlock && x.keyless) out[marker(x)] = null;
        else out[k] = walk(x);
      }
      return out;
    }
    return v;
  };
  const text = stringify(walk(obj), { lineWidth: 0 });
  const out: string[] = [];
  for (const line of text.replace(/\n$/, "").split("\n")) {
    const keyless = /^(\s*)__HELM(\d+)__: null$/.exec(line);
    const keyed = /^(\s*)([^\s:]+): __HELM(\d+)__$/.exec(line);
    if (keyless) {
      out.push(...(nodes[Number(keyless[2])] as HelmBlock).lines(keyless[1]!, ""));
    } else if (keyed && nodes[Number(keyed[3])] instanceof HelmBlock) {
      out.push(...(nodes[Number(keyed[3])] as HelmBlock).lines(keyed[1]!, keyed[2]!));
    } else {
      out.push(
        escapeTemplateText(line)
          .replace(INLINE_RE, (_, p: string) => (typeof valueAt(DEFAULT_VALUES, p) === "number" ? `{{ ${dot(p)} | int }}` : `{{ ${dot(p)} }}`))
          .replace(/__HELM(\d+)__/g, (_, i: string) => {
            const n = nodes[Number(i)];
            if (!(n instanceof HelmExpr)) throw new Error(`a block value can only stand alone on a "key:" line: ${line}`);
            return n.text;
          }),
      );
    }
  }
  return `${out.join("\n")}\n`;
}

export const TEMPLATE_HEADER = "{{- /* Generated by `npm run gen` from pkg/deploy. Do not edit. */ -}}\n";
export const YAML_HEADER = "# Generated by `npm run gen` from pkg/deploy. Do not edit.\n";

/** templates/*.yaml of the chart. */
export function helmTemplates(): Map<string, string> {
  const files = new Map<string, string>();
  for (const f of renderControllerFiles(helmSource())) {
    let body = f.objects.map(helmYaml).join("---\n");
    if (f.when) body = `{{- if ${dot(f.when)} }}\n${body}{{- end }}\n`;
    files.set(f.name, TEMPLATE_HEADER + body);
  }
  return files;
}

export const HELPERS_TPL = `${TEMPLATE_HEADER}
{{/* Namespace of the controller and the runner objects: .Values.namespace, else the release namespace. */}}
{{- define "chbackup.namespace" -}}
{{- default .Release.Namespace .Values.namespace -}}
{{- end -}}

{{/* Labels Helm adds to every object (the kustomize base has the same objects without them). */}}
{{- define "chbackup.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* RUNNER_DEFAULTS: JSON with sorted keys; an empty storageClassName is left out (the cluster default). */}}
{{- define "chbackup.runnerDefaults" -}}
{{- $d := dict "resources" (.Values.runner.resources | default dict) "storageSize" .Values.runner.storageSize -}}
{{- with .Values.runner.storageClassName }}{{ $_ := set $d "storageClassName" . }}{{ end -}}
{{- toJson $d -}}
{{- end -}}
`;

export const NOTES_TXT = `${TEMPLATE_HEADER}
The chbackup controller runs in namespace {{ include "chbackup.namespace" . }}.

1. Create a StorageLocation (and its credentials Secret) in {{ include "chbackup.namespace" . }}:
     kubectl apply -f examples/storagelocation-minio.yaml
2. Create a BackupDefinition in the application's namespace:
     kubectl apply -f examples/backupdefinition.yaml
3. Watch it become Ready:
     kubectl get backupdefinitions -A
4. Restore: create a Restore next to the definition, and follow it:
     kubectl apply -f examples/restore.yaml
     kubectl get restores -A
   or talk to the runner's API (service and token from the definition's status):
     examples/restore.sh <namespace> <definition>
`;

export function chartYaml(): string {
  return (
    YAML_HEADER +
    stringify(
      {
        apiVersion: "v2",
        name: CHART_NAME,
        description: "ClickHouse backups on Kubernetes: the backup-controller (Deployment, RBAC) and the StorageLocation and BackupDefinition CRDs",
        type: "application",
        version: CHART_VERSION,
        appVersion: CHART_VERSION,
        keywords: ["clickhouse", "backup", "operator"],
      },
      { lineWidth: 0 },
    )
  );
}

type JsonSchema = { type?: string; description?: string; default?: unknown; properties?: Record<string, JsonSchema> };

export function valuesJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(chartValues, { target: "draft-7", io: "input" }) as Record<string, unknown>;
  return { $schema: schema["$schema"], $comment: "Generated by `npm run gen` from pkg/deploy/values.ts. Do not edit.", ...schema };
}

/** Paths whose value is a free-form map, documented as one row (resources, nodeSelector, ...). */
const isLeaf = (path: string, s: JsonSchema) => !s.properties || path.endsWith("resources");

export interface ValueRow {
  path: string;
  type: string;
  default: unknown;
  description: string;
}

export function valueRows(schema = valuesJsonSchema() as JsonSchema, prefix = ""): ValueRow[] {
  const rows: ValueRow[] = [];
  for (const [name, s] of Object.entries(schema.properties ?? {})) {
    const path = prefix ? `${prefix}.${name}` : name;
    if (isLeaf(path, s)) rows.push({ path, type: s.type ?? "any", default: valueAt(DEFAULT_VALUES, path), description: s.description ?? "" });
    else rows.push(...valueRows(s, path));
  }
  return rows;
}

/** The values table (Markdown), also in the chart's README. */
export function valuesTable(): string {
  const cell = (s: string) => s.replace(/\|/g, "\\|");
  const lines = ["| value | default | description |", "| --- | --- | --- |"];
  for (const r of valueRows()) lines.push(`| \`${r.path}\` | \`${cell(JSON.stringify(r.default))}\` | ${cell(r.description)} |`);
  return `${lines.join("\n")}\n`;
}

/** values.yaml: the defaults, each key with its description as a comment. */
export function valuesYaml(): string {
  const schema = valuesJsonSchema() as JsonSchema;
  const doc = new Document(DEFAULT_VALUES);
  const annotate = (node: YamlNode | null | undefined, s: JsonSchema, path: string, top: boolean) => {
    if (!isMap(node)) return;
    for (const pair of node.items) {
      if (!isPair(pair) || !isScalar(pair.key)) continue;
      const name = String(pair.key.value);
      const sub = s.properties?.[name];
      if (!sub) continue;
      const p = path ? `${path}.${name}` : name;
      if (sub.description) pair.key.commentBefore = ` ${sub.description}`;
      if (top) pair.key.spaceBefore = true;
      if (!isLeaf(p, sub)) annotate(pair.value as YamlNode, sub, p, false);
    }
  };
  annotate(doc.contents as YamlNode, schema, "", true);
  return `${YAML_HEADER}# Every value is checked against values.schema.json.\n${doc.toString({ lineWidth: 0 })}`;
}

export function chartReadme(): string {
  return `<!-- Generated by \`npm run gen\` from pkg/deploy. Do not edit. -->
# chbackup Helm chart

Installs the ClickHouse backup controller: the \`StorageLocation\` and \`BackupDefinition\` CRDs (API group \`${API_GROUP}\`), a ServiceAccount with the least RBAC the controller needs, and its Deployment. The controller then creates one runner StatefulSet, Secret and Service per \`BackupDefinition\`, serving the runner API on port ${RUNNER_CONTAINER.port}.

\`\`\`sh
helm install chbackup deploy/helm/chbackup -n chbackup-system --create-namespace \\
  --set image.repository=registry.example.com/chbackup/backup-controller \\
  --set runner.image.repository=registry.example.com/chbackup/backup-runner
\`\`\`

Off by default, for the Prometheus Operator and Grafana: \`podMonitor.enabled\` scrapes the controller and every runner, \`prometheusRule.enabled\` adds the alerts (ChbackupBackupUnhealthy, ChbackupBackupTooOld, ChbackupControllerAbsent, ChbackupRunnerFailing, ChbackupVerifyFailed, ChbackupRestoreFailed), and \`grafanaDashboard.enabled\` ships the dashboard as a ConfigMap for the Grafana sidecar (label \`grafana_dashboard: "1"\`; \`grafanaDashboard.namespace\` puts it where the sidecar looks).

The same objects, without Helm's labels, are in the kustomize base \`deploy/base\` (namespace \`chbackup-system\`), and the monitoring objects in \`deploy/monitoring\`. Helm installs the CRDs from \`crds/\` on the first install only; on upgrades apply \`deploy/crds/\` yourself.

## Values

${valuesTable()}`;
}

/** Every file of the chart, by path relative to the chart directory; `crds` are the CRD files (name → content), copied into crds/. */
export function helmChartFiles(crds: Map<string, string>): Map<string, string> {
  const files = new Map<string, string>();
  files.set("Chart.yaml", chartYaml());
  files.set("values.yaml", valuesYaml());
  files.set("values.schema.json", `${JSON.stringify(valuesJsonSchema(), null, 2)}\n`);
  files.set("README.md", chartReadme());
  files.set("templates/_helpers.tpl", HELPERS_TPL);
  files.set("templates/NOTES.txt", NOTES_TXT);
  for (const [name, text] of helmTemplates()) files.set(`templates/${name}`, text);
  for (const [name, text] of crds) files.set(`crds/${name}`, text);
  return files;
}
