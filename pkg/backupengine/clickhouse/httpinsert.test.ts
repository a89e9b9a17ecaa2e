// httpInsert against a local HTTP server that plays ClickHouse: what the
// request carries, that every chunk goes back exactly once and only after
// it was written (a poisoned pool would corrupt what the server receives),
// and how refusals, aborts, stalls and a failing body end. The real server
// is exercised by every restore test under test/.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { BufferPool } from "../../storage/bufferpool.ts";
import { clickhouseCode } from "./errors.ts";
import { httpInsert } from "./httpinsert.ts";
import type { HttpEndpoint } from "./httpselect.ts";

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<HttpEndpoint> {
  const s = createServer(handler);
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(s.address() as AddressInfo).port}`, username: "backup", password: "pa:ss wörd", timeoutMs: 5000 };
}

/** A body in pooled 256 KiB blocks of seeded bytes (poisoned: a block handed back too early corrupts what is sent). */
function pooledBody(total: number, pool: BufferPool): { body: Readable; data: Buffer; chunks: () => number } {
  const data = Buffer.alloc(total);
  for (let i = 0; i < total; i++) data[i] = (i * 31 + (i >> 9)) & 0xff;
  let n = 0;
  async function* gen(): AsyncGenerator<Buffer> {
    for (let off = 0; off < total; off += pool.size) {
      const b = pool.take();
      const len = data.copy(b, 0, off, off + pool.size);
      n++;
      yield b.subarray(0, len);
    }
  }
  return { body: Readable.from(gen(), { objectMode: false }), data, chunks: () => n };
}

const readAll = async (req: IncomingMessage) => Buffer.concat(await req.toArray());

describe("httpInsert", () => {
  it("POSTs the query, settings and credentials; the server gets every byte; each chunk goes back once, after it was written", async () => {
    let got: { url: string; auth: string | undefined; te: string | undefined; body: Buffer } | undefined;
    const ep = await serve(async (req, res) => {
      const body = await readAll(req);
      got = { url: req.url ?? "", auth: req.headers.authorization, te: req.headers["transfer-encoding"], body };
      res.end();
    });
    const pool = new BufferPool(256 * 1024, 4, { poisonOnRelease: true });
    const { body, data, chunks } = pooledBody(5 * 1024 * 1024 + 123, pool);
    await httpInsert(ep, "INSERT INTO db.t (a, `b c`) FORMAT Native", { insert_deduplicate: 0, decompress: 1 }, body, AbortSignal.timeout(10_000), { release: pool.release });
    expect(got!.body.equals(data)).toBe(true);
    const u = new URL(got!.url, "http://x");
    expect(u.searchParams.get("query")).toBe("INSERT INTO db.t (a, `b c`) FORMAT Native");
    expect(u.searchParams.get("insert_deduplicate")).toBe("0");
    expect(u.searchParams.get("decompress")).toBe("1");
    expect(Buffer.from(got!.auth!.replace(/^Basic /, ""), "base64").toString()).toBe("backup:pa:ss wörd");
    expect(got!.te).toBe("chunked");
    expect(pool.released).toBe(chunks());
    expect(pool.allocated).toBeLessThan(chunks()); // blocks were reused
  });

  it("speaks TLS with the endpoint's CA, and refuses an untrusted certificate", async () => {
    const dir = await mkdtemp(join(tmpdir(), "httpinsert-tls-"));
    try {
      const key = join(dir, "key.pem");
      const cert = join(dir, "cert.pem");
      // (openssl comes with scripts/setup.sh)
      await execa("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"]);
      let got: Buffer | undefined;
      const s = createHttpsServer({ key: await readFile(key), cert: await readFile(cert) }, async (req, res) => {
        got = await readAll(req);
        res.end();
      });
      servers.push(s);
      await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
      const url = `https://localhost:${(s.address() as AddressInfo).port}`;
      const data = Buffer.alloc(3 * 1024 * 1024 + 5, 7);
      await httpInsert({ url, username: "u", password: "p", timeoutMs: 10_000, ca: await readFile(cert) }, "INSERT INTO t FORMAT Native", {}, Readable.from([data]), AbortSignal.timeout(10_000));
      expect(got!.equals(data)).toBe(true);
      const err = (await httpInsert({ url, username: "u", password: "p", timeoutMs: 10_000 }, "INSERT INTO t FORMAT Native", {}, Readable.from([data]), AbortSignal.timeout(10_000)).then(
        () => undefined,
        (e: unknown) => e,
      )) as { code?: unknown };
      expect(err.code).toBe("DEPTH_ZERO_SELF_SIGNED_CERT");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("a refusal the server sends before it has read the data comes back as ClickHouse's error, and the body is destroyed", async () => {
    const ep = await serve((req, res) => {
      req.once("data", () => {
        res.writeHead(500, { "X-ClickHouse-Exception-Code": "27" });
        res.end("Code: 27, e.displayText() = DB::Exception: Cannot parse input: expected , before: xyz (version 18.16.1)\n");
        req.socket.destroy();
      });
    });
    const pool = new BufferPool(256 * 1024, 4);
    const { body } = pooledBody(64 * 1024 * 1024, pool);
    const err = (await httpInsert(ep, "INSERT INTO t FORMAT Native", {}, body, AbortSignal.timeout(10_000), { release: pool.release }).then(
      () => undefined,
      (e: unknown) => e,
    )) as Error;
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toMatch(/Cannot parse input/);
    expect(clickhouseCode(err)).toBe(27);
    expect(body.destroyed).toBe(true);
  });

  it("an answer without a message and a 2xx before the end of the data are errors too", async () => {
    const bare = await serve((_req, res) => {
      res.writeHead(503);
      res.end();
    });
    await expect(httpInsert(bare, "INSERT INTO t FORMAT Native", {}, Readable.from([Buffer.alloc(10)]), AbortSignal.timeout(5000))).rejects.toThrow(/HTTP 503 without a message/);
    const early = await serve((req, res) => {
      req.once("data", () => res.end());
    });
    const never = new Readable({ read() {} });
    never.push(Buffer.alloc(1000));
    await expect(httpInsert(early, "INSERT INTO t FORMAT Native", {}, never, AbortSignal.timeout(5000))).rejects.toThrow(/before it had all of the data/);
  });

  it("abort: rejects with the reason and closes the connection", async () => {
    let seen!: () => void;
    const arrived = new Promise<void>((r) => (seen = r));
    let socketClosed: Promise<unknown> | undefined;
    const ep = await serve((req) => {
      req.resume();
      // (not events.once: the server's parser errors on the cut-off chunked body first, and once() would reject on that)
      socketClosed = new Promise((r) => req.socket.once("close", r));
      seen();
    });
    const ac = new AbortController();
    const body = new Readable({ read() {} });
    body.push(Buffer.alloc(100_000));
    const p = httpInsert(ep, "INSERT INTO t FORMAT Native", {}, body, ac.signal);
    // Aborted once the request is under way at the server (not after a fixed time, which a slow machine may not reach).
    await arrived;
    ac.abort(new Error("cancelled by the user"));
    await expect(p).rejects.toThrow("cancelled by the user");
    await socketClosed; // the connection is closed: this would hang (and time out) if it were not
    expect(body.destroyed).toBe(true);
  });

  it("a server that stops reading: the socket timeout fails the request", async () => {
    const ep = await serve(() => {
      // accepts the request and reads nothing
    });
    const body = Readable.from((function* () {
      for (let i = 0; i < 1000; i++) yield Buffer.alloc(1024 * 1024);
    })());
    const err = (await httpInsert({ ...ep, timeoutMs: 500 }, "INSERT INTO t FORMAT Native", {}, body, AbortSignal.timeout(20_000)).then(
      () => undefined,
      (e: unknown) => e,
    )) as Error & { code?: string };
    expect(err.code).toBe("ETIMEDOUT");
  });

  it("a failing body (the storage) rejects with its error and ends the request", async () => {
    let serverSawEnd = false;
    const ep = await serve((req) => {
      req.resume();
      req.once("end", () => (serverSawEnd = true));
    });
    const body = new Readable({ read() {} });
    body.push(Buffer.alloc(1000));
    setTimeout(() => body.destroy(new Error("checksum mismatch")), 100);
    await expect(httpInsert(ep, "INSERT INTO t FORMAT Native", {}, body, AbortSignal.timeout(5000))).rejects.toThrow("checksum mismatch");
    await new Promise((r) => setTimeout(r, 100));
    // the body was never ended: ClickHouse gets a cut request, never a complete INSERT of partial data
    expect(serverSawEnd).toBe(false);
  });
});
