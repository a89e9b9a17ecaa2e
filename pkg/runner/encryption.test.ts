// EncryptingSink / DecryptingSource over a filesystem store whose objects are capped small: an
// encrypted stream split into pieces is one age file (cat of the pieces), read back as one stream;
// the body's chunks are handed back once copied; a body that fails leaves nothing; a wrong key
// names the recipients' fingerprints.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { generateX25519Identity, identityToRecipient } from "age-encryption";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { recipientFingerprint, type StorageRunnerConfig } from "../apis/index.ts";
import { AgeIdentities } from "../encryption/identity.ts";
import { createFilesystemStore, type ObjectStore } from "../storage/index.ts";
import { StoreSink, StoreSource } from "./bridge.ts";
import { DecryptingSource, EncryptingSink, manifestEncryption, requireIdentity, verifyIntegrityOnly } from "./encryption.ts";

const storage = { filesystem: { path: "/unused" } } as StorageRunnerConfig;
const signal = () => new AbortController().signal;
let dir: string;
let store: ObjectStore;
let id1: string, id2: string, r1: string, r2: string;

beforeAll(async () => {
  [id1, id2] = [await generateX25519Identity(), await generateX25519Identity()];
  [r1, r2] = [await identityToRecipient(id1), await identityToRecipient(id2)];
});
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "encryption-test-"));
  store = { ...createFilesystemStore({ root: dir }), maxObjectBytes: 50_000 };
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("EncryptingSink / DecryptingSource", () => {
  it("splits an encrypted stream into pieces that concatenate to one age file, and reads it back", async () => {
    const body = randomBytes(300_000);
    const inner = new StoreSink(store, "bk", storage);
    const sink = new EncryptingSink(inner, [r1, r2], { poisonOnRelease: true });
    const released: Uint8Array[] = [];
    const parts = [body.subarray(0, 123_456), body.subarray(123_456)];
    const written = await sink.putObjects("data/t.native.zst", Readable.from(parts), signal(), { release: (c) => released.push(c) });
    expect(released).toEqual(parts);
    expect(written[0]!.name).toBe("data/t.native.zst.age");
    expect(written[1]!.name).toBe("data/t.native.zst.age.001");
    expect(written.length).toBe(7);
    // the pieces, concatenated, are an age file the reference CLI opens
    const pieces = await Promise.all(written.map((w) => readFile(path.join(dir, "bk", w.name))));
    const keyFile = path.join(dir, "key.txt");
    await writeFile(keyFile, `${id2}\n`);
    expect(execFileSync("age", ["-d", "-i", keyFile], { input: Buffer.concat(pieces), maxBuffer: 16 << 20 })).toEqual(body);

    const manifest = { id: "b1", encryption: manifestEncryption([r1, r2]) };
    const source = new DecryptingSource(new StoreSource(store, "bk", written, storage), await AgeIdentities.parse(id1, "id1"), manifest);
    expect(await buffer(await source.getObjects(written.map((w) => w.name), signal()))).toEqual(body);

    const wrong = await AgeIdentities.parse(await generateX25519Identity(), "wrong.txt");
    const bad = new DecryptingSource(new StoreSource(store, "bk", written, storage), wrong, manifest);
    await expect(buffer(await bad.getObjects(written.map((w) => w.name), signal()))).rejects.toThrow(
      new RegExp(`object "data/t.native.zst.age": none of the identities given \\(wrong.txt, recipient fingerprint ${wrong.fingerprints[0]}\\) opens it; the backup was encrypted to recipient fingerprint ${recipientFingerprint(r1)} or ${recipientFingerprint(r2)}`),
    );

    // without a key: sizes and SHA-256 of every piece
    const m = { tables: [{ database: "d", name: "t", engine: "MergeTree", rows: 5, bytes: 0, dataObject: written[0]!.name, dataObjects: written.map((w) => w.name) }], objects: written };
    const ok = await verifyIntegrityOnly(m, new StoreSource(store, "bk", written, storage), signal());
    expect(ok).toMatchObject({ ok: true, contentChecked: false, tables: [{ ok: true, contentChecked: false, rows: 0, expectedRows: 5 }] });
    const p3 = path.join(dir, "bk", written[3]!.name);
    const b = await readFile(p3);
    b[10]! ^= 1;
    await writeFile(p3, b);
    const damaged = await verifyIntegrityOnly(m, new StoreSource(store, "bk", written, storage), signal());
    expect(damaged.ok).toBe(false);
    expect(damaged.tables[0]!.error).toMatch(/data\/t.native.zst.age.003.*checksum mismatch|checksum mismatch.*data\/t.native.zst.age.003/);
  });

  it("a body that fails leaves no object; requireIdentity names the fingerprints", async () => {
    const sink = new EncryptingSink(new StoreSink(store, "bk", storage), [r1]);
    async function* failing() {
      yield randomBytes(70_000);
      throw new Error("the database went away");
    }
    await expect(sink.putObjects("data/x.native.zst", failing(), signal())).rejects.toThrow(/the database went away/);
    expect(await readdir(dir, { recursive: true }).then((l) => l.filter((n) => n.endsWith(".age") || n.includes(".age.")))).toEqual([]);

    const m = { id: "b2", encryption: manifestEncryption([r1]) };
    expect(() => requireIdentity(m, undefined, "restore")).toThrow(`backup b2 is encrypted with age and a restore needs an identity: it can be opened by the identity of recipient fingerprint ${recipientFingerprint(r1)}`);
    const other = await AgeIdentities.parse(id2, "other.txt");
    expect(() => requireIdentity(m, other, "verify")).toThrow(/is not one of its recipients/);
    const right = await AgeIdentities.parse(id1, "k");
    expect(() => requireIdentity(m, right, "restore")).not.toThrow();
    expect(() => requireIdentity({ id: "plain" }, undefined, "restore")).not.toThrow();
  });
});
