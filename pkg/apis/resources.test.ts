import { describe, expect, it } from "vitest";
import { z } from "zod";
import { toStructuralSchema } from "./resources.ts";

describe("toStructuralSchema", () => {
  it("keeps fields whose names are JSON Schema keywords (a field may be called id)", () => {
    const s = toStructuralSchema(z.object({ id: z.string(), $id: z.string().optional(), nested: z.object({ id: z.int() }) })) as { properties: Record<string, { properties?: Record<string, unknown> }>; required: string[] };
    expect(Object.keys(s.properties)).toEqual(["id", "$id", "nested"]);
    expect(s.required).toContain("id");
    expect(s.properties["nested"]!.properties).toHaveProperty("id");
  });
  it("refuses unions, which structural schemas cannot hold", () => {
    expect(() => toStructuralSchema(z.object({ a: z.union([z.string(), z.int()]) }))).toThrow(/structural schemas cannot hold/);
  });
});
