// Where the test environment finds its server binaries.
// Versions are pinned in scripts/versions.env (shared with the setup scripts);
// binaries that take minutes to build are cached outside the repo by version.
import { readFileSync, existsSync } from "node:fs";
import { homedir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

export interface ToolVersions {
  NODE_VERSION: string;
  MINIO_VERSION: string;
  KUBERNETES_VERSION: string;
  HELM_VERSION: string;
}

export function readVersions(file = join(repoRoot, "scripts", "versions.env")): ToolVersions {
  const out: Record<string, string> = {};
  for (const line of readFileSync(file, "utf8").split("\n")) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m?.[1] && m[2] !== undefined) out[m[1]] = m[2];
  }
  for (const k of ["NODE_VERSION", "MINIO_VERSION", "KUBERNETES_VERSION", "HELM_VERSION"]) {
    if (!out[k]) throw new Error(`scripts/versions.env: ${k} is missing`);
  }
  return out as unknown as ToolVersions;
}

export function toolsCache(env: NodeJS.ProcessEnv = process.env): string {
  return env["BACKUP_TOOLS_CACHE"] ?? join(env["XDG_CACHE_HOME"] ?? join(homedir(), ".cache"), "chbackup-tools");
}

function resolveBinary(what: string, envVar: string, candidates: string[], hint: string): string {
  const fromEnv = process.env[envVar];
  if (fromEnv) {
    if (!existsSync(fromEnv)) throw new Error(`${envVar}=${fromEnv}: no such file`);
    return fromEnv;
  }
  for (const c of candidates) if (existsSync(c)) return c;
  throw new Error(`${what} not found (looked in ${candidates.join(", ")}); ${hint}, or set ${envVar}`);
}

/** The test servers are not part of the demo setup: `scripts/setup.sh --test` installs and builds them. */
const setupHint = "the tests need it: run `bash scripts/setup.sh --test` (it installs and builds every test server once)";

export function minioBinary(): string {
  const v = readVersions();
  return resolveBinary("minio", "MINIO_BIN", [join(toolsCache(), `minio-${v.MINIO_VERSION}`, "minio")], setupHint);
}

export function kubeApiserverBinary(): string {
  const v = readVersions();
  return resolveBinary(
    "kube-apiserver",
    "KUBE_APISERVER_BIN",
    [join(toolsCache(), `kube-apiserver-${v.KUBERNETES_VERSION}`, "kube-apiserver")],
    setupHint,
  );
}

/** Helm, for `helm lint` and `helm template` of the chart (scripts/build-helm.sh). */
export function helmBinary(): string {
  const v = readVersions();
  return resolveBinary("helm", "HELM_BIN", [join(toolsCache(), `helm-${v.HELM_VERSION}`, "helm")], setupHint);
}

export function etcdBinary(): string {
  return resolveBinary("etcd", "ETCD_BIN", ["/usr/bin/etcd", "/usr/local/bin/etcd"], `${setupHint} (Debian package etcd-server)`);
}

export function clickhouseServerBinary(): string {
  return resolveBinary(
    "clickhouse-server",
    "CLICKHOUSE_SERVER_BIN",
    ["/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server", "/usr/bin/clickhouse"],
    `${setupHint} (Debian package clickhouse-server)`,
  );
}

/** ZooKeeper's jar from Debian's zookeeperd (the cluster tests run it with java as a plain process). */
export function zookeeperJar(): string {
  return resolveBinary("ZooKeeper (zookeeper.jar)", "ZOOKEEPER_JAR", ["/usr/share/java/zookeeper.jar"], `${setupHint} (Debian package zookeeperd)`);
}

export function javaBinary(): string {
  return resolveBinary("java", "JAVA_BIN", ["/usr/bin/java", "/usr/lib/jvm/default-java/bin/java"], `${setupHint} (Debian package zookeeperd brings it)`);
}

/** The test servers that are not installed, each with the error that names the command to run; empty when all are there. */
export function missingTestTools(): string[] {
  const missing: string[] = [];
  for (const find of [clickhouseServerBinary, etcdBinary, kubeApiserverBinary, minioBinary, helmBinary, zookeeperJar, javaBinary]) {
    try {
      find();
    } catch (e) {
      missing.push((e as Error).message);
    }
  }
  return missing;
}
