// The age stream module against the library (age-encryption) and the reference CLI (Debian `age`).
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { pipeline } from "node:stream/promises";
import { Decrypter, Encrypter, generateX25519Identity, identityToRecipient } from "age-encryption";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { AGE_CHUNK, AgeError, ageDecryptStream, ageEncryptStream, identityOpener, identityRecipient, newAgeHeader, recipientKey } from "./age.ts";
import { AgeIdentities } from "./identity.ts";
import { recipientFingerprint } from "../apis/encryption.ts";

let id1: string, id2: string, other: string, r1: string, r2: string;
let dir: string;
beforeAll(async () => {
  [id1, id2, other] = await Promise.all([generateX25519Identity(), generateX25519Identity(), generateX25519Identity()]);
  [r1, r2] = await Promise.all([identityToRecipient(id1), identityToRecipient(id2)]);
  dir = mkdtempSync(join(tmpdir(), "age-test-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Input in uneven pieces, so chunk boundaries fall anywhere. */
function pieces(data: Buffer, step = 7777): Readable {
  const parts: Buffer[] = [];
  for (let o = 0; o < data.length; o += step) parts.push(data.subarray(o, o + step));
  return Readable.from(parts);
}

async function encrypt(data: Buffer, recipients: string[], step?: number): Promise<Buffer> {
  const enc = await ageEncryptStream(recipients);
  return buffer(pieces(data, step).pipe(enc));
}

async function decrypt(file: Buffer, identities: string[], step?: number): Promise<Buffer> {
  const dec = ageDecryptStream(identityOpener(identities));
  const chunks: Buffer[] = [];
  await pipeline(pieces(file, step), dec, async (src: AsyncIterable<Buffer>) => {
    for await (const c of src) chunks.push(c);
  });
  return Buffer.concat(chunks);
}

const SIZES = [0, 1, AGE_CHUNK - 1, AGE_CHUNK, AGE_CHUNK + 1, 2 * AGE_CHUNK, 3 * AGE_CHUNK + 12345];

describe("age stream (node:crypto payload)", () => {
  it.each(SIZES)("round trip of %i bytes, and the library reads what it writes", async (n) => {
    const data = randomBytes(n);
    const file = await encrypt(data, [r1, r2]);
    expect(await decrypt(file, [id2])).toEqual(data);
    expect(await decrypt(file, [id1], 65552)).toEqual(data);
    const d = new Decrypter();
    d.addIdentity(id1);
    expect(Buffer.from(await d.decrypt(file))).toEqual(data);
  });

  it("any size in any pieces (whole chunks of large pieces are sealed in place): the library reads it (property)", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 6 * AGE_CHUNK + 3 }),
        fc.array(fc.constantFrom(1, 4096, AGE_CHUNK - 1, AGE_CHUNK, AGE_CHUNK + 1, 2 * AGE_CHUNK, 3 * AGE_CHUNK + 7, 1024 * 1024), { minLength: 1, maxLength: 6 }),
        async (n, steps) => {
          const data = randomBytes(n);
          const parts: Buffer[] = [];
          for (let o = 0, i = 0; o < n; i++) {
            const k = steps[i % steps.length]!;
            parts.push(data.subarray(o, o + k));
            o += k;
          }
          const file = await buffer(Readable.from(parts).pipe(await ageEncryptStream([r1])));
          const d = new Decrypter();
          d.addIdentity(id1);
          expect(Buffer.from(await d.decrypt(file)).equals(data)).toBe(true);
          expect((await decrypt(file, [id1], 50_000)).equals(data)).toBe(true);
        },
      ),
      { numRuns: 40 },
    );
  });

  it.each(SIZES)("reads what the library writes (%i bytes)", async (n) => {
    const data = randomBytes(n);
    const e = new Encrypter();
    e.addRecipient(r1);
    const file = Buffer.from(await e.encrypt(data));
    expect(await decrypt(file, [id1], 1000)).toEqual(data);
  });

  it("hands every input chunk back to release, once", async () => {
    const released: Uint8Array[] = [];
    const enc = await ageEncryptStream([r1], { release: (c) => released.push(c) });
    const parts = [randomBytes(100_000), randomBytes(5), randomBytes(70_000)];
    const out = await buffer(Readable.from(parts).pipe(enc));
    expect(released).toEqual(parts);
    expect(await decrypt(out, [id1])).toEqual(Buffer.concat(parts));
  });

  it("a wrong identity fails with kind no-identity, before any plaintext", async () => {
    const file = await encrypt(randomBytes(1000), [r1]);
    const err = await decrypt(file, [other]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AgeError);
    expect((err as AgeError).kind).toBe("no-identity");
  });

  it("a flipped byte anywhere fails: header MAC, stanza, or chunk authentication", async () => {
    const data = randomBytes(3 * AGE_CHUNK);
    const file = await encrypt(data, [r1]);
    for (const at of [30, 60, file.length - AGE_CHUNK - 100, file.length - 3]) {
      const bad = Buffer.from(file);
      bad[at]! ^= 0x01;
      const err = await decrypt(bad, [id1]).catch((e: unknown) => e);
      expect(err, `flip at ${at}`).toBeInstanceOf(Error);
    }
    const bad = Buffer.from(file);
    bad[file.length - AGE_CHUNK - 100]! ^= 0x01;
    const err = (await decrypt(bad, [id1]).catch((e: unknown) => e)) as AgeError;
    expect(err.kind).toBe("damaged");
    expect(err.message).toMatch(/chunk 1 of the age payload fails authentication: the data was changed/);
  });

  it("a file cut at a chunk boundary or extended fails", async () => {
    const data = randomBytes(3 * AGE_CHUNK);
    const file = await encrypt(data, [r1]);
    const headerAndNonce = file.length - 3 * (AGE_CHUNK + 16);
    const cut = file.subarray(0, headerAndNonce + 2 * (AGE_CHUNK + 16));
    await expect(decrypt(cut, [id1])).rejects.toThrow(/fails authentication/);
    await expect(decrypt(Buffer.concat([file, randomBytes(20)]), [id1])).rejects.toThrow(/fails authentication/);
    await expect(decrypt(file.subarray(0, 50), [id1])).rejects.toThrow(/ends inside its header/);
    await expect(decrypt(Buffer.from("hello world, not age at all"), [id1])).rejects.toThrow(/not an age file/);
  });

  it("identities: fingerprints, matching, and nothing of the key in JSON, strings or errors", async () => {
    const ids = await AgeIdentities.parse(`# created: today\n# public key: ${r1}\n${id1}\n\n${id2}\n`, "key.txt");
    expect(ids.fingerprints).toEqual([recipientFingerprint(r1), recipientFingerprint(r2)]);
    expect(ids.matchesAny([recipientFingerprint(r2)])).toBe(true);
    expect(JSON.stringify({ ids })).not.toContain("AGE-SECRET");
    expect(String(ids)).not.toContain("AGE-SECRET");
    const { inspect } = await import("node:util");
    expect(inspect(ids)).not.toContain("AGE-SECRET");
    const bad = await AgeIdentities.parse(`${id1}\n${id2.slice(0, -1)}${id2.endsWith("Q") ? "P" : "Q"}\n`, "bad.txt").then(() => new Error("parsed"), (e: unknown) => e as Error);
    expect(bad.message).toMatch(/identity 2 is malformed/);
    expect(bad.message).not.toContain(id2.slice(20, 40));
    const notKey = await AgeIdentities.parse(`${r1}\n`, "pub.txt").then(() => new Error("parsed"), (e: unknown) => e as Error);
    expect(notKey.message).toMatch(/line 1 is not an age X25519 identity/);
  });

  it("identity files named under a directory stay inside it", async () => {
    writeFileSync(join(dir, "key.txt"), `${id1}\n`);
    expect((await AgeIdentities.fromDir(dir, "key.txt")).fingerprints).toEqual([recipientFingerprint(r1)]);
    for (const name of ["../etc/passwd", "/etc/passwd", "a/../../x", ""]) {
      await expect(AgeIdentities.fromDir(dir, name)).rejects.toThrow(/relative path inside the identity directory/);
    }
    await expect(AgeIdentities.fromDir(dir, "missing.txt")).rejects.toThrow(/not found in the identity directory/);
  });
});

describe("age header (X25519 stanzas and MAC through node:crypto)", () => {
  it("derives the recipient of an identity as the library does, and refuses malformed keys", async () => {
    for (let i = 0; i < 10; i++) {
      const id = await generateX25519Identity();
      expect(identityRecipient(id)).toBe(await identityToRecipient(id));
    }
    expect(identityRecipient(id1.toLowerCase())).toBeUndefined();
    expect(identityRecipient(`${id1.slice(0, -1)}${id1.endsWith("Q") ? "P" : "Q"}`)).toBeUndefined();
    expect(recipientKey(r1)?.length).toBe(32);
    expect(recipientKey(`${r1.slice(0, -1)}${r1.endsWith("q") ? "p" : "q"}`)).toBeUndefined();
    await expect(newAgeHeader(["age1nope"])).rejects.toThrow(/not an age X25519 recipient/);
  });

  it("writes one stanza per recipient, each opening the file key, with a MAC the library accepts", async () => {
    const third = await generateX25519Identity();
    const { header, fileKey } = await newAgeHeader([r1, r2, await identityToRecipient(third)]);
    expect(header.toString("latin1").match(/^-> X25519 [A-Za-z0-9+/]{43}\n[A-Za-z0-9+/]{43}\n/gm)?.length).toBe(3);
    for (const id of [id1, id2, third]) {
      expect(Buffer.from(await identityOpener([id])(header))).toEqual(fileKey);
      const d = new Decrypter();
      d.addIdentity(id);
      expect(Buffer.from(await d.decryptHeader(header))).toEqual(fileKey);
    }
    const err = (await identityOpener([other])(header).catch((e: unknown) => e)) as AgeError;
    expect(err.kind).toBe("no-identity");
    const badMac = Buffer.from(header);
    badMac[badMac.length - 5] = badMac[badMac.length - 5] === 0x41 ? 0x42 : 0x41;
    expect(((await identityOpener([id1])(badMac).catch((e: unknown) => e)) as AgeError).kind).toBe("damaged");
  });
});

describe("age stream against the reference age CLI", () => {
  const age = (() => {
    try {
      execFileSync("age", ["--version"]);
      return "age";
    } catch {
      throw new Error("the age CLI is missing: run scripts/setup.sh (Debian package age)");
    }
  })();

  it("age-keygen -y gives the recipient we derive", () => {
    const keyFile = join(dir, "keygen.txt");
    execFileSync("age-keygen", ["-o", keyFile], { stdio: "pipe" });
    const identity = execFileSync("grep", ["^AGE-SECRET-KEY-1", keyFile]).toString().trim();
    expect(identityRecipient(identity)).toBe(execFileSync("age-keygen", ["-y", keyFile]).toString().trim());
  });

  it.each([0, 1, AGE_CHUNK, 5 * AGE_CHUNK + 3])("age -d reads what we write, and we read what age -e writes (%i bytes)", async (n) => {
    const data = randomBytes(n);
    const keyFile = join(dir, `id-${n}.txt`);
    writeFileSync(keyFile, `${id2}\n`, { mode: 0o600 });
    const ours = await encrypt(data, [r1, r2]);
    const plain = execFileSync(age, ["-d", "-i", keyFile], { input: ours, maxBuffer: 64 << 20 });
    expect(Buffer.from(plain)).toEqual(data);
    const theirs = execFileSync(age, ["-e", "-r", r2, "-r", r1], { input: data, maxBuffer: 64 << 20 });
    expect(await decrypt(Buffer.from(theirs), [id1], 4096)).toEqual(data);
  });

  it("age -d refuses a file of ours with a flipped payload byte", async () => {
    const keyFile = join(dir, "id-flip.txt");
    writeFileSync(keyFile, `${id1}\n`, { mode: 0o600 });
    const file = await encrypt(randomBytes(100_000), [r1]);
    file[file.length - 10]! ^= 0x80;
    expect(() => execFileSync(age, ["-d", "-i", keyFile], { input: file, stdio: ["pipe", "pipe", "pipe"] })).toThrow();
  });
});
