// The images cannot be built here (no Docker engine), so their Dockerfiles are
// checked statically: Node 24 base pinned to the toolchain's version, a
// non-root final user equal to the contract's uid, an ENTRYPOINT that runs a
// file tsc really emits, and a runner image that carries nothing of the controller.
import { existsSync, readFileSync } from "node:fs";
import { join, matchesGlob, relative } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";
import { CONTROLLER_CONTAINER, RUNNER_CONTAINER } from "../controller/contract.ts";

const root = join(import.meta.dirname, "..", "..");
const read = (p: string) => readFileSync(join(root, p), "utf8");

interface Instruction {
  op: string;
  args: string;
}
interface Stage {
  from: string;
  name?: string;
  steps: Instruction[];
}

/** Stages of a Dockerfile: line continuations joined, comments dropped. */
export function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  const logical: string[] = [];
  let cur = "";
  for (const raw of text.split("\n")) {
    if (/^\s*#/.test(raw)) continue;
    if (raw.endsWith("\\")) {
      cur += `${raw.slice(0, -1)} `;
      continue;
    }
    cur += raw;
    if (cur.trim()) logical.push(cur.trim());
    cur = "";
  }
  for (const line of logical) {
    const m = /^(\S+)\s+(.*)$/.exec(line);
    if (!m) throw new Error(`cannot parse: ${line}`);
    const op = m[1]!.toUpperCase();
    const args = m[2]!;
    if (op === "FROM") {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      stages.push({ from: f![1]!, ...(f![2] ? { name: f![2] } : {}), steps: [] });
    } else if (op === "ARG" && stages.length === 0) {
      throw new Error("ARG before FROM: base images must be written out, so this test can check them");
    } else {
      stages.at(-1)!.steps.push({ op, args });
    }
  }
  return stages;
}

const nodeVersion = /^NODE_VERSION=(.+)$/m.exec(read("scripts/versions.env"))![1]!;

/** Whether `.dockerignore` leaves `path` out of the build context (last matching pattern wins; a parent's match counts). */
function dockerIgnored(path: string): boolean {
  const patterns = read(".dockerignore")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
  const parts = path.split("/");
  const candidates = parts.map((_, i) => parts.slice(0, i + 1).join("/"));
  let ignored = false;
  for (const p of patterns) {
    const negate = p.startsWith("!");
    const glob = negate ? p.slice(1) : p;
    if (candidates.some((c) => matchesGlob(c, glob))) ignored = !negate;
  }
  return ignored;
}

/** The program of an image's tsconfig: its config, and the sources tsc compiles. */
function tsProgram(configPath: string) {
  const parsed = ts.getParsedCommandLineOfConfigFile(join(root, configPath), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: (d) => { throw new Error(ts.flattenDiagnosticMessageText(d.messageText, "\n")); } });
  if (!parsed) throw new Error(`cannot read ${configPath}`);
  expect(parsed.errors.map((e) => ts.flattenDiagnosticMessageText(e.messageText, "\n"))).toEqual([]);
  return parsed;
}

const IMAGES = [
  { file: "deploy/docker/runner.Dockerfile", cmd: "backup-runner", uid: RUNNER_CONTAINER.uid, port: RUNNER_CONTAINER.port, other: "backup-controller" },
  { file: "deploy/docker/controller.Dockerfile", cmd: "backup-controller", uid: CONTROLLER_CONTAINER.uid, port: CONTROLLER_CONTAINER.probePort, other: "backup-runner" },
] as const;

describe.each(IMAGES)("$file", (img) => {
  const text = read(img.file);
  const stages = parseDockerfile(text);
  const final = stages.at(-1)!;
  const steps = (s: Stage, op: string) => s.steps.filter((i) => i.op === op).map((i) => i.args);

  it(`is multi-stage on node ${nodeVersion} (the toolchain's pinned Node 24)`, () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(nodeVersion).toMatch(/^24\./);
    for (const s of stages) expect(s.from).toMatch(new RegExp(`^node:${nodeVersion.replace(/\./g, "\\.")}-[a-z0-9.-]+$`));
    expect(final.name).toBeUndefined();
  });

  it("builds with the lock file in a builder stage and ships only production dependencies", () => {
    const build = stages.find((s) => s.name === "build")!;
    expect(steps(build, "RUN").some((r) => r.startsWith("npm install") || r.startsWith("npm ci"))).toBe(true);
    expect(steps(build, "COPY")[0]).toBe("package.json package-lock.json ./");
    const deps = stages.find((s) => s.name === "deps")!;
    expect(steps(deps, "RUN").some((r) => /^npm (install|ci) .*--omit=dev/.test(r))).toBe(true);
    const copies = steps(final, "COPY");
    expect(copies).toContain("--from=deps /app/node_modules ./node_modules");
    expect(copies).toContain("--from=build /src/dist ./dist");
    // Only package.json comes from the build context into the runtime stage (for "type": "module").
    expect(copies.filter((c) => !c.startsWith("--from="))).toEqual(["package.json ./"]);
    expect(steps(final, "WORKDIR")).toEqual(["/app"]);
  });

  it(`runs as the non-root uid ${img.uid} of the contract`, () => {
    const users = steps(final, "USER");
    expect(users.length).toBeGreaterThan(0);
    const [uid, gid] = users.at(-1)!.split(":");
    expect(Number(uid)).toBe(img.uid);
    expect(Number(gid)).toBe(img.uid);
    expect(Number(uid)).toBeGreaterThan(0);
    expect(steps(final, "EXPOSE")).toEqual([String(img.port)]);
  });

  it(`has an ENTRYPOINT that runs what tsc emits for cmd/${img.cmd}/main.ts`, () => {
    const entry = JSON.parse(steps(final, "ENTRYPOINT").at(-1)!) as string[];
    expect(entry[0]).toBe("node");
    const main = join(root, "cmd", img.cmd, "main.ts");
    expect(existsSync(main)).toBe(true);
    // The build stage compiles with this config; its emitted file for main.ts is what the final stage runs.
    const build = stages.find((s) => s.name === "build")!;
    const tsc = steps(build, "RUN").find((r) => r.startsWith("npx tsc -p "));
    expect(tsc).toBeDefined();
    const config = tsc!.slice("npx tsc -p ".length).trim();
    expect(steps(build, "COPY")).toContain(`${config} deploy/docker/`);
    const parsed = tsProgram(config);
    expect(parsed.fileNames).toContain(main);
    const emitted = ts.getOutputFileNames(parsed, main, false).find((f) => f.endsWith(".js"))!;
    expect(relative(root, emitted)).toBe(`dist/cmd/${img.cmd}/main.js`);
    // build: WORKDIR /src, dist/ → final: /app/dist
    expect(steps(build, "WORKDIR")).toEqual(["/src"]);
    expect(entry.at(-1)).toBe(`/app/${relative(root, emitted)}`);
    // Every file of the build stage's context is left in by .dockerignore.
    for (const c of steps(build, "COPY")) {
      for (const src of c.split(/\s+/).slice(0, -1)) {
        expect(existsSync(join(root, src)), src).toBe(true);
        expect(dockerIgnored(src), `${src} is excluded by .dockerignore`).toBe(false);
      }
    }
    expect(dockerIgnored(`cmd/${img.cmd}/main.ts`)).toBe(false);
    expect(dockerIgnored("node_modules")).toBe(true);
    expect(dockerIgnored("pkg/runner/retention.test.ts")).toBe(true);
  });

  it(`carries nothing of ${img.other} but what the program imports`, () => {
    expect(text).not.toContain(`cmd/${img.other}`);
    const build = stages.find((s) => s.name === "build")!;
    const config = steps(build, "RUN").find((r) => r.startsWith("npx tsc -p "))!.slice("npx tsc -p ".length).trim();
    const parsed = tsProgram(config);
    const program = ts.createProgram({ rootNames: parsed.fileNames, options: parsed.options });
    const ours = program
      .getSourceFiles()
      .map((f) => relative(root, f.fileName))
      .filter((f) => !f.startsWith("node_modules/") && !f.startsWith(".."));
    expect(ours).toContain(`cmd/${img.cmd}/main.ts`);
    expect(ours.filter((f) => f.startsWith(`cmd/${img.other}/`))).toEqual([]);
    if (img.cmd === "backup-runner") expect(ours.filter((f) => f.startsWith("pkg/controller/") || f.startsWith("pkg/deploy/"))).toEqual([]);
    expect(ours.filter((f) => f.endsWith(".test.ts"))).toEqual([]);
  });
});

describe("runner image", () => {
  it("starts node with the V8 limits of bin/backup-runner", () => {
    const bin = read("bin/backup-runner");
    const flags = /^exec node ((?:--\S+ )+)/m.exec(bin)![1]!.trim().split(" ");
    expect(flags).toEqual(["--max-semi-space-size=4", "--max-old-space-size=128"]);
    const final = parseDockerfile(read("deploy/docker/runner.Dockerfile")).at(-1)!;
    const entry = JSON.parse(final.steps.filter((s) => s.op === "ENTRYPOINT").at(-1)!.args) as string[];
    expect(entry.slice(1, -1)).toEqual(flags);
    // The default command is what the controller passes.
    expect(JSON.parse(final.steps.filter((s) => s.op === "CMD").at(-1)!.args)).toEqual(RUNNER_CONTAINER.args);
  });
});
