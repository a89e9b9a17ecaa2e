// Client-side encryption at the object boundary: one sink decorator that turns
// every object an engine writes into an age file (`<name>.age`), and one
// source decorator that decrypts them when read. Engines see plaintext
// streams and never know; the storage sees only ciphertext, whose size and
// SHA-256 are what the manifest records (so `verify` checks integrity with no
// key). The low-level format is pkg/encryption/age.ts.
import { pipeline, Writable, type Readable } from "node:stream";
import { pipeline as pipelineAsync } from "node:stream/promises";
import type { BackupSink, BackupSource, PutObjectOptions, VerifiedTable, VerifyResult, WrittenObject } from "../backupengine/types.ts";
import { recipientFingerprint } from "../apis/encryption.ts";
import { AgeError, ageDecryptStream, ageEncryptStream, type HeaderOpener } from "../encryption/age.ts";
import type { AgeIdentities } from "../encryption/identity.ts";
import { withChunkRelease } from "../storage/bufferpool.ts";
import type { Manifest } from "./manifest.ts";

export const AGE_SUFFIX = ".age";

/** What the manifest records about a backup's encryption: which recipients can open it, by fingerprint. No key, no data. */
export interface ManifestEncryption {
  format: "age";
  recipients: { fingerprint: string }[];
}

export function manifestEncryption(recipients: readonly string[]): ManifestEncryption {
  return { format: "age", recipients: recipients.map((r) => ({ fingerprint: recipientFingerprint(r) })) };
}

/** The fingerprints a manifest says can open its backup ([] when it is not encrypted). */
export function backupFingerprints(m: Pick<Manifest, "encryption">): string[] {
  return m.encryption?.recipients.map((r) => r.fingerprint) ?? [];
}

/** A restore or verify of an encrypted backup that has no identity, or none of the backup's. */
export class EncryptionKeyError extends Error {
  readonly retryable = false;
  constructor(message: string) {
    super(message);
    this.name = "EncryptionKeyError";
  }
}

/**
 * Refuses, before anything is read or changed, a restore of an encrypted
 * backup without an identity of one of its recipients. The message names the
 * recipients' fingerprints (and the given identities'), never a key.
 */
export function requireIdentity(m: Pick<Manifest, "id" | "encryption">, identities: AgeIdentities | undefined, what: "restore" | "verify"): void {
  const fps = backupFingerprints(m);
  if (fps.length === 0) return;
  const can = `it can be opened by the identity of recipient fingerprint ${fps.join(" or ")}`;
  if (!identities) {
    throw new EncryptionKeyError(
      `backup ${m.id} is encrypted with age and ${what === "restore" ? "a restore" : "verifying its content"} needs an identity: ${can} (--identity FILE, or identityFile in the API request)${what === "restore" ? "; nothing was changed" : ""}`,
    );
  }
  if (!identities.matchesAny(fps)) {
    throw new EncryptionKeyError(
      `backup ${m.id} is encrypted with age and the identity given (${identities.source}, recipient fingerprint ${identities.fingerprints.join(", ")}) is not one of its recipients: ${can}${what === "restore" ? "; nothing was changed" : ""}`,
    );
  }
}

/** Writes every object as an age file for `recipients`, named `<name>.age`. */
export class EncryptingSink implements BackupSink {
  readonly #inner: BackupSink;
  readonly #recipients: readonly string[];
  readonly #poison: boolean;

  /** `poisonOnRelease` (tests): the ciphertext blocks' pool poisons released blocks and checks their use. */
  constructor(inner: BackupSink, recipients: readonly string[], opts: { poisonOnRelease?: boolean | undefined } = {}) {
    this.#inner = inner;
    this.#recipients = recipients;
    this.#poison = opts.poisonOnRelease === true;
  }

  /**
   * The body through the encryption: the body's chunks are handed back
   * (release) as soon as they are copied; the ciphertext comes in pooled
   * blocks that the store hands back (the returned release) once copied.
   */
  async #encrypted(body: AsyncIterable<Uint8Array> | NodeJS.ReadableStream, opts: PutObjectOptions | undefined): Promise<{ stream: Readable; release: (c: Uint8Array) => void }> {
    const enc = await ageEncryptStream(this.#recipients, { release: opts?.release, poisonOnRelease: this.#poison });
    // pipeline() forwards a body failure to the encrypted stream (and so to the put), and destroys the body if the put gives up.
    return { stream: pipeline(body, enc, () => undefined), release: enc.outputRelease };
  }

  async putObject(name: string, body: AsyncIterable<Uint8Array> | NodeJS.ReadableStream, signal: AbortSignal, opts?: PutObjectOptions): Promise<WrittenObject> {
    const { stream, release } = await this.#encrypted(body, opts);
    return this.#inner.putObject(`${name}${AGE_SUFFIX}`, stream, signal, { release });
  }

  async putObjects(name: string, body: AsyncIterable<Uint8Array> | NodeJS.ReadableStream, signal: AbortSignal, opts?: PutObjectOptions): Promise<WrittenObject[]> {
    const { stream, release } = await this.#encrypted(body, opts);
    if (this.#inner.putObjects) return this.#inner.putObjects(`${name}${AGE_SUFFIX}`, stream, signal, { release });
    return [await this.#inner.putObject(`${name}${AGE_SUFFIX}`, stream, signal, { release })];
  }

  async removeObjects(names: readonly string[], signal: AbortSignal): Promise<void> {
    await this.#inner.removeObjects?.(names, signal);
  }
  // No nativeS3Target: a database that writes to the storage itself would bypass the encryption.
}

/**
 * Reads age objects (`….age`) of a backup decrypted with `identities`; the
 * inner source still checks each object's size and SHA-256. Errors name
 * the object and, for a key that does not fit, the recipients' fingerprints.
 */
export class DecryptingSource implements BackupSource {
  readonly #inner: BackupSource;
  readonly #open: HeaderOpener;

  readonly #poison: boolean;

  /** `poisonOnRelease` (tests): the plaintext blocks' pool poisons released blocks and checks their use. */
  constructor(inner: BackupSource, identities: AgeIdentities, manifest: Pick<Manifest, "encryption">, opts: { poisonOnRelease?: boolean | undefined } = {}) {
    this.#inner = inner;
    this.#poison = opts.poisonOnRelease === true;
    const base = identities.opener();
    const fps = backupFingerprints(manifest);
    this.#open = async (header) => {
      try {
        return await base(header);
      } catch (err: unknown) {
        if (err instanceof AgeError && err.kind === "no-identity") {
          throw new AgeError(
            "no-identity",
            `none of the identities given (${identities.source}, recipient fingerprint ${identities.fingerprints.join(", ")}) opens it${fps.length ? `; the backup was encrypted to recipient fingerprint ${fps.join(" or ")}` : ""}`,
            { cause: err },
          );
        }
        throw err;
      }
    };
  }

  /** The plaintext of an age object; its chunks are pooled, for a consumer that hands them back (withChunkRelease). */
  #decrypt(name: string, raw: Readable): Readable {
    if (!name.endsWith(AGE_SUFFIX)) return raw;
    const dec = ageDecryptStream(this.#open, { what: `object "${name}"`, poisonOnRelease: this.#poison });
    pipeline(raw, dec, () => undefined);
    return withChunkRelease(dec, dec.outputRelease);
  }

  async getObject(name: string, signal: AbortSignal): Promise<Readable> {
    return this.#decrypt(name, await this.#inner.getObject(name, signal));
  }

  async getObjects(names: readonly string[], signal: AbortSignal): Promise<Readable> {
    if (!this.#inner.getObjects) throw new Error(`the data is stored in ${names.length} pieces and this storage cannot read them`);
    // The pieces of one object concatenate to one age file.
    return this.#decrypt(names[0] ?? "", await this.#inner.getObjects(names, signal));
  }
}

/**
 * verify of an encrypted backup without an identity: every object is read
 * and its size and SHA-256 checked (the source does that), which proves the
 * stored bytes are the ones written; the content (rows) needs an identity.
 */
export async function verifyIntegrityOnly(
  manifest: Pick<Manifest, "tables" | "objects">,
  source: BackupSource,
  signal: AbortSignal,
  onTable?: (done: number, total: number) => void,
): Promise<VerifyResult> {
  const drain = () =>
    new Writable({
      write(_c, _e, cb) {
        cb();
      },
    });
  const sizes = new Map(manifest.objects.map((o) => [o.name, o.size]));
  const check = async (name: string): Promise<string | undefined> => {
    try {
      await pipelineAsync(await source.getObject(name, signal), drain(), { signal });
      return undefined;
    } catch (err: unknown) {
      signal.throwIfAborted();
      return err instanceof Error ? err.message : String(err);
    }
  };
  const used = new Set<string>();
  const tables: VerifiedTable[] = [];
  const withData = manifest.tables.filter((t) => t.dataObject !== undefined);
  for (const t of withData) {
    const names = t.dataObjects ?? [t.dataObject!];
    const errors: string[] = [];
    for (const n of names) {
      used.add(n);
      const e = await check(n);
      if (e) errors.push(e);
    }
    tables.push({
      database: t.database,
      name: t.name,
      objects: names,
      expectedRows: t.rows,
      rows: 0,
      bytes: names.reduce((s, n) => s + (sizes.get(n) ?? 0), 0),
      uncompressedBytes: 0,
      ok: errors.length === 0,
      contentChecked: false,
      ...(errors.length ? { error: errors.join("; ") } : {}),
    });
    onTable?.(tables.length, withData.length);
  }
  const otherObjects: VerifyResult["otherObjects"] = [];
  for (const o of manifest.objects) {
    if (used.has(o.name)) continue;
    const e = await check(o.name);
    otherObjects.push({ name: o.name, ok: e === undefined, ...(e ? { error: e } : {}) });
  }
  return { ok: tables.every((t) => t.ok) && otherObjects.every((o) => o.ok), tables, otherObjects, contentChecked: false };
}
