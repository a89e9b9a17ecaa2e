import { describe, expect, it } from "vitest";
import { z } from "zod";
import { ConfigError, CRDS, crdManifest, parseRunnerConfig, parseRunnerConfigText, backupDefinitionSpec, runnerConfig, storageLocationSpec } from "./index.ts";

const valid = {
  definition: {
    namespace: "shop",
    name: "orders",
    clickhouse: { url: "http://clickhouse.shop.svc:8123", username: "backup", password: "s3cr3t-pass" },
    schedule: { cron: "0 * * * *", timeZone: "Europe/Berlin" },
  },
  storage: { s3: { endpoint: "http://minio:9000", bucket: "backups", accessKeyId: "AK", secretAccessKey: "very-secret-key" } },
  api: { token: "0123456789abcdef0123" },
};

describe("runner config", () => {
  it("applies defaults", () => {
    const c = parseRunnerConfig(valid);
    expect(c.definition.mode).toBe("scheduled");
    expect(c.definition.retention).toEqual({ hourly: 24, daily: 7, weekly: 4, monthly: 12 });
    expect(c.definition.clickhouse.method).toBe("dump");
    expect(c.definition.clickhouse.databases).toEqual({ include: ["*"], exclude: [] });
    expect(c.storage.s3?.region).toBe("us-east-1");
    expect(c.storage.s3?.partSizeMiB).toBe(8);
    expect(c.api.port).toBe(8080);
  });

  it("lists every problem by field path and never a secret value", () => {
    const bad = {
      definition: { ...valid.definition, clickhouse: { url: "ftp://x", password: 123456789 }, schedule: undefined },
      storage: { s3: { bucket: "ab", secretAccessKey: 987654321 }, filesystem: { path: "/x" } },
      api: { token: "short-token" },
    };
    let err: unknown;
    try {
      parseRunnerConfig(bad, "/etc/runner/config.json");
    } catch (e: unknown) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const ce = err as ConfigError;
    const paths = ce.problems.map((p) => p.split(":")[0]);
    expect(paths).toEqual(
      expect.arrayContaining([
        "definition.clickhouse.url",
        "definition.clickhouse.password",
        "definition.schedule",
        "storage.s3.bucket",
        "storage.s3.secretAccessKey",
        "api.token",
      ]),
    );
    expect(ce.message).toContain("/etc/runner/config.json");
    for (const secret of ["123456789", "987654321", "short-token"]) expect(ce.message).not.toContain(secret);
  });

  it("rejects both or neither storage backend", () => {
    expect(() => parseRunnerConfig({ ...valid, storage: {} })).toThrow(/exactly one of s3 or filesystem/);
  });

  it("reports invalid JSON without echoing the content", () => {
    expect(() => parseRunnerConfigText('{"api": {"token": "hunter2-hunter2-hunter2"', "cfg.json")).toThrow(ConfigError);
    try {
      parseRunnerConfigText('{"api": {"token": "hunter2-hunter2-hunter2"', "cfg.json");
    } catch (e: unknown) {
      expect(String((e as Error).message)).not.toContain("hunter2");
      expect(String((e as Error).cause)).not.toContain("hunter2");
    }
  });

  it("single mode needs a target, scheduled mode a schedule", () => {
    const r = backupDefinitionSpec.safeParse({ storageLocation: "s3", clickhouse: { url: "http://ch:8123" }, mode: "single" });
    expect(r.success).toBe(false);
    expect(r.error?.issues.map((i) => i.path.join("."))).toContain("singleBackup");
    expect(storageLocationSpec.safeParse({ filesystem: { path: "relative" } }).success).toBe(false);
  });
});

describe("runner config: no silent configuration", () => {
  const problems = (input: unknown): string[] => {
    try {
      parseRunnerConfig(input);
    } catch (e: unknown) {
      if (e instanceof ConfigError) return e.problems;
      throw e;
    }
    return [];
  };

  it("rejects misspelt and unknown fields at every level, naming their path", () => {
    const p = problems({
      ...valid,
      extra: true,
      definition: { ...valid.definition, retension: { daily: 7 }, clickhouse: { ...valid.definition.clickhouse, native: { fullEvry: 3 } }, schedule: { ...valid.definition.schedule, tz: "UTC" } },
      storage: { s3: { ...valid.storage.s3, encrpytion: "aws:kms" } },
      api: { ...valid.api, prot: 8081 },
    });
    expect(p).toEqual(
      expect.arrayContaining([
        "extra: unknown field",
        "definition.retension: unknown field",
        "definition.clickhouse.native.fullEvry: unknown field",
        "definition.schedule.tz: unknown field",
        "storage.s3.encrpytion: unknown field",
        "api.prot: unknown field",
      ]),
    );
    expect(p).toHaveLength(6);
    expect(problems({ ...valid, storage: { filesystem: { path: "/b", claimName: "x" } } })).toEqual(["storage.filesystem.claimName: unknown field"]);
    expect(problems({ ...valid, definition: { ...valid.definition, retention: { hourly: 2, dayly: 7 } } })).toEqual(["definition.retention.dayly: unknown field"]);
  });

  it("every object of the runner config schema is strict (records aside)", () => {
    const loose: string[] = [];
    const walk = (node: unknown, path: string): void => {
      if (!node || typeof node !== "object") return;
      const n = node as Record<string, unknown>;
      if (n["type"] === "object" && n["properties"] && n["additionalProperties"] !== false) loose.push(path || "(root)");
      for (const [k, v] of Object.entries((n["properties"] as Record<string, unknown>) ?? {})) walk(v, path ? `${path}.${k}` : k);
      if (n["items"]) walk(n["items"], `${path}[]`);
      for (const key of ["anyOf", "oneOf", "allOf"]) for (const v of (n[key] as unknown[]) ?? []) walk(v, path);
    };
    walk(z.toJSONSchema(runnerConfig, { io: "input" }), "");
    expect(loose).toEqual([]);
  });

  it("refuses an empty or all-zero retention in scheduled mode, naming definition.retention", () => {
    for (const retention of [{}, { hourly: 0 }, { hourly: 0, daily: 0, weekly: 0, monthly: 0, yearly: 0 }]) {
      const p = problems({ ...valid, definition: { ...valid.definition, retention } });
      expect(p, JSON.stringify(retention)).toHaveLength(1);
      expect(p[0]).toMatch(/^definition\.retention: must keep at least one label/);
    }
    expect(problems({ ...valid, definition: { ...valid.definition, retention: { yearly: 1 } } })).toEqual([]);
    // Absent: the default policy applies.
    expect(parseRunnerConfig(valid).definition.retention).toEqual({ hourly: 24, daily: 7, weekly: 4, monthly: 12 });
    // Single mode has no retention: an empty policy is fine there.
    const single = { ...valid, definition: { ...valid.definition, mode: "single", schedule: undefined, singleBackup: { target: "exports/x" }, retention: {} } };
    expect(problems(single)).toEqual([]);
  });

  it("the BackupDefinition spec refuses an empty retention too, and takes the cleanup timeout", () => {
    const spec = { storageLocation: "s3", clickhouse: { url: "http://ch:8123" }, schedule: { cron: "0 * * * *" } };
    const r = backupDefinitionSpec.safeParse({ ...spec, retention: { daily: 0 } });
    expect(r.error?.issues.map((i) => i.path.join("."))).toEqual(["retention"]);
    const ok = backupDefinitionSpec.parse({ ...spec, incompleteCleanupAfterHours: 48 });
    expect(ok.incompleteCleanupAfterHours).toBe(48);
    expect(backupDefinitionSpec.parse(spec).incompleteCleanupAfterHours).toBe(24);
    expect(backupDefinitionSpec.safeParse({ ...spec, incompleteCleanupAfterHours: 0 }).success).toBe(false);
  });

  it("takes the definition uid, optional", () => {
    expect(parseRunnerConfig(valid).definition.uid).toBeUndefined();
    expect(parseRunnerConfig({ ...valid, definition: { ...valid.definition, uid: "0b6f9a2e-1111-4222-8333-944455556666" } }).definition.uid).toBe("0b6f9a2e-1111-4222-8333-944455556666");
  });
});

describe("CRD rule for retention", () => {
  it("is attached to the BackupDefinition spec with its field path", () => {
    const crd = crdManifest(CRDS.find((c) => c.kind === "BackupDefinition")!) as { spec: { versions: { schema: { openAPIV3Schema: { properties: { spec: { "x-kubernetes-validations": { rule: string; fieldPath?: string }[] } } } } }[] } };
    const rules = crd.spec.versions[0]!.schema.openAPIV3Schema.properties.spec["x-kubernetes-validations"];
    const r = rules.find((v) => v.fieldPath === ".retention");
    expect(r?.rule).toContain("self.mode != 'scheduled'");
    for (const label of ["hourly", "daily", "weekly", "monthly", "yearly"]) expect(r?.rule).toContain(`self.retention.${label} > 0`);
  });
});
