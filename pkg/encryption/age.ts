// age v1 files (https://age-encryption.org/v1) as streams, written and read
// by the runner: the one module that holds the format's low-level parts.
//
//   header   "age-encryption.org/v1\n", one "-> X25519 <share>\n<body>\n"
//            stanza per recipient (the file key wrapped with
//            ChaCha20-Poly1305 under HKDF-SHA256(X25519(ephemeral,
//            recipient), share || recipient, "age-encryption.org/v1/X25519")),
//            then "--- " + HMAC-SHA256(HKDF(file key, "", "header"), header up
//            to "---"), base64 without padding.
//   nonce    16 random bytes; payload key = HKDF-SHA256(file key, nonce, "payload").
//   payload  STREAM: 64 KiB chunks of plaintext, each sealed with
//            ChaCha20-Poly1305 (16-byte tag) under the nonce
//            <11-byte big-endian counter><1 byte: 1 on the last chunk, else 0>.
//            The last chunk may be shorter; it is empty only when the
//            whole payload is.
//
// Everything goes through node:crypto (OpenSSL): X25519, HKDF, HMAC and
// ChaCha20-Poly1305. The npm package age-encryption (the TypeScript
// implementation by age's author) was the first choice and is the reference
// this module is tested against, with the `age` CLI (age.test.ts), but at run
// time it costs too much: its pure-JS cipher runs at 34 MB/s against 589 MB/s
// here, and loading it and wrapping one file key adds about 30 MiB of RSS
// (its X25519 tables, its post-quantum modules), which put an encrypting
// runner above its 200 MiB budget. See README, Encryption.
import { bech32Decode, bech32Encode } from "../common/bech32.ts";
import { createCipheriv, createDecipheriv, createHmac, createPrivateKey, createPublicKey, createSecretKey, diffieHellman, generateKeyPairSync, hkdfSync, randomBytes, timingSafeEqual, type KeyObject } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";
import { BufferPool } from "../storage/bufferpool.ts";

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

/**
 * The payload key as a KeyObject: every 64 KiB chunk needs a cipher of its
 * own, and a raw key is imported again for each (measured: 573-685 MB/s for
 * cipher and set-up with a Buffer key, 935-1,029 MB/s with a KeyObject).
 */
function payloadKey(fileKey: Uint8Array, nonce: Uint8Array): KeyObject {
  return createSecretKey(Buffer.from(hkdfSync("sha256", fileKey, nonce, "payload", 32)));
}

// X25519 keys as node:crypto KeyObjects, from and to their 32 raw bytes.
const SPKI_X25519 = Buffer.from("302a300506032b656e032100", "hex");
const PKCS8_X25519 = Buffer.from("302e020100300506032b656e04220420", "hex");
const publicKeyOf = (raw: Buffer) => createPublicKey({ key: Buffer.concat([SPKI_X25519, raw]), format: "der", type: "spki" });
const rawPublic = (k: KeyObject) => k.export({ format: "der", type: "spki" }).subarray(-32);
const X25519_LABEL = "age-encryption.org/v1/X25519";

/** base64 without padding (age's encoding), and its strict inverse (canonical, no padding). */
const b64 = (b: Buffer) => b.toString("base64").replace(/=+$/, "");
function unb64(s: string): Buffer | undefined {
  if (!/^[A-Za-z0-9+/]*$/.test(s)) return undefined;
  const b = Buffer.from(s, "base64");
  return b64(b) === s ? b : undefined;
}

/**
 * Copies a Buffer that cipher.update just returned into `into` at `at`, and
 * frees its memory at once by detaching its ArrayBuffer (ES2024
 * ArrayBuffer.prototype.transfer), which only a buffer that owns all of its
 * ArrayBuffer is (cipher outputs do; a slice of Node's shared pool would
 * not, and is left to the collector). Returns the bytes copied.
 *
 * Why: left alone, each 64 KiB output is external memory that V8 frees only
 * after tens of MiB of it (a 540 MiB encryption peaked 30-40 MiB higher).
 * Getting the output as a latin1 string instead (young heap, gone at the
 * next scavenge) cost 365 scavenges per 500 MiB. Measured on 8,000 chunks
 * with the runner's V8 limits: latin1 551-798 ms of CPU and 694-1,054 MB/s,
 * a Buffer copied and freed 325-445 ms and 1,226-1,744 MB/s, both at the same
 * RSS (a Buffer left to the collector: RSS +70 MiB).
 */
function copyAndFree(out: Buffer, into: Buffer, at: number): number {
  const n = out.copy(into, at);
  if (out.byteOffset === 0 && out.buffer.byteLength === out.length && out.buffer instanceof ArrayBuffer && !out.buffer.detached) out.buffer.transfer(0);
  return n;
}

function seal(key: Buffer, nonce: Buffer, plain: Buffer): Buffer {
  const c = createCipheriv("chacha20-poly1305", key, nonce, { authTagLength: TAG });
  const out = Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
  return out;
}
function open(key: Buffer, nonce: Buffer, sealed: Buffer): Buffer | undefined {
  if (sealed.length < TAG) return undefined;
  const d = createDecipheriv("chacha20-poly1305", key, nonce, { authTagLength: TAG });
  d.setAuthTag(sealed.subarray(sealed.length - TAG));
  const plain = d.update(sealed.subarray(0, sealed.length - TAG));
  try {
    d.final();
    return plain;
  } catch {
    return undefined;
  }
}

const ZERO_NONCE = Buffer.alloc(12);
const headerMac = (fileKey: Buffer, upToDashes: Buffer) => createHmac("sha256", Buffer.from(hkdfSync("sha256", fileKey, Buffer.alloc(0), "header", 32))).update(upToDashes).digest();

/** The public key in a recipient string (age1…), or undefined if it is not one. */
export function recipientKey(recipient: string): Buffer | undefined {
  return recipient.startsWith("age1") ? bech32Decode(recipient, "age") : undefined;
}

/** The recipient (age1…) of an identity (AGE-SECRET-KEY-1…); undefined if the identity is malformed. */
export function identityRecipient(identity: string): string | undefined {
  const k = bech32Decode(identity, "age-secret-key-");
  if (!k || !identity.startsWith("AGE-SECRET-KEY-1")) return undefined;
  return bech32Encode("age", rawPublic(createPublicKey(createPrivateKey({ key: Buffer.concat([PKCS8_X25519, k]), format: "der", type: "pkcs8" }))));
}

/** A new header for `recipients` (X25519 stanzas and MAC) and its random 16-byte file key. */
export async function newAgeHeader(recipients: readonly string[]): Promise<{ header: Buffer; fileKey: Buffer }> {
  if (recipients.length === 0) throw new Error("age: no recipients to encrypt to");
  const fileKey = randomBytes(16);
  let text = "age-encryption.org/v1\n";
  for (const r of recipients) {
    const pub = recipientKey(r);
    if (!pub) throw new Error("age: a recipient is not an age X25519 recipient (age1…)");
    const eph = generateKeyPairSync("x25519");
    const share = rawPublic(eph.publicKey);
    const shared = diffieHellman({ privateKey: eph.privateKey, publicKey: publicKeyOf(pub) });
    const wrapKey = Buffer.from(hkdfSync("sha256", shared, Buffer.concat([share, pub]), X25519_LABEL, 32));
    text += `-> X25519 ${b64(share)}\n${b64(seal(wrapKey, ZERO_NONCE, fileKey))}\n`;
  }
  text += "---";
  const upToDashes = Buffer.from(text, "latin1");
  return { header: Buffer.from(`${text} ${b64(headerMac(fileKey, upToDashes))}\n`, "latin1"), fileKey };
}

interface Stanza {
  args: string[];
  body: Buffer;
}

/** Parses a complete header (as headerEnd found it): its stanzas, the bytes the MAC covers, and the MAC. */
function parseHeader(header: Buffer): { stanzas: Stanza[]; upToDashes: Buffer; mac: Buffer } {
  const bad = (why: string) => new AgeError("header", `the age header is malformed: ${why}`);
  const text = header.toString("latin1");
  const lines = text.split("\n");
  if (lines[0] !== "age-encryption.org/v1") throw bad("it does not start with age-encryption.org/v1");
  const stanzas: Stanza[] = [];
  let i = 1;
  for (; i < lines.length && lines[i]!.startsWith("-> "); ) {
    const args = lines[i]!.slice(3).split(" ");
    if (args.some((a) => a === "")) throw bad("empty stanza argument");
    i++;
    const parts: Buffer[] = [];
    for (;;) {
      const l = lines[i++];
      if (l === undefined) throw bad("a stanza has no end");
      const b = unb64(l);
      if (!b || l.length > 64) throw bad("a stanza body is not canonical base64");
      parts.push(b);
      if (l.length < 64) break;
    }
    stanzas.push({ args, body: Buffer.concat(parts) });
  }
  const last = lines[i];
  if (last === undefined || !last.startsWith("--- ") || i !== lines.length - 2 || lines[i + 1] !== "") throw bad("no MAC line after the stanzas");
  const mac = unb64(last.slice(4));
  if (!mac || mac.length !== 32) throw bad("the MAC is not 32 bytes of base64");
  const upToDashes = Buffer.from(`${lines.slice(0, i).join("\n")}\n---`, "latin1");
  return { stanzas, upToDashes, mac };
}

/** X25519 identities (AGE-SECRET-KEY-1…) as node:crypto keys with their public keys; throws naming the position, never the key. */
function x25519Identities(identities: readonly string[]): { privateKey: KeyObject; pub: Buffer }[] {
  return identities.map((id, n) => {
    const k = id.startsWith("AGE-SECRET-KEY-1") ? bech32Decode(id, "age-secret-key-") : undefined;
    if (!k) throw new AgeError("header", `identity ${n + 1} is not an age X25519 identity`);
    const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_X25519, k]), format: "der", type: "pkcs8" });
    return { privateKey, pub: rawPublic(createPublicKey(privateKey)) };
  });
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
  /** Tests: the output blocks' pool poisons released blocks and checks their use (BufferPoolOptions.poisonOnRelease). */
  poisonOnRelease?: boolean | undefined;
}

/** Sealed chunks per output block (about 1 MiB). */
const BLOCK_CHUNKS = 16;

/** An age encryption stream; its consumer hands each output chunk back with `outputRelease` once it has copied it. */
export type AgeEncryptStream = Transform & { readonly outputRelease: (chunk: Uint8Array) => void };

/**
 * Encrypts a stream into an age file for `recipients`: the header and nonce
 * first, then the sealed chunks. An empty input gives a valid age file of an
 * empty payload.
 *
 * Memory: the ciphertext is written into blocks of a BufferPool, which the
 * consumer hands back (`outputRelease`, given to the store as
 * PutOptions.release); OpenSSL's output for each chunk is copied there and
 * freed at once (copyAndFree).
 */
export async function ageEncryptStream(recipients: readonly string[], opts: AgeEncryptOptions = {}): Promise<AgeEncryptStream> {
  const { header, fileKey } = await newAgeHeader(recipients);
  const nonce = randomBytes(NONCE);
  const pool = new BufferPool(BLOCK_CHUNKS * SEALED_CHUNK, 4, { poisonOnRelease: opts.poisonOnRelease === true });
  return new AgeEncryptTransform(Buffer.concat([header, nonce]), payloadKey(fileKey, nonce), opts.release, pool);
}

class AgeEncryptTransform extends Transform {
  readonly #prefix: Buffer;
  readonly #key: KeyObject;
  readonly #release: ((chunk: Uint8Array) => void) | undefined;
  readonly #pool: BufferPool;
  readonly #plain = Buffer.allocUnsafe(AGE_CHUNK);
  #used = 0;
  #counter = 0;
  #started = false;
  /** The output block being filled, and how much of it is. */
  #block: Buffer | undefined;
  #filled = 0;
  readonly outputRelease: (chunk: Uint8Array) => void;

  constructor(prefix: Buffer, key: KeyObject, release: ((chunk: Uint8Array) => void) | undefined, pool: BufferPool) {
    super({ readableHighWaterMark: SEALED_CHUNK });
    this.#prefix = prefix;
    this.#key = key;
    this.#release = release;
    this.#pool = pool;
    this.outputRelease = pool.release;
  }

  /** Hands the filled part of the current block on (it is the consumer's until released). */
  #emit(): void {
    if (this.#block && this.#filled > 0) this.push(this.#block.subarray(0, this.#filled));
    else if (this.#block) this.#pool.release(this.#block);
    this.#block = undefined;
    this.#filled = 0;
  }

  /** Seals `plain` (the buffered chunk, or a whole chunk of the input) into the current output block. */
  #seal(last: boolean, plain: Buffer = this.#plain.subarray(0, this.#used)): void {
    const n = plain.length;
    if (!this.#block || this.#block.length - this.#filled < n + TAG) {
      this.#emit();
      this.#block = this.#pool.take();
    }
    const c = createCipheriv("chacha20-poly1305", this.#key, chunkNonce(this.#counter++, last), { authTagLength: TAG });
    this.#filled += copyAndFree(c.update(plain), this.#block, this.#filled);
    c.final();
    this.#filled += c.getAuthTag().copy(this.#block, this.#filled);
    this.#used = 0;
  }

  #begin(): void {
    if (this.#started) return;
    this.#started = true;
    // (not pooled: the consumer's release of it is a no-op)
    this.push(this.#prefix);
  }

  override _transform(chunk: Uint8Array | string, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      const b = toBuffer(chunk);
      this.#begin();
      for (let off = 0; off < b.length; ) {
        // A full chunk is sealed only once more data is known to follow: the last one carries the flag.
        if (this.#used === AGE_CHUNK) this.#seal(false);
        if (this.#used === 0 && b.length - off > AGE_CHUNK) {
          // a whole chunk of the input with more after it: sealed where it is, without a copy
          this.#seal(false, b.subarray(off, off + AGE_CHUNK));
          off += AGE_CHUNK;
          continue;
        }
        const n = Math.min(AGE_CHUNK - this.#used, b.length - off);
        b.copy(this.#plain, this.#used, off, off + n);
        this.#used += n;
        off += n;
      }
      if (typeof chunk !== "string") this.#release?.(chunk);
      this.#emit();
      cb();
    } catch (err: unknown) {
      cb(err as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    try {
      this.#begin();
      this.#seal(true);
      this.#emit();
      cb();
    } catch (err: unknown) {
      cb(err as Error);
    }
  }
}

/** Opens an age header: the file key, or an AgeError (kind "no-identity" when none of the identities is a recipient). */
export type HeaderOpener = (header: Uint8Array) => Promise<Uint8Array>;

/**
 * A HeaderOpener for X25519 identities (AGE-SECRET-KEY-1… strings): the first
 * X25519 stanza one of them unwraps gives the file key, which must then
 * verify the header's MAC.
 */
export function identityOpener(identities: readonly string[]): HeaderOpener {
  const keys = x25519Identities(identities);
  return async (header) => {
    const h = parseHeader(toBuffer(header));
    let fileKey: Buffer | undefined;
    for (const st of h.stanzas) {
      if (st.args[0] !== "X25519") continue;
      const share = st.args.length === 2 ? unb64(st.args[1]!) : undefined;
      if (!share || share.length !== 32 || st.body.length !== 32) throw new AgeError("header", "the age header has a malformed X25519 stanza");
      for (const id of keys) {
        let shared: Buffer;
        try {
          shared = diffieHellman({ privateKey: id.privateKey, publicKey: publicKeyOf(share) });
        } catch (err: unknown) {
          throw new AgeError("header", "the age header has an X25519 stanza with an invalid share", { cause: err });
        }
        if (shared.every((b) => b === 0)) throw new AgeError("header", "the age header has an X25519 stanza with a low-order share");
        const wrapKey = Buffer.from(hkdfSync("sha256", shared, Buffer.concat([share, id.pub]), X25519_LABEL, 32));
        fileKey = open(wrapKey, ZERO_NONCE, st.body);
        if (fileKey) break;
      }
      if (fileKey) break;
    }
    if (!fileKey) throw new AgeError("no-identity", "none of the identities is a recipient of this file");
    if (fileKey.length !== 16) throw new AgeError("header", "the age header's file key is not 16 bytes");
    if (!timingSafeEqual(headerMac(fileKey, h.upToDashes), h.mac)) throw new AgeError("damaged", "the header's MAC does not match: the header was changed or damaged");
    return fileKey;
  };
}

/**
 * Decrypts an age file as it streams: the header is opened with `open`
 * (before any plaintext is produced), then every chunk is authenticated
 * before its plaintext goes out. A changed byte, a cut or an extended file
 * fails the stream with an AgeError; plaintext of a chunk that fails its
 * tag is never emitted.
 */
export function ageDecryptStream(open: HeaderOpener, opts: { what?: string | undefined; poisonOnRelease?: boolean | undefined } = {}): AgeDecryptStream {
  return new AgeDecryptTransform(open, opts.what, new BufferPool(AGE_CHUNK, 32, { poisonOnRelease: opts.poisonOnRelease === true }));
}

/**
 * An age decryption stream. Each output chunk is one payload chunk's
 * plaintext in a pooled 64 KiB block (OpenSSL's output copied there and
 * freed at once, as in encryption): a consumer that has
 * copied or written a chunk may hand it back with `outputRelease`; one that
 * does not leaves it to the garbage collector.
 */
export type AgeDecryptStream = Transform & { readonly outputRelease: (chunk: Uint8Array) => void };

class AgeDecryptTransform extends Transform {
  readonly #open: HeaderOpener;
  #head: Buffer[] = [];
  #headLen = 0;
  #key: KeyObject | undefined;
  readonly #sealed = Buffer.allocUnsafe(SEALED_CHUNK);
  #used = 0;
  #counter = 0;

  readonly #what: string | undefined;
  readonly #pool: BufferPool;
  readonly outputRelease: (chunk: Uint8Array) => void;

  constructor(open: HeaderOpener, what: string | undefined, pool: BufferPool) {
    super({ readableHighWaterMark: 4 * AGE_CHUNK });
    this.#open = open;
    this.#what = what;
    this.#pool = pool;
    this.outputRelease = pool.release;
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
    const block = this.#pool.take();
    const len = copyAndFree(d.update(this.#sealed.subarray(0, n - TAG)), block, 0);
    try {
      d.final();
    } catch {
      this.#pool.release(block); // never went out
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
    if (len > 0) out.push(block.subarray(0, len));
    else this.#pool.release(block);
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
        for (const o of out) this.push(o);
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
          for (const o of out) this.push(o);
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
      for (const o of out) this.push(o);
      cb();
    } catch (err: unknown) {
      cb(this.#err(err));
    }
  }
}
