// Process plumbing for the test environment: free ports, temp dirs, managed
// child processes that are always stopped, readiness polling.
import { createServer, connect } from "node:net";
import { mkdtemp, rm } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa, type ResultPromise } from "execa";

/** Listens on 127.0.0.1:port (0: the kernel picks) and closes again: the port, or undefined if it is taken. */
function tryPort(port: number): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once("error", (err: NodeJS.ErrnoException) => (err.code === "EADDRINUSE" || err.code === "EACCES" ? resolve(undefined) : reject(err)));
    srv.listen(port, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => resolve(addr && typeof addr === "object" ? addr.port : undefined));
    });
  });
}

/** The lowest local port the kernel gives outgoing connections (Linux), if it can be read. */
function ephemeralLow(): number | undefined {
  try {
    const lo = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);
    return lo > 0 ? lo : undefined;
  } catch {
    return undefined;
  }
}

const handedOut = new Set<number>();

/**
 * A TCP port on 127.0.0.1 that was free a moment ago. Servers are started with it a little later, so it is
 * taken from below the kernel's ephemeral range where there is room: a port the kernel picks (listen on 0)
 * is one it also gives to outgoing connections, and the many connections of a test run took such a port
 * before the server could bind it ("Address already in use"). Random within the range, never the same port
 * twice in one process; the kernel's pick when no such range is known.
 */
export async function freePort(): Promise<number> {
  const lo = 10_000;
  const hi = (ephemeralLow() ?? 0) - 1;
  if (hi - lo >= 1000) {
    for (let i = 0; i < 200; i++) {
      const candidate = lo + Math.floor(Math.random() * (hi - lo + 1));
      if (handedOut.has(candidate)) continue;
      const port = await tryPort(candidate);
      if (port !== undefined) {
        handedOut.add(port);
        return port;
      }
    }
  }
  const port = await tryPort(0);
  if (port === undefined) throw new Error("freePort: no free port");
  return port;
}

/** True if something accepts TCP connections on 127.0.0.1:port. */
export function isPortOpen(port: number, host = "127.0.0.1"): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ port, host });
    const done = (open: boolean) => {
      sock.destroy();
      resolve(open);
    };
    sock.setTimeout(1000, () => done(false));
    sock.once("connect", () => done(true));
    sock.once("error", () => done(false));
  });
}

export async function makeTempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `chbackup-${prefix}-`));
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
}

export interface ManagedProcess {
  readonly name: string;
  readonly pid: number;
  readonly logFile: string;
  /** True once the process has exited. */
  exited(): boolean;
  /** The last lines of the process's output, for error messages. */
  logTail(lines?: number): string;
  /** SIGTERM, then SIGKILL after graceMs; resolves when the process is gone. */
  stop(graceMs?: number): Promise<void>;
  /** SIGKILL now (fault injection); resolves when the process is gone. */
  kill(): Promise<void>;
}

export interface StartOptions {
  cwd?: string;
  env?: Record<string, string>;
  logFile: string;
}

export function startProcess(name: string, file: string, args: string[], opts: StartOptions): ManagedProcess {
  const child: ResultPromise = execa(file, args, {
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
    env: opts.env ?? {},
    extendEnv: true,
    stdin: "ignore",
    stdout: { file: opts.logFile, append: true },
    stderr: { file: opts.logFile, append: true },
    // execa kills the child when this (test) process exits, so no server outlives a crashed run.
    cleanup: true,
    reject: false,
  });
  let done = false;
  const finished = child.then(() => {
    done = true;
  });
  if (child.pid === undefined) throw new Error(`${name}: failed to start ${file}`);
  const pid = child.pid;
  const logTail = (lines = 30) => {
    try {
      return readFileSync(opts.logFile, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "";
    }
  };
  const stop = async (graceMs = 10_000) => {
    if (done) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    await finished;
    clearTimeout(timer);
  };
  return {
    name,
    pid,
    logFile: opts.logFile,
    exited: () => done,
    logTail,
    stop,
    kill: async () => {
      if (done) return;
      child.kill("SIGKILL");
      await finished;
    },
  };
}

/** Polls `check` until it returns true; fails early with the log tail if the process died. */
export async function waitUntil(
  what: string,
  check: () => Promise<boolean>,
  opts: { timeoutMs?: number; intervalMs?: number; proc?: ManagedProcess } = {},
): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (opts.proc?.exited()) {
      throw new Error(`${what}: ${opts.proc.name} exited during start-up; log tail:\n${opts.proc.logTail()}`);
    }
    try {
      if (await check()) return;
    } catch (err: unknown) {
      lastError = err;
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 200));
  }
  const tail = opts.proc ? `; log tail:\n${opts.proc.logTail()}` : "";
  throw new Error(`${what}: not ready after ${opts.timeoutMs ?? 60_000} ms${tail}`, { cause: lastError });
}

/** Ports a started server listens on, to prove they are closed after teardown. */
export async function assertPortsClosed(ports: readonly number[]): Promise<number[]> {
  const open: number[] = [];
  for (const p of ports) if (await isPortOpen(p)) open.push(p);
  return open;
}
