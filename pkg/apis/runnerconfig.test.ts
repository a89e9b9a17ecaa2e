import { describe, expect, it } from "vitest";
import { ConfigError, parseRunnerConfig, parseRunnerConfigText, backupDefinitionSpec, storageLocationSpec } from "./index.ts";

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
