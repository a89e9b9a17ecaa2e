// The S3 store's limits without a server: maxObjectBytes from partSize and
// maxParts, and a multipart upload that never tries part maxParts + 1.
// (test/storage.test.ts runs the store against MinIO.)
import type { S3Client } from "@aws-sdk/client-s3";
import { describe, expect, it } from "vitest";
import { StorageError } from "./errors.ts";
import { FIRST_BUFFER_BYTES, multipartUpload, PartLimitError } from "./multipart.ts";
import { createS3Store, MAX_OBJECT_SIZE, MAX_PARTS } from "./s3.ts";
import { createErrorMapper } from "./s3/errors.ts";

const MiB = 1024 * 1024;
const base = { region: "us-east-1", bucket: "b", endpoint: "http://127.0.0.1:1", accessKeyId: "id", secretAccessKey: "secret-value" };

async function* zeros(total: number, chunk = MiB): AsyncGenerator<Uint8Array> {
  for (let off = 0; off < total; off += chunk) yield Buffer.alloc(Math.min(chunk, total - off));
}

/** An S3Client stand-in that records the commands sent and answers like S3 does. */
function fakeClient(): { client: S3Client; sent: { name: string; partNumber?: number | undefined }[] } {
  const sent: { name: string; partNumber?: number | undefined }[] = [];
  const client = {
    send: async (cmd: { constructor: { name: string }; input: { PartNumber?: number } }) => {
      const name = cmd.constructor.name;
      sent.push({ name, partNumber: cmd.input.PartNumber });
      await new Promise((r) => setImmediate(r));
      if (name === "CreateMultipartUploadCommand") return { UploadId: "up-1" };
      if (name === "UploadPartCommand") return { ETag: `"etag-${cmd.input.PartNumber}"` };
      return {};
    },
  } as unknown as S3Client;
  return { client, sent };
}

describe("S3 store limits", () => {
  it("maxObjectBytes is partSize × maxParts, at most 5 TiB", () => {
    const stores = [
      createS3Store(base),
      createS3Store({ ...base, partSizeBytes: 5 * MiB, maxParts: 3 }),
      createS3Store({ ...base, partSizeBytes: 5 * 1024 * MiB }),
      createS3Store({ ...base, partSizeBytes: 5 * MiB, maxParts: 1 }),
    ];
    try {
      expect(stores.map((s) => s.maxObjectBytes)).toEqual([16 * MiB * MAX_PARTS, 15 * MiB, MAX_OBJECT_SIZE, 5 * MiB]);
      expect(MAX_OBJECT_SIZE).toBe(5 * 1024 * 1024 * MiB);
    } finally {
      for (const s of stores) s.destroy();
    }
  });

  it("maxParts must be an integer in [1, 10000]", () => {
    for (const bad of [0, -1, 1.5, 10_001]) {
      expect(() => createS3Store({ ...base, maxParts: bad })).toThrow(/maxParts must be an integer in \[1, 10000\]/);
    }
  });

  it("a multipart upload of exactly partSize × maxParts completes with maxParts parts", async () => {
    const { client, sent } = fakeClient();
    const r = await multipartUpload({ client, bucket: "b", key: "k", body: zeros(10 * MiB), partSize: 5 * MiB, maxParts: 2, queueSize: 2 });
    expect(r.parts).toBe(2);
    expect(sent.map((s) => s.name)).toEqual([
      "CreateMultipartUploadCommand",
      "UploadPartCommand",
      "UploadPartCommand",
      "CompleteMultipartUploadCommand",
    ]);
  });

  it("one byte more fails before part maxParts + 1 is sent, and the upload is aborted", async () => {
    const { client, sent } = fakeClient();
    const err = await multipartUpload({ client, bucket: "b", key: "k", body: zeros(10 * MiB + 1), partSize: 5 * MiB, maxParts: 2, queueSize: 2 }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PartLimitError);
    expect((err as Error).message).toMatch(/larger than 2 parts of 5242880 bytes/);
    expect((err as { uploadId?: string }).uploadId).toBe("up-1");
    expect(Math.max(...sent.map((s) => s.partNumber ?? 0))).toBe(2);
    expect(sent.map((s) => s.name)).toEqual([
      "CreateMultipartUploadCommand",
      "UploadPartCommand",
      "UploadPartCommand",
      "AbortMultipartUploadCommand",
    ]);
  });

  it("with maxParts 1 an object of up to one part is a single PUT; more fails", async () => {
    const small = fakeClient();
    await multipartUpload({ client: small.client, bucket: "b", key: "k", body: zeros(MiB), partSize: 5 * MiB, maxParts: 1, queueSize: 1 });
    expect(small.sent.map((s) => s.name)).toEqual(["PutObjectCommand"]);
    const big = fakeClient();
    const err = await multipartUpload({ client: big.client, bucket: "b", key: "k", body: zeros(6 * MiB), partSize: 5 * MiB, maxParts: 1, queueSize: 1 }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PartLimitError);
    expect(big.sent.filter((s) => s.name === "UploadPartCommand").length).toBe(1);
  });

  it("every size around the small first buffer and the part size uploads its bytes exactly (PUT below a part, else parts of partSize)", async () => {
    const partSize = 256 * 1024;
    for (const total of [0, 1, FIRST_BUFFER_BYTES - 1, FIRST_BUFFER_BYTES, FIRST_BUFFER_BYTES + 1, partSize - 1, partSize, partSize + 1, 3 * partSize + 17]) {
      for (const chunk of [1000, 70_000, 300_000]) {
        const data = Buffer.alloc(total);
        for (let i = 0; i < total; i++) data[i] = (i * 7 + (i >> 8)) & 0xff;
        const bodies: { part?: number; body: Buffer }[] = [];
        const client = {
          send: async (cmd: { constructor: { name: string }; input: { PartNumber?: number; Body?: Uint8Array } }) => {
            if (cmd.input.Body) bodies.push({ part: cmd.input.PartNumber, body: Buffer.from(cmd.input.Body) });
            if (cmd.constructor.name === "CreateMultipartUploadCommand") return { UploadId: "up-1" };
            return { ETag: "e" };
          },
        } as unknown as S3Client;
        async function* body(): AsyncGenerator<Uint8Array> {
          for (let off = 0; off < total; off += chunk) yield data.subarray(off, off + chunk);
        }
        await multipartUpload({ client, bucket: "b", key: "k", body: body(), partSize, queueSize: 2 });
        const what = `${total} bytes in chunks of ${chunk}`;
        bodies.sort((a, b) => (a.part ?? 0) - (b.part ?? 0));
        expect(Buffer.concat(bodies.map((b) => b.body)).equals(data), what).toBe(true);
        expect(bodies.length, what).toBe(total <= partSize ? 1 : Math.ceil(total / partSize));
        expect(bodies.slice(0, -1).every((b) => b.body.length === partSize), what).toBe(true);
      }
    }
  });

  it("the part limit maps to a terminal StorageError naming the store", () => {
    const { toStorageError } = createErrorMapper({ where: "s3://b @ http://x", bucket: "b", secrets: [] });
    const e = toStorageError("put", "t/data.bin", new PartLimitError(3, 5 * MiB));
    expect(e).toBeInstanceOf(StorageError);
    expect(e.retryable).toBe(false);
    expect(e.message).toMatch(/^put "t\/data.bin": the object is larger than 3 parts of 5242880 bytes .*putSplit.* \(s3:\/\/b @ http:\/\/x\)$/);
  });
});
