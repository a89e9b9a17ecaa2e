import { describe, expect, it } from "vitest";
import { parseCommand, UsageError } from "./cli.ts";

describe("backup-runner command line", () => {
  it("defaults to serve", () => {
    expect(parseCommand([])).toEqual({ cmd: "serve", config: undefined });
    expect(parseCommand(["--config", "/c.json"])).toEqual({ cmd: "serve", config: "/c.json" });
  });
  it("parses a one-off backup", () => {
    expect(parseCommand(["backup", "--once", "--target", "exports/x"])).toEqual({ cmd: "backup", config: undefined, target: "exports/x" });
    expect(() => parseCommand(["backup"])).toThrow(UsageError);
  });
  it("parses restore options", () => {
    expect(parseCommand(["restore", "--backup", "latest", "--database", "a", "--rename", "a=b", "--existing", "drop"])).toEqual({
      cmd: "restore",
      config: undefined,
      from: undefined,
      backup: "latest",
      databases: ["a"],
      tables: [],
      rename: { a: "b" },
      existing: "drop",
      allowUnstagedDrop: false,
    });
    expect(parseCommand(["restore", "--from", "x", "--existing", "drop", "--allow-unstaged-drop"])).toMatchObject({ existing: "drop", allowUnstagedDrop: true });
    expect(parseCommand(["restore", "--backup", "latest", "--merge-shards"])).toMatchObject({ cmd: "restore", mergeShards: true });
    expect(parseCommand(["restore", "--backup", "latest"])).not.toHaveProperty("mergeShards");
    expect(() => parseCommand(["verify", "--backup", "latest", "--merge-shards"])).toThrow(/verify takes no --merge-shards/);
    expect(() => parseCommand(["restore"])).toThrow(/exactly one of/);
    expect(() => parseCommand(["restore", "--from", "x", "--existing", "merge"])).toThrow(/--existing/);
    expect(() => parseCommand(["restore", "--from", "x", "--rename", "ab"])).toThrow(/FROM=TO/);
    expect(() => parseCommand(["frobnicate"])).toThrow(/unknown command/);
    expect(() => parseCommand(["serve", "--bogus"])).toThrow(UsageError);
  });
});

describe("verify command line", () => {
  it("takes --from or --backup, like restore, and nothing restore-only", () => {
    expect(parseCommand(["verify", "--backup", "latest", "--config", "/c.json"])).toEqual({ cmd: "verify", config: "/c.json", from: undefined, backup: "latest" });
    expect(parseCommand(["verify", "--from", "exports/x"])).toEqual({ cmd: "verify", config: undefined, from: "exports/x", backup: undefined });
    expect(() => parseCommand(["verify"])).toThrow(/exactly one of --from PATH or --backup/);
    expect(() => parseCommand(["verify", "--from", "x", "--backup", "latest"])).toThrow(/exactly one of/);
    expect(() => parseCommand(["verify", "--backup", "latest", "--existing", "drop"])).toThrow(/verify takes no --existing/);
  });
});

describe("parseListen", () => {
  it("reads host:port, [v6]:port and :port", async () => {
    const { parseListen } = await import("./cli.ts");
    expect(parseListen("127.0.0.1:18080")).toEqual({ host: "127.0.0.1", port: 18080 });
    expect(parseListen("[::1]:9")).toEqual({ host: "::1", port: 9 });
    expect(parseListen(":8080")).toEqual({ host: "0.0.0.0", port: 8080 });
    expect(() => parseListen("localhost")).toThrow(/RUNNER_LISTEN/);
    expect(() => parseListen("h:70000")).toThrow(/RUNNER_LISTEN/);
  });
});
