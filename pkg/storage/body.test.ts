import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { hashBody } from "./body.ts";

describe("hashBody", () => {
  it("a store that fails after the body has ended (its last write) destroys the stream without an uncaught 'error'", async () => {
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown) => uncaught.push(err);
    process.on("uncaughtException", onUncaught);
    try {
      const hashed = hashBody(Readable.from([Buffer.from("abc"), Buffer.from("def")]), { op: "put", key: "k" });
      const seen: Uint8Array[] = [];
      for await (const c of hashed.stream.iterator({ destroyOnReturn: false })) seen.push(c as Uint8Array);
      expect(Buffer.concat(seen).toString()).toBe("abcdef");
      // the body has ended and its pipeline let go of the stream; now the write of the last chunk fails
      hashed.destroy(Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" }));
      await new Promise((r) => setTimeout(r, 20));
      expect(hashed.stream.destroyed).toBe(true);
      expect(uncaught).toEqual([]);
    } finally {
      process.off("uncaughtException", onUncaught);
    }
  });
});
