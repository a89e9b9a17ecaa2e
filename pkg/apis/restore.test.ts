// The Restore spec admits what the runner API's POST /api/v1/restores body admits: the zod schema
// (which the controller parses with) and the CRD's structural schema (patterns, lengths, counts,
// which the apiserver applies) are held against the runner's own schema on the same cases. The
// CEL rules are checked against a real apiserver in test/restore-object.test.ts.
import { describe, expect, it } from "vitest";
import { restoreBody } from "../runner/api/views.ts";
import { crdManifest, CRDS } from "./resources.ts";
import { restoreSpec } from "./restore.ts";

const CASES: [string, Record<string, unknown>][] = [
  ["latest", { backup: "latest" }],
  ["a backup id", { backup: "20261124T031000Z-a1b2c3" }],
  ["a path", { backup: "../etc" }],
  ["an id in capitals", { backup: "20261124T031000Z-A1B2C3" }],
  ["databases", { backup: "latest", databases: ["shop", "ünïcode db", "with.dot"] }],
  ["no databases", { backup: "latest", databases: [] }],
  ["an empty database name", { backup: "latest", databases: [""] }],
  ["a control character", { backup: "latest", databases: ["a\u0001b"] }],
  ["DEL", { backup: "latest", databases: ["a\u007fb"] }],
  ["a long name", { backup: "latest", databases: ["x".repeat(255)] }],
  ["a too long name", { backup: "latest", databases: ["x".repeat(256)] }],
  ["tables", { backup: "latest", tables: ["shop.orders", "shop.with.dot", "a.b c"] }],
  ["a table without database", { backup: "latest", tables: ["orders"] }],
  ["a table with an empty database", { backup: "latest", tables: [".orders"] }],
  ["a table with an empty name", { backup: "latest", tables: ["shop."] }],
  ["a table with a newline", { backup: "latest", tables: ["shop.or\nders"] }],
  ["no tables", { backup: "latest", tables: [] }],
  ["a rename", { backup: "latest", renameDatabases: { shop: "shop_restored" } }],
  ["a rename into system", { backup: "latest", renameDatabases: { shop: "system" } }],
  ["a rename into information_schema", { backup: "latest", renameDatabases: { shop: "information_schema" } }],
  ["a rename from an empty name", { backup: "latest", renameDatabases: { "": "x" } }],
  ["a rename to an empty name", { backup: "latest", renameDatabases: { shop: "" } }],
  ["a rename with a control character", { backup: "latest", renameDatabases: { "a\tb": "x" } }],
  ["existingTables drop", { backup: "latest", existingTables: "drop" }],
  ["existingTables replace", { backup: "latest", existingTables: "replace" }],
  ["allowUnstagedDrop", { backup: "latest", existingTables: "drop", allowUnstagedDrop: true }],
  ["mergeShards", { backup: "latest", mergeShards: true }],
  ["an identity file", { backup: "latest", identityFile: "team/key.txt" }],
  ["an identity file with a dot segment", { backup: "latest", identityFile: "./key.txt" }],
  ["an identity file going up", { backup: "latest", identityFile: "../key.txt" }],
  ["an absolute identity file", { backup: "latest", identityFile: "/etc/key.txt" }],
  ["a hidden identity file", { backup: "latest", identityFile: ".key" }],
  ["a key instead of a file", { backup: "latest", identityFile: "AGE-SECRET-KEY-1QQQ" }],
  ["an unknown field", { backup: "latest", extra: 1 }],
];

type Schema = { type?: string; pattern?: string; minLength?: number; maxLength?: number; minItems?: number; maxItems?: number; maxProperties?: number; enum?: unknown[]; items?: Schema; properties?: Record<string, Schema>; additionalProperties?: Schema };

/** The structural schema's own checks (what the apiserver applies besides CEL), enough for these cases. */
function structural(s: Schema, v: unknown): boolean {
  if (s.type === "string") {
    if (typeof v !== "string") return false;
    const len = [...v].length;
    if (s.minLength !== undefined && len < s.minLength) return false;
    if (s.maxLength !== undefined && len > s.maxLength) return false;
    if (s.pattern && !new RegExp(s.pattern, "u").test(v)) return false;
    if (s.enum && !s.enum.includes(v)) return false;
    return true;
  }
  if (s.type === "boolean") return typeof v === "boolean";
  if (s.type === "array") {
    if (!Array.isArray(v)) return false;
    if ((s.minItems !== undefined && v.length < s.minItems) || (s.maxItems !== undefined && v.length > s.maxItems)) return false;
    return v.every((x) => structural(s.items!, x));
  }
  if (s.type === "object") {
    if (!v || typeof v !== "object") return false;
    const entries = Object.entries(v);
    if (s.maxProperties !== undefined && entries.length > s.maxProperties) return false;
    return entries.every(([k, x]) => (s.properties ? (s.properties[k] ? structural(s.properties[k], x) : false) : structural(s.additionalProperties!, x)));
  }
  return true;
}

const crd = crdManifest(CRDS.find((c) => c.kind === "Restore")!) as { spec: { versions: { schema: { openAPIV3Schema: { properties: { spec: Schema } } } }[] } };
const specSchema = crd.spec.versions[0]!.schema.openAPIV3Schema.properties.spec;

describe("Restore spec against the runner API's request body", () => {
  it.each(CASES)("%s: the controller's schema decides as the runner does", (_what, body) => {
    const runner = restoreBody.safeParse(body).success;
    expect(restoreSpec.safeParse({ backupDefinition: "orders", ...body }).success).toBe(runner);
  });

  it.each(CASES)("%s: the CRD's structural schema refuses only what the runner refuses", (_what, body) => {
    const runner = restoreBody.safeParse(body).success;
    // An unknown field is pruned by the apiserver, not refused; CEL rules (system targets, rename
    // sources, keys in identityFile) are checked against a real apiserver elsewhere.
    if (!runner && ("extra" in body || "renameDatabases" in body || String(body["identityFile"] ?? "").startsWith("AGE"))) return;
    const { extra: _e, ...known } = body;
    expect(structural(specSchema, { backupDefinition: "orders", ...known })).toBe(runner);
  });

  it("spells every field of the runner's body (and names the definition)", () => {
    expect(Object.keys(specSchema.properties!).sort()).toEqual(["backupDefinition", ...Object.keys(restoreBody.shape)].sort());
  });
});
