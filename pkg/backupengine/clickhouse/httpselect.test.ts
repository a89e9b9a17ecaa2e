// The raw-socket HTTP reader of the dump against a scripted local server:
// every body framing, split at every kind of boundary, errors, backpressure
// with pooled blocks, abort and timeouts.
import { once } from "node:events";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer as createTlsServer } from "node:tls";
import { Writable, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { afterEach, describe, expect, it } from "vitest";
import fc from "fast-check";
import { execa } from "execa";
import { BufferPool } from "../../storage/bufferpool.ts";
import { httpSelect, HttpProtocolError, type HttpEndpoint } from "./httpselect.ts";

interface Request {
  head: string;
  body: string;
}

/** A server that reads one request, then hands the socket to `respond`. */
async function serve(respond: (sock: Socket, req: Request) => void | Promise<void>): Promise<{ server: Server; ep: HttpEndpoint; requests: Request[] }> {
  const requests: Request[] = [];
  const server = createServer((sock) => {
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const head = buf.toString("latin1", 0, end);
      const len = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
      if (buf.length < end + 4 + len) return;
      sock.off("data", onData);
      const req = { head, body: buf.toString("utf8", end + 4, end + 4 + len) };
      requests.push(req);
      void respond(sock, req);
    };
    sock.on("data", onData);
    sock.on("error", () => undefined);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as AddressInfo).port;
  servers.push(server);
  return { server, requests, ep: { url: `http://127.0.0.1:${port}`, username: "backup", password: "pässword", timeoutMs: 10_000 } };
}

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.close();
  }
});

/** Writes `parts` one by one, each in its own event-loop turn, so they arrive as separate reads. */
async function writeParts(sock: Socket, parts: (string | Buffer)[], end = true): Promise<void> {
  for (const p of parts) {
    if (!sock.write(p)) await once(sock, "drain");
    await new Promise((r) => setTimeout(r, 1));
  }
  if (end) sock.end();
}

/** Cuts `b` at the given offsets. */
function cut(b: Buffer, at: number[]): Buffer[] {
  const pts = [...new Set(at.map((x) => Math.max(0, Math.min(b.length, x))))].sort((x, y) => x - y);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of [...pts, b.length]) {
    if (p > prev) out.push(b.subarray(prev, p));
    prev = p;
  }
  return out;
}

function chunkedBody(data: Buffer, sizes: number[]): Buffer {
  const parts: Buffer[] = [];
  let off = 0;
  let i = 0;
  while (off < data.length) {
    const n = Math.min(sizes[i++ % sizes.length]!, data.length - off);
    // odd but legal: upper-case hex, a chunk extension every third chunk
    parts.push(Buffer.from(`${n.toString(16).toUpperCase()}${i % 3 === 0 ? ";ext=1" : ""}\r\n`), data.subarray(off, off + n), Buffer.from("\r\n"));
    off += n;
  }
  parts.push(Buffer.from("0\r\nX-Trailer: yes\r\n\r\n"));
  return Buffer.concat(parts);
}

async function readAll(stream: Readable): Promise<{ data: Buffer; chunks: number[] }> {
  const parts: Buffer[] = [];
  await pipeline(
    stream,
    new Writable({
      write(c: Buffer, _e, cb) {
        parts.push(Buffer.from(c));
        cb();
      },
    }),
  );
  return { data: Buffer.concat(parts), chunks: parts.map((p) => p.length) };
}

const signal = () => new AbortController().signal;

function sample(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    b[i] = x >> 16;
  }
  return b;
}

describe("httpSelect", () => {
  it("sends one POST with the query as body, settings as parameters and Basic auth", async () => {
    const { ep, requests } = await serve((sock) => void writeParts(sock, ["HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]));
    const r = await httpSelect(ep, "SELECT 'ü' FORMAT Native", { compress: 1, max_threads: 2 }, signal());
    expect((await readAll(r.stream)).data.toString()).toBe("ok");
    const req = requests[0]!;
    expect(req.head).toMatch(/^POST \/\?compress=1&max_threads=2 HTTP\/1\.1\r\n/);
    expect(req.head).toContain(`Authorization: Basic ${Buffer.from("backup:pässword").toString("base64")}`);
    expect(req.head).toContain("Connection: close");
    expect(req.body).toBe("SELECT 'ü' FORMAT Native");
  });

  it("decodes chunked bodies split anywhere, in blocks of blockBytes", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 60_000 }),
        fc.array(fc.integer({ min: 1, max: 9000 }), { minLength: 1, maxLength: 5 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        async (n, sizes, cuts) => {
          const data = sample(n, n + 1);
          const body = chunkedBody(data, sizes);
          const resp = Buffer.concat([Buffer.from("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-ClickHouse-Summary: {}\r\n\r\n"), body]);
          const { ep } = await serve((sock) => void writeParts(sock, cut(resp, cuts.map((c) => c % (resp.length + 1)))));
          const r = await httpSelect(ep, "SELECT 1", {}, signal(), { blockBytes: 4096 });
          expect(r.headers["x-clickhouse-summary"]).toBe("{}");
          const got = await readAll(r.stream);
          expect(got.data.equals(data)).toBe(true);
          expect(got.chunks.slice(0, -1).every((c) => c === 4096)).toBe(true);
        },
      ),
      { numRuns: 25 },
    );
  });

  it("reads Content-Length bodies and ClickHouse 18.16's 4 KiB chunks; refuses data whose end cannot be told", async () => {
    const data = sample(100_000, 3);
    for (const resp of [
      Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${data.length}\r\n\r\n`), data]),
      Buffer.concat([Buffer.from("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), chunkedBody(data, [4096])]),
    ]) {
      const { ep } = await serve((sock) => void writeParts(sock, cut(resp, [10, 30_000, 30_001])));
      const r = await httpSelect(ep, "SELECT 1", {}, signal());
      expect((await readAll(r.stream)).data.equals(data)).toBe(true);
    }
    // close-delimited: a cut connection would look like the end of the data
    const { ep } = await serve((sock) => void writeParts(sock, [Buffer.concat([Buffer.from("HTTP/1.0 200 OK\r\n\r\n"), data])]));
    await expect(httpSelect(ep, "SELECT 1", {}, signal())).rejects.toThrow(/cut connection/);
    // an error message may come that way
    const { ep: ep2 } = await serve((sock) => void writeParts(sock, ["HTTP/1.0 500 Internal Server Error\r\n\r\nCode: 62. DB::Exception: Syntax error (SYNTAX_ERROR)"]));
    await expect(httpSelect(ep2, "SELEC 1", {}, signal())).rejects.toThrow(/Syntax error/);
  });

  it("speaks TLS", async () => {
    const dir = await mkdtemp(join(tmpdir(), "httpselect-tls-"));
    try {
      const key = join(dir, "key.pem");
      const cert = join(dir, "cert.pem");
      try {
        await execa("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"]);
      } catch {
        return; // no openssl (scripts/setup.sh installs it): nothing to test with
      }
      const data = sample(300_000, 4);
      const server = createTlsServer({ key: await readFile(key), cert: await readFile(cert) }, (sock) => {
        sock.once("data", () => void writeParts(sock as unknown as Socket, [Buffer.from("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), chunkedBody(data, [4096])]));
      });
      server.listen(0, "127.0.0.1");
      await once(server, "listening");
      servers.push(server as unknown as Server);
      const port = (server.address() as AddressInfo).port;
      const r = await httpSelect({ url: `https://localhost:${port}`, username: "u", password: "p", timeoutMs: 10_000, ca: await readFile(cert) }, "SELECT 1", {}, signal(), { blockBytes: 65536 });
      expect((await readAll(r.stream)).data.equals(data)).toBe(true);
      // an untrusted certificate is refused
      const err = await httpSelect({ url: `https://localhost:${port}`, username: "u", password: "p", timeoutMs: 10_000 }, "SELECT 1", {}, signal()).catch((e: unknown) => e);
      expect((err as { code?: unknown }).code).toBe("DEPTH_ZERO_SELF_SIGNED_CERT");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("rejects with the server's error, parsed like @clickhouse/client does", async () => {
    const msg = "Code: 60, e.displayText() = DB::Exception: Table x.y doesn't exist., e.what() = DB::Exception\n";
    const { ep } = await serve((sock) => void writeParts(sock, [`HTTP/1.1 404 Not Found\r\nContent-Length: ${msg.length}\r\n\r\n`, msg]));
    const err = await httpSelect(ep, "SELECT 1", {}, signal()).catch((e: unknown) => e);
    expect((err as Error).message).toContain("Table x.y doesn't exist");
    expect(String((err as { code?: unknown }).code ?? /Code: (\d+)/.exec((err as Error).message)?.[1])).toBe("60");
  });

  it("fails the stream when the connection ends inside the body", async () => {
    const data = sample(50_000, 5);
    const body = chunkedBody(data, [4096]);
    const { ep } = await serve((sock) => void writeParts(sock, ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", body.subarray(0, 20_000)]));
    const r = await httpSelect(ep, "SELECT 1", {}, signal());
    const err = await readAll(r.stream).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/premature close/);
    expect((err as { code?: unknown }).code).toBe("ERR_STREAM_PREMATURE_CLOSE");
  });

  it("rejects malformed responses", async () => {
    for (const resp of ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "SSH-2.0-OpenSSH\r\n\r\n", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"]) {
      const { ep } = await serve((sock) => void writeParts(sock, [resp], false));
      const err = await httpSelect(ep, "SELECT 1", {}, signal())
        .then((r) => readAll(r.stream))
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(HttpProtocolError);
    }
  });

  it("applies backpressure: a slow consumer keeps the number of pooled blocks small", async () => {
    const data = sample(4 * 1024 * 1024, 9);
    const { ep } = await serve(
      (sock) => void writeParts(sock, ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", ...cut(chunkedBody(data, [4096]), Array.from({ length: 64 }, (_, i) => i * 70_000))]),
    );
    // (poisoned: the reader must not write into a block once it is handed back)
    const pool = new BufferPool(64 * 1024, 8, { poisonOnRelease: true });
    const r = await httpSelect(ep, "SELECT 1", {}, signal(), { pool, readBytes: 16 * 1024 });
    const parts: Buffer[] = [];
    await pipeline(
      r.stream,
      new Writable({
        highWaterMark: 1,
        write(c: Buffer, _e, cb) {
          parts.push(Buffer.from(c));
          pool.release(c);
          setTimeout(cb, 1);
        },
      }),
    );
    expect(Buffer.concat(parts).equals(data)).toBe(true);
    // 64 blocks went through; without backpressure every one would have been a new buffer.
    expect(pool.allocated).toBeLessThanOrEqual(6);
  });

  it("an abort closes the connection and fails the stream with the reason", async () => {
    let closed: Promise<unknown> | undefined;
    const { ep } = await serve((sock) => {
      closed = once(sock, "close");
      void writeParts(sock, ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "5\r\nhello\r\n"], false);
    });
    const ac = new AbortController();
    const r = await httpSelect(ep, "SELECT 1", {}, ac.signal, { blockBytes: 4096 });
    const reading = readAll(r.stream).catch((e: unknown) => e);
    ac.abort(new Error("stop (test)"));
    expect(((await reading) as Error).message).toBe("stop (test)");
    await closed;
    // before the response: the request itself rejects
    const ac2 = new AbortController();
    const pending = httpSelect(ep, "SELECT 1", {}, ac2.signal).catch((e: unknown) => e);
    ac2.abort();
    expect(((await pending) as Error).name).toBe("AbortError");
  });

  it("times out a server that does not answer, and reports a refused connection", async () => {
    const { ep } = await serve(() => undefined);
    const err = await httpSelect({ ...ep, timeoutMs: 100 }, "SELECT 1", {}, signal()).catch((e: unknown) => e);
    expect((err as Error).message).toBe("Timeout error.");
    const { server, ep: ep2 } = await serve(() => undefined);
    server.close();
    await once(server, "close");
    const refused = await httpSelect(ep2, "SELECT 1", {}, signal()).catch((e: unknown) => e);
    expect((refused as { code?: unknown }).code).toBe("ECONNREFUSED");
  });
});
