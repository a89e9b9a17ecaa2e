// age v1 files (https://age-encryption.org/v1) as streams, written and read
// by the runner: the one module that holds the format's low-level parts.
//
//   header   "age-encryption.org/v1\n", one "-> X25519 …" stanza per
//            recipient, "--- <MAC>\n": made and opened by the npm package
//            age-encryption (its public API: Encrypter with the recipients,
//            Decrypter.decryptHeader with the identities), so the X25519
//            stanzas and the header HMAC are the library's.
//   nonce    16 random bytes; payload key = HKDF-SHA256(file key, nonce, "payload").
//   payload  STREAM: 64 KiB chunks of plaintext, each sealed with
//            ChaCha20-Poly1305 (16-byte tag) under the nonce
//            <11-byte big-endian counter><1 byte: 1 on the last chunk, else 0>.
//            The last chunk may be shorter; it is empty only when the
//            whole payload is.
//
// The payload goes through node:crypto (OpenSSL) rather than the library's
// pure-JS cipher: measured on the 2-core development machine, 589 MB/s against
// 34 MB/s (see README, Encryption). Both sides are tested against the library
// and against the reference `age` CLI (pkg/encryption/age.test.ts).
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";
import type { Recipient } from "age-encryption";

/**
 * The library, loaded on first use: its modules (with the post-quantum ones it
 * also carries) add about 23 MiB to a process's RSS, which a runner without
 * encryption should not pay.
 */
const ageLibrary = () => import("age-encryption");

export const AGE_CHUNK = 64 * 1024;
const TAG = 16;
const SEALED_CHUNK = AGE_CHUNK + TAG;
const NONCE = 16;
const MAGIC = Buffer.from("age-encryption.org/v1\n", "latin1");
const MAC_LINE = Buffer.from("\n--- ", "latin1");
/** A header longer than this is not one the runner wrote (a stanza is about 140 bytes). */
const MAX_HEADER = 256 * 1024;

/** What is wrong with an age file, for callers that react to the kind (a wrong identity, damage). */
export type AgeErrorKind = "no-identity" | "not-age" | "header" | "damaged" | "truncated";

export class AgeError extends Error {
  readonly kind: AgeErrorKind;
  constructor(kind: AgeErrorKind, message: string, opts?: { cause?: unknown }) {
    super(message, opts);
    this.name = "AgeError";
    this.kind = kind;
  }
}

const toBuffer = (c: Uint8Array | string): Buffer => (typeof c === "string" ? Buffer.from(c) : Buffer.isBuffer(c) ? c : Buffer.from(c.buffer, c.byteOffset, c.byteLength));

/** The ChaCha20-Poly1305 nonce of STREAM chunk `counter` (a safe integer: 2^53 chunks is far beyond any object). */
function chunkNonce(counter: number, last: boolean): Buffer {
  const n = Buffer.alloc(12);
  n.writeUIntBE(Math.floor(counter / 2 ** 32), 3, 4);
  n.writeUInt32BE(counter >>> 0, 7);
  n[11] = last ? 1 : 0;
  return n;
}

function payloadKey(fileKey: Uint8Array, nonce: Uint8Array): Buffer {
  return Buffer.from(hkdfSync("sha256", fileKey, nonce, "payload", 32));
}

/**
 * A new header for `recipients` and its file key. The library's Encrypter
 * makes the stanzas and the MAC; a recipient of ours that writes no stanza
 * is handed the random file key on the way (Recipient.wrapFileKey). The
 * library's own (empty) payload is dropped: its nonce and key are never used.
 */
export async function newAgeHeader(recipients: readonly string[]): Promise<{ header: Buffer; fileKey: Uint8Array }> {
  if (recipients.length === 0) throw new Error("age: no recipients to encrypt to");
  const { Encrypter } = await ageLibrary();
  const e = new Encrypter();
  for (const r of recipients) e.addRecipient(r);
  let fileKey: Uint8Array | undefined;
  const capture: Recipient = {
    wrapFileKey(k: Uint8Array) {
      fileKey = Uint8Array.from(k);
      return [];
    },
  };
  e.addRecipient(capture);
  const file = toBuffer(await e.encrypt(new Uint8Array(0)));
  const end = headerEnd(file);
  if (end === undefined || fileKey === undefined) throw new Error("age: the library wrote no header");
  return { header: file.subarray(0, end), fileKey };
}

/** The length of the header at the start of `buf` (up to and including the MAC line's newline), or undefined if it is not all there yet. */
function headerEnd(buf: Buffer): number | undefined {
  const mac = buf.indexOf(MAC_LINE);
  if (mac < 0) return undefined;
  const eol = buf.indexOf(0x0a, mac + MAC_LINE.length);
  return eol < 0 ? undefined : eol + 1;
}

export interface AgeEncryptOptions {
  /**
   * The body's producer reuses its chunks (see PutOptions.release): each
   * input chunk is handed back once its bytes have been copied into the
   * chunk being sealed, which is right after the transform got it.
   */
  release?: ((chunk: Uint8Array) => void) | undefined;
}

/**
 * Encrypts a stream into an age file for `recipients`: the header and nonce
 * first, then the sealed chunks (as many as one input chunk completes, in one
 * output buffer). An empty input gives a valid age file of an empty payload.
 */
export async function ageEncryptStream(recipients: readonly string[], opts: AgeEncryptOptions = {}): Promise<Transform> {
  const { header, fileKey } = await newAgeHeader(recipients);
  const nonce = randomBytes(NONCE);
  return new AgeEncryptTransform(Buffer.concat([header, nonce]), payloadKey(fileKey, nonce), opts.release);
}

class AgeEncryptTransform extends Transform {
  readonly #prefix: Buffer;
  readonly #key: Buffer;
  readonly #release: ((chunk: Uint8Array) => void) | undefined;
  readonly #plain = Buffer.allocUnsafe(AGE_CHUNK);
  #used = 0;
  #counter = 0;
  #started = false;

  constructor(prefix: Buffer, key: Buffer, release: ((chunk: Uint8Array) => void) | undefined) {
    super({ readableHighWaterMark: 4 * SEALED_CHUNK });
    this.#prefix = prefix;
    this.#key = key;
    this.#release = release;
  }

  #seal(last: boolean, out: Buffer[]): void {
    const c = createCipheriv("chacha20-poly1305", this.#key, chunkNonce(this.#counter++, last), { authTagLength: TAG });
    out.push(c.update(this.#plain.subarray(0, this.#used)));
    c.final();
    out.push(c.getAuthTag());
    this.#used = 0;
  }

  #begin(out: Buffer[]): void {
    if (this.#started) return;
    this.#started = true;
    out.push(this.#prefix);
  }

  override _transform(chunk: Uint8Array | string, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      const b = toBuffer(chunk);
      const out: Buffer[] = [];
      this.#begin(out);
      for (let off = 0; off < b.length; ) {
        // A full chunk is sealed only once more data is known to follow: the last one carries the flag.
        if (this.#used === AGE_CHUNK) this.#seal(false, out);
        const n = Math.min(AGE_CHUNK - this.#used, b.length - off);
        b.copy(this.#plain, this.#used, off, off + n);
        this.#used += n;
        off += n;
      }
      if (typeof chunk !== "string") this.#release?.(chunk);
      if (out.length) this.push(out.length === 1 ? out[0] : Buffer.concat(out));
      cb();
    } catch (err: unknown) {
      cb(err as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    try {
      const out: Buffer[] = [];
      this.#begin(out);
      this.#seal(true, out);
      this.push(Buffer.concat(out));
      cb();
    } catch (err: unknown) {
      cb(err as Error);
    }
  }
}

/** Opens an age header: the file key, or an AgeError (kind "no-identity" when none of the identities is a recipient). */
export type HeaderOpener = (header: Uint8Array) => Promise<Uint8Array>;

/** A HeaderOpener over the library's Decrypter (identities as AGE-SECRET-KEY-1… strings). */
export function identityOpener(identities: readonly string[]): HeaderOpener {
  let decrypter: Promise<{ decryptHeader(h: Uint8Array): Promise<Uint8Array> }> | undefined;
  return async (header) => {
    decrypter ??= ageLibrary().then(({ Decrypter }) => {
      const d = new Decrypter();
      for (const i of identities) d.addIdentity(i);
      return d;
    });
    const d = await decrypter;
    try {
      return await d.decryptHeader(header);
    } catch (err: unknown) {
      const msg = err instanceof Error ? err.message : String(err);
      // The library's messages name no key; keep them as the cause only.
      if (/no identity matched/i.test(msg)) throw new AgeError("no-identity", "none of the identities is a recipient of this file", { cause: err });
      if (/HMAC/i.test(msg)) throw new AgeError("damaged", "the header's MAC does not match: the header was changed or damaged", { cause: err });
      throw new AgeError("header", `the age header cannot be read: ${msg}`, { cause: err });
    }
  };
}

/**
 * Decrypts an age file as it streams: the header is opened with `open`
 * (before any plaintext is produced), then every chunk is authenticated
 * before its plaintext goes out. A changed byte, a cut or an extended file
 * fails the stream with an AgeError; plaintext of a chunk that fails its
 * tag is never emitted.
 */
export function ageDecryptStream(open: HeaderOpener, opts: { what?: string | undefined } = {}): Transform {
  return new AgeDecryptTransform(open, opts.what);
}

class AgeDecryptTransform extends Transform {
  readonly #open: HeaderOpener;
  #head: Buffer[] = [];
  #headLen = 0;
  #key: Buffer | undefined;
  readonly #sealed = Buffer.allocUnsafe(SEALED_CHUNK);
  #used = 0;
  #counter = 0;

  readonly #what: string | undefined;

  constructor(open: HeaderOpener, what: string | undefined) {
    super({ readableHighWaterMark: 4 * AGE_CHUNK });
    this.#open = open;
    this.#what = what;
  }

  /** The error with what is being read in front ("object "data/x.native.zst.age": …"). */
  #err(e: unknown): Error {
    const err = e instanceof Error ? e : new Error(String(e));
    if (!this.#what) return err;
    return err instanceof AgeError ? new AgeError(err.kind, `${this.#what}: ${err.message}`, { cause: err.cause }) : new Error(`${this.#what}: ${err.message}`, { cause: err });
  }

  #unseal(last: boolean, out: Buffer[]): void {
    const n = this.#used;
    if (n < TAG) throw new AgeError("truncated", "the age file ends inside a chunk: it was cut short");
    if (last && n === TAG && this.#counter > 0) throw new AgeError("damaged", "the age file's last chunk is empty (not a valid age file)");
    const d = createDecipheriv("chacha20-poly1305", this.#key!, chunkNonce(this.#counter, last), { authTagLength: TAG });
    d.setAuthTag(this.#sealed.subarray(n - TAG, n));
    const plain = d.update(this.#sealed.subarray(0, n - TAG));
    try {
      d.final();
    } catch {
      // (OpenSSL's "unable to authenticate data" adds nothing to this)
      throw new AgeError(
        "damaged",
        last
          ? `chunk ${this.#counter} of the age payload fails authentication: the data was changed, or cut short`
          : `chunk ${this.#counter} of the age payload fails authentication: the data was changed`,
      );
    }
    this.#counter++;
    this.#used = 0;
    out.push(plain);
  }

  #payload(b: Buffer, out: Buffer[]): void {
    for (let off = 0; off < b.length; ) {
      // A full chunk is the last one only if nothing follows: open it once more data shows it is not.
      if (this.#used === SEALED_CHUNK) this.#unseal(false, out);
      const n = Math.min(SEALED_CHUNK - this.#used, b.length - off);
      b.copy(this.#sealed, this.#used, off, off + n);
      this.#used += n;
      off += n;
    }
  }

  override _transform(chunk: Uint8Array | string, _enc: BufferEncoding, cb: TransformCallback): void {
    const b = toBuffer(chunk);
    if (this.#key) {
      try {
        const out: Buffer[] = [];
        this.#payload(b, out);
        if (out.length) this.push(out.length === 1 ? out[0] : Buffer.concat(out));
        cb();
      } catch (err: unknown) {
        cb(this.#err(err));
      }
      return;
    }
    this.#head.push(b);
    this.#headLen += b.length;
    const all = Buffer.concat(this.#head, this.#headLen);
    this.#head = [all];
    if (all.length >= MAGIC.length && !all.subarray(0, MAGIC.length).equals(MAGIC)) {
      cb(this.#err(new AgeError("not-age", "this is not an age file (it does not start with age-encryption.org/v1)")));
      return;
    }
    const end = headerEnd(all);
    if (end === undefined || all.length < end + NONCE) {
      if (all.length > MAX_HEADER) cb(this.#err(new AgeError("header", `no end of the age header within ${MAX_HEADER} bytes`)));
      else cb();
      return;
    }
    this.#head = [];
    this.#open(all.subarray(0, end)).then(
      (fileKey) => {
        try {
          this.#key = payloadKey(fileKey, all.subarray(end, end + NONCE));
          const out: Buffer[] = [];
          this.#payload(all.subarray(end + NONCE), out);
          if (out.length) this.push(Buffer.concat(out));
          cb();
        } catch (err: unknown) {
          cb(this.#err(err));
        }
      },
      (err: unknown) => cb(this.#err(err)),
    );
  }

  override _flush(cb: TransformCallback): void {
    try {
      if (!this.#key) throw new AgeError("truncated", this.#headLen === 0 ? "the object is empty, not an age file" : "the age file ends inside its header: it was cut short");
      const out: Buffer[] = [];
      this.#unseal(true, out);
      this.push(Buffer.concat(out));
      cb();
    } catch (err: unknown) {
      cb(this.#err(err));
    }
  }
}
