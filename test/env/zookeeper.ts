// ZooKeeper (Debian's zookeeperd 3.8: only its jars and java, never its
// service) as a local process on 127.0.0.1 with a free client port and its own
// data dir: the coordination service of the test ClickHouse cluster.
import { mkdir, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import { freePort, makeTempDir, removeDir, startProcess, waitUntil, type ManagedProcess } from "./proc.ts";
import { javaBinary, zookeeperJar } from "./tools.ts";

export interface ZooKeeperServer {
  readonly host: string;
  readonly port: number;
  readonly dir: string;
  readonly ports: readonly number[];
  pid(): number;
  /** Sends a four-letter command ("ruok", "stat") and returns the answer. */
  fourLetter(cmd: "ruok" | "stat"): Promise<string>;
  stop(): Promise<void>;
}

/** java and the ZooKeeper class path of Debian's zookeeper package (ZOOKEEPER_JAR / JAVA_BIN override). */
export function zookeeperTools(): { java: string; classpath: string[] } {
  return { java: javaBinary(), classpath: [zookeeperJar()] };
}

function fourLetter(port: number, cmd: string, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect({ port, host: "127.0.0.1" });
    let out = "";
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`zookeeper ${cmd}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.once("connect", () => sock.write(cmd));
    sock.on("data", (d: Buffer) => {
      out += d.toString("utf8");
    });
    sock.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    sock.once("close", () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

export async function startZooKeeper(): Promise<ZooKeeperServer> {
  const { java, classpath } = zookeeperTools();
  const dir = await makeTempDir("zookeeper");
  const port = await freePort();
  const data = join(dir, "data");
  await mkdir(data, { recursive: true });
  await writeFile(
    join(dir, "zoo.cfg"),
    [
      "tickTime=2000",
      `dataDir=${data}`,
      `clientPort=${port}`,
      "clientPortAddress=127.0.0.1",
      "admin.enableServer=false",
      "4lw.commands.whitelist=ruok,stat",
      // one server: no quorum ports; snapshots kept small
      "autopurge.snapRetainCount=3",
      "maxClientCnxns=200",
      "",
    ].join("\n"),
  );
  let proc: ManagedProcess | undefined;
  // A small heap and the serial collector: a test ZooKeeper holds a few hundred nodes.
  proc = startProcess(
    "zookeeper",
    java,
    ["-Xmx256m", "-XX:+UseSerialGC", "-Djava.net.preferIPv4Stack=true", "-cp", [dir, ...classpath].join(":"), "org.apache.zookeeper.server.ZooKeeperServerMain", join(dir, "zoo.cfg")],
    { cwd: dir, logFile: join(dir, "zookeeper.log") },
  );
  const p = proc;
  try {
    await waitUntil(`zookeeper on 127.0.0.1:${port}`, async () => (await fourLetter(port, "ruok", 1000)) === "imok", { proc: p, timeoutMs: 60_000, intervalMs: 250 });
  } catch (err) {
    await p.stop(5000);
    await removeDir(dir);
    throw err;
  }
  return {
    host: "127.0.0.1",
    port,
    dir,
    ports: [port],
    pid: () => proc?.pid ?? -1,
    fourLetter: (cmd) => fourLetter(port, cmd),
    stop: async () => {
      await proc?.stop(10_000);
      await removeDir(dir);
    },
  };
}
