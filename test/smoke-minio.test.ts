// Smoke test: MinIO of the test environment is a real S3.
import { Readable } from "node:stream";
import { randomBytes, createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { startMinio, assertPortsClosed, type MinioServer } from "./env/index.ts";

describe("MinIO", () => {
  let minio: MinioServer;
  let s3: S3Client;
  let bucket: string;
  beforeAll(async () => {
    minio = await startMinio();
    s3 = minio.s3();
    bucket = await minio.createBucket();
  });
  afterAll(async () => {
    s3?.destroy();
    await minio?.stop();
  });

  it("puts, gets, lists and deletes objects", async () => {
    const body = randomBytes(1000);
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: "a/one", Body: body }));
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: "a/two", Body: "hello" }));
    const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "a/one" }));
    expect(Buffer.from(await got.Body!.transformToByteArray())).toEqual(body);
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: "a/" }));
    expect(listed.Contents?.map((o) => o.Key)).toEqual(["a/one", "a/two"]);
    await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: "a/one" }));
    const after = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: "a/" }));
    expect(after.Contents?.map((o) => o.Key)).toEqual(["a/two"]);
  });

  it("streams a multipart upload of more than 3 parts", async () => {
    const partSize = 5 * 1024 * 1024;
    const hash = createHash("sha256");
    let total = 0;
    async function* generate() {
      for (let i = 0; i < 17; i++) {
        const chunk = randomBytes(1024 * 1024);
        hash.update(chunk);
        total += chunk.length;
        yield chunk;
      }
    }
    let parts = 0;
    const upload = new Upload({ client: s3, params: { Bucket: bucket, Key: "big/blob", Body: Readable.from(generate()) }, partSize, queueSize: 2 });
    upload.on("httpUploadProgress", (p) => {
      parts = Math.max(parts, p.part ?? 0);
    });
    await upload.done();
    expect(parts).toBeGreaterThan(3);
    const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "big/blob" }));
    const h2 = createHash("sha256");
    let n = 0;
    for await (const c of got.Body as AsyncIterable<Uint8Array>) {
      h2.update(c);
      n += c.length;
    }
    expect(n).toBe(total);
    expect(h2.digest("hex")).toBe(hash.digest("hex"));
    const mp = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    expect(mp.Uploads ?? []).toEqual([]);
  });

  it("leaves no process and no open port after stop", async () => {
    const other = await startMinio();
    const pid = other.pid();
    await other.stop();
    expect(await assertPortsClosed(other.ports)).toEqual([]);
    expect(() => process.kill(pid, 0)).toThrow();
  });
});
