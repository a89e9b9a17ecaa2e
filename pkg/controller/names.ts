// Names of the generated objects: runner-<namespace>-<name> plus a short hash
// of the definition's identity, shortened where Kubernetes limits demand it.
import { createHash } from "node:crypto";

/**
 * A StatefulSet's pods carry the label controller-revision-hash=<name>-<10 chars>,
 * which must fit in 63 characters, and the Service name must be a DNS-1035
 * label: 52 characters leave room for both.
 */
export const MAX_RUNNER_NAME = 52;

export function shortHash(s: string, len = 8): string {
  return createHash("sha256").update(s).digest("hex").slice(0, len);
}

/**
 * The one name of a definition's Secret, StatefulSet and Service (a valid DNS-1035 label):
 * runner-<namespace>-<name>-<hash>, where the hash is of the exact "<namespace>/<name>".
 * The hash makes the name injective: team-a/x and team/a-x both read "runner-team-a-x",
 * but their hashes differ. Names that do not fit are shortened before the hash.
 */
export function runnerName(namespace: string, name: string): string {
  const clean = `runner-${namespace}-${name}`.replace(/[^a-z0-9-]/g, "-");
  const suffix = `-${shortHash(`${namespace}/${name}`)}`;
  return `${clean.slice(0, MAX_RUNNER_NAME - suffix.length).replace(/-+$/, "")}${suffix}`;
}

/** A label value (≤ 63 characters, alphanumeric at both ends) standing for any string. */
export function labelValue(s: string): string {
  if (s.length <= 63 && /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/.test(s)) return s;
  const suffix = `-${shortHash(s)}`;
  return `${s.slice(0, 63 - suffix.length).replace(/[^A-Za-z0-9]+$/, "")}${suffix}`;
}

/** "namespace/name" key of a definition. */
export function defKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

export function splitKey(key: string): { namespace: string; name: string } {
  const i = key.indexOf("/");
  return { namespace: key.slice(0, i), name: key.slice(i + 1) };
}
