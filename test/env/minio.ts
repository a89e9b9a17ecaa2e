// MinIO (real S3) as a local process: built once from the Go module proxy and
// cached by version (scripts/build-minio.sh), generated credentials, a bucket
// per suite.
import { randomBytes } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { S3Client, CreateBucketCommand } from "@aws-sdk/client-s3";
import { minioBinary, readVersions } from "./tools.ts";
import { freePort, makeTempDir, removeDir, startProcess, waitUntil, type ManagedProcess } from "./proc.ts";

export interface MinioServer {
  readonly endpoint: string;
  readonly region: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly port: number;
  readonly ports: readonly number[];
  readonly version: string;
  pid(): number;
  /** A fresh S3 client with the root credentials (path-style). */
  s3(): S3Client;
  /** Creates a bucket (random name unless given) and returns its name. */
  createBucket(name?: string): Promise<string>;
  /** SIGKILL (fault injection); start() brings it back with the same data and port. */
  kill(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export async function startMinio(): Promise<MinioServer> {
  const bin = minioBinary();
  const dir = await makeTempDir("minio");
  const data = join(dir, "data");
  await mkdir(data, { recursive: true });
  const [port, consolePort] = [await freePort(), await freePort()];
  const accessKeyId = `ak${randomBytes(8).toString("hex")}`;
  const secretAccessKey = randomBytes(20).toString("hex");
  const region = "us-east-1";
  const endpoint = `http://127.0.0.1:${port}`;
  let proc: ManagedProcess | undefined;
  const start = async () => {
    proc = startProcess("minio", bin, ["server", data, "--address", `127.0.0.1:${port}`, "--console-address", `127.0.0.1:${consolePort}`, "--quiet"], {
      cwd: dir,
      logFile: join(dir, "minio.log"),
      env: {
        MINIO_ROOT_USER: accessKeyId,
        MINIO_ROOT_PASSWORD: secretAccessKey,
        MINIO_REGION: region,
        MINIO_BROWSER: "off",
        MINIO_UPDATE: "off",
        MINIO_CI_CD: "1",
      },
    });
    const p = proc;
    await waitUntil(
      `minio on ${endpoint}`,
      async () => (await fetch(`${endpoint}/minio/health/ready`, { signal: AbortSignal.timeout(1000) })).ok,
      { proc: p, timeoutMs: 60_000 },
    );
  };
  await start();
  const s3 = () =>
    new S3Client({ endpoint, region, forcePathStyle: true, credentials: { accessKeyId, secretAccessKey } });
  return {
    endpoint,
    region,
    accessKeyId,
    secretAccessKey,
    port,
    ports: [port],
    version: readVersions().MINIO_VERSION,
    pid: () => proc?.pid ?? -1,
    s3,
    createBucket: async (name) => {
      const bucket = name ?? `test-${randomBytes(6).toString("hex")}`;
      const c = s3();
      try {
        await c.send(new CreateBucketCommand({ Bucket: bucket }));
      } finally {
        c.destroy();
      }
      return bucket;
    },
    kill: async () => {
      await proc?.kill();
    },
    start,
    stop: async () => {
      await proc?.stop(10_000);
      await removeDir(dir);
    },
  };
}
