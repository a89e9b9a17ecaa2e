import { generateX25519Identity, identityToRecipient } from "age-encryption";
import { describe, expect, it } from "vitest";
import { backupDefinitionSpec } from "./backupdefinition.ts";
import { formatIssues } from "./common.ts";
import { crdManifest, CRDS } from "./resources.ts";
import { AGE_RECIPIENT_PATTERN, isAgeRecipient, parseRecipientsText, recipientFingerprint } from "./encryption.ts";
import { parseRunnerConfig } from "./runnerconfig.ts";

const spec = (encryption: unknown, method = "dump") => ({
  storageLocation: "minio",
  clickhouse: { url: "http://ch:8123", method },
  schedule: { cron: "0 * * * *" },
  encryption,
});
const problems = (input: unknown) => {
  const r = backupDefinitionSpec.safeParse(input);
  return r.success ? [] : formatIssues(r.error, "spec");
};

describe("encryption settings", () => {
  it("accepts what age-keygen makes (checked against the library), and the library's recipients only", async () => {
    for (let i = 0; i < 20; i++) {
      const r = await identityToRecipient(await generateX25519Identity());
      expect(isAgeRecipient(r)).toBe(true);
      expect(r).toMatch(new RegExp(AGE_RECIPIENT_PATTERN));
      // one changed character breaks the bech32 checksum
      const c = r.at(-3) === "q" ? "p" : "q";
      expect(isAgeRecipient(`${r.slice(0, -3)}${c}${r.slice(-2)}`)).toBe(false);
    }
    expect(isAgeRecipient("age1")).toBe(false);
  });

  it("a malformed recipient is refused by name; a private key is refused without being shown", async () => {
    const good = await identityToRecipient(await generateX25519Identity());
    const bad = `${good.slice(0, -1)}${good.endsWith("q") ? "p" : "q"}`;
    expect(problems(spec({ recipients: [good] }))).toEqual([]);
    const p = problems(spec({ recipients: [good, bad, "age1short"] }));
    expect(p.find((m) => m.startsWith("spec.encryption.recipients.1:"))).toContain(bad);
    expect(p.find((m) => m.startsWith("spec.encryption.recipients.2:"))).toContain('"age1short" is not an age X25519 recipient');
    const secret = await generateX25519Identity();
    const s = problems(spec({ recipients: [secret] }));
    expect(s.join("\n")).toMatch(/is an age identity \(a private key\), not a recipient/);
    expect(s.join("\n")).not.toContain(secret.slice(16));
    expect(problems(spec({ recipients: [good, good] })).join()).toMatch(/listed twice/);
  });

  it("exactly one source of recipients; never with the native method", async () => {
    const good = await identityToRecipient(await generateX25519Identity());
    expect(problems(spec({}))).toEqual(["spec.encryption: encryption: set exactly one of recipients and recipientsSecretRef"]);
    expect(problems(spec({ recipients: [good], recipientsSecretRef: { name: "keys", key: "recipients.txt" } })).length).toBe(1);
    expect(problems(spec({ recipientsSecretRef: { name: "keys", key: "recipients.txt" } }))).toEqual([]);
    expect(problems(spec({ recipients: [good] }, "native")).join()).toMatch(/encryption applies to the dump method only/);
    const cfg = (encryption: unknown, method = "dump") => () =>
      parseRunnerConfig({
        definition: { namespace: "a", name: "b", clickhouse: { url: "http://ch:8123", method }, schedule: { cron: "0 * * * *" }, encryption },
        storage: { filesystem: { path: "/backups" } },
        api: { token: "0123456789abcdef" },
      });
    expect(cfg({ recipients: [good] })).not.toThrow();
    expect(cfg({ recipients: [good] }, "native")).toThrow(/definition.encryption: encryption applies to the dump method only/);
    expect(cfg({ recipients: [] })).toThrow(/definition.encryption.recipients/);
    expect(cfg({ recipients: [good], identity: "x" })).toThrow(/definition.encryption.identity: unknown field/);
  });

  it("the CRD carries the pattern and the CEL rules", () => {
    const crd = JSON.stringify(crdManifest(CRDS.find((c) => c.kind === "BackupDefinition")!));
    expect(crd).toContain(JSON.stringify(AGE_RECIPIENT_PATTERN).slice(1, -1));
    expect(crd).toContain("has(self.encryption.recipients) != has(self.encryption.recipientsSecretRef)");
    expect(crd).toContain("self.clickhouse.method != 'native'");
  });

  it("fingerprints and recipients files", () => {
    expect(recipientFingerprint("age1abc")).toMatch(/^[0-9a-f]{16}$/);
    expect(parseRecipientsText("# team\nage1x\n\n  age1y  \r\n#break-glass\n")).toEqual(["age1x", "age1y"]);
  });
});
