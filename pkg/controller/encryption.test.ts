// Encryption through the controller: only recipients reach the runner config, from the spec or a
// Secret; the runner pod mounts the optional identity Secret, which the controller never reads.
import { generateX25519Identity, identityToRecipient } from "age-encryption";
import { beforeAll, describe, expect, it } from "vitest";
import { parseRunnerConfigText } from "../apis/index.ts";
import { RUNNER_CONTAINER } from "./contract.ts";
import { planRunnerConfig, referencedSecrets, type PlanInput, type PlanSuccess } from "./plan.ts";
import { renderRunnerObjects } from "./render.ts";
import { parseControllerSettings } from "./settings.ts";
import type { BackupDefinitionObject, SecretObject } from "./types.ts";

const settings = parseControllerSettings({ namespace: "chbackup-system", runnerImage: "reg/runner:1", leaderElection: { identity: "c" } });
const b64 = (s: string) => Buffer.from(s).toString("base64");
let r1: string, r2: string, identity: string;
let secrets: Record<string, SecretObject>;
beforeAll(async () => {
  identity = await generateX25519Identity();
  r1 = await identityToRecipient(identity);
  r2 = await identityToRecipient(await generateX25519Identity());
  secrets = {
    "shop/keys": { metadata: { name: "keys", namespace: "shop" }, data: { "recipients.txt": b64(`# team\n${r1}\n\n# break-glass\n${r2}\n`), bad: b64(`${r1}\nage1nope\n`), empty: b64("# none\n") } },
  };
});
const def = (encryption: unknown, method = "dump"): BackupDefinitionObject =>
  ({
    metadata: { name: "orders", namespace: "shop", generation: 1 },
    spec: { storageLocation: "disk", clickhouse: { url: "http://ch:8123", method }, schedule: { cron: "0 * * * *" }, encryption },
  }) as BackupDefinitionObject;
const input = (d: BackupDefinitionObject): PlanInput => ({
  definition: d,
  controllerNamespace: "chbackup-system",
  location: () => ({ metadata: { name: "disk" }, spec: { filesystem: { path: "/backups" } } }),
  secret: (ns, n) => secrets[`${ns}/${n}`],
  token: "token-0123456789abcdef",
});
const ok = (p: ReturnType<typeof planRunnerConfig>): PlanSuccess => {
  if (!p.ok) throw new Error(`${p.reason}: ${p.message}`);
  return p;
};

describe("encryption in the controller", () => {
  it("recipients from the spec and from a Secret reach the runner config, with the identity directory; nothing else", () => {
    for (const enc of [{ recipients: [r1, r2] }, { recipientsSecretRef: { name: "keys", key: "recipients.txt" } }]) {
      const p = ok(planRunnerConfig(input(def(enc))));
      const cfg = parseRunnerConfigText(p.configJson, "test");
      expect(cfg.definition.encryption).toEqual({ recipients: [r1, r2], identityDir: RUNNER_CONTAINER.identityDir });
      expect(p.configJson).not.toContain("recipientsSecretRef");
      expect(p.configJson).not.toContain(identity);
    }
    expect(referencedSecrets(def({ recipientsSecretRef: { name: "keys", key: "recipients.txt" } }), undefined, "chbackup-system")).toContainEqual({ namespace: "shop", name: "keys" });
  });

  it("a missing Secret, a malformed recipient in it, or none: not Ready, naming which", () => {
    expect(planRunnerConfig(input(def({ recipientsSecretRef: { name: "gone", key: "k" } })))).toMatchObject({ ok: false, reason: "SecretNotFound" });
    expect(planRunnerConfig(input(def({ recipientsSecretRef: { name: "keys", key: "nokey" } })))).toMatchObject({ ok: false, reason: "SecretKeyNotFound" });
    const bad = planRunnerConfig(input(def({ recipientsSecretRef: { name: "keys", key: "bad" } })));
    expect(bad).toMatchObject({ ok: false, reason: "InvalidSpec" });
    expect((bad as { message: string }).message).toContain('recipient 2 "age1nope" is not an age X25519 recipient');
    expect(planRunnerConfig(input(def({ recipientsSecretRef: { name: "keys", key: "empty" } })))).toMatchObject({ ok: false, reason: "InvalidSpec" });
    const native = planRunnerConfig(input(def({ recipients: [r1] }, "native")));
    expect(native).toMatchObject({ ok: false, reason: "InvalidSpec" });
    expect((native as { message: string }).message).toContain("spec.encryption: encryption applies to the dump method only");
  });

  it("the runner pod mounts the optional identity Secret read-only only when the definition is encrypted", () => {
    const o = renderRunnerObjects(ok(planRunnerConfig(input(def({ recipients: [r1] })))), settings);
    const pod = o.statefulSet.spec!.template.spec!;
    expect(pod.volumes).toContainEqual({ name: "identity", secret: { secretName: `${o.name}-identity`, optional: true, defaultMode: 0o440 } });
    expect(pod.containers[0]!.volumeMounts).toContainEqual({ name: "identity", mountPath: RUNNER_CONTAINER.identityDir, readOnly: true });
    const plain = renderRunnerObjects(ok(planRunnerConfig(input(def(undefined)))), settings);
    expect(plain.statefulSet.spec!.template.spec!.volumes!.map((v) => v.name)).not.toContain("identity");
  });
});
