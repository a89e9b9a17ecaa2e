// The README's first command needs only Node and npm: `bash scripts/setup.sh`
// (no arguments, the demo's setup) never calls Go, apt-get, sudo or dpkg, and
// builds no test server. Here those commands are shadowed by stubs that leave a
// mark when called; the setup must succeed without one. `--test` is the step
// that installs the test servers (.ci/run calls it); it is not run here.
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTempDir, removeDir, repoRoot } from "./env/index.ts";

let tmp: string;
let stubs: string;
let marks: string;

beforeAll(async () => {
  tmp = await makeTempDir("setup");
  stubs = join(tmp, "bin");
  marks = join(tmp, "called");
  await execa("mkdir", ["-p", stubs]);
  for (const cmd of ["go", "apt-get", "sudo", "dpkg", "dpkg-query"]) {
    const file = join(stubs, cmd);
    writeFileSync(file, `#!/bin/sh\necho "${cmd} $*" >> "${marks}"\nexit 97\n`);
    chmodSync(file, 0o755);
  }
});
afterAll(async () => {
  await removeDir(tmp);
});

const setup = (args: string[]) =>
  execa("bash", [join(repoRoot, "scripts", "setup.sh"), ...args], {
    cwd: repoRoot,
    reject: false,
    env: { PATH: `${stubs}:${process.env["PATH"] ?? ""}` },
    timeout: 120_000,
  });

describe("scripts/setup.sh", () => {
  it("without arguments sets up the demo with Node and npm only: no Go, no apt-get, no test servers", async () => {
    const r = await setup([]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(existsSync(marks) ? readFileSync(marks, "utf8") : "").toBe("");
    expect(r.stderr).toMatch(/ready for npm run demo: node v24\./);
    expect(r.stderr).toContain("bash scripts/setup.sh --test");
    expect(r.stderr).not.toMatch(/minio|kube-apiserver|helm/i);
  });

  it("explains itself, and refuses an unknown argument", async () => {
    const help = await setup(["--help"]);
    expect(help.exitCode).toBe(0);
    expect(help.stdout).toMatch(/bash scripts\/setup\.sh --test {3}also what `npm test` needs/);
    const bad = await setup(["--tests"]);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toContain("unknown argument: --tests");
  });

  it("is what .ci/run calls with --test before npm test", () => {
    const ci = readFileSync(join(repoRoot, ".ci", "run"), "utf8");
    expect(ci).toMatch(/^bash scripts\/setup\.sh --test$/m);
    expect(ci.indexOf("bash scripts/setup.sh --test")).toBeLessThan(ci.indexOf("npm test"));
  });
});
