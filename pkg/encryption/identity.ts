// age identities (private keys) for restores and verifies. They come from a
// file (`--identity FILE`, or a file the API request names under the runner's
// identity directory), live only in this object for one operation, and never
// show in a log, an error, a status or a JSON answer: the object prints as
// "[age identities]" and its errors name lines, never their content.
import { readFile, realpath } from "node:fs/promises";
import { isAbsolute, relative, resolve, sep } from "node:path";
import { inspect } from "node:util";
import { recipientFingerprint } from "../apis/encryption.ts";
import { identityOpener, identityRecipient, type HeaderOpener } from "./age.ts";

export class IdentityError extends Error {
  constructor(message: string, opts?: { cause?: unknown }) {
    super(message, opts);
    this.name = "IdentityError";
  }
}

export class AgeIdentities {
  readonly #keys: readonly string[];
  /** Fingerprints (recipientFingerprint) of the recipients these identities open, in file order. */
  readonly fingerprints: readonly string[];
  /** Where they came from (a file name), for messages. */
  readonly source: string;

  private constructor(keys: string[], fingerprints: string[], source: string) {
    this.#keys = keys;
    this.fingerprints = fingerprints;
    this.source = source;
  }

  /**
   * Parses an age identity file: AGE-SECRET-KEY-1… lines (X25519), blank
   * lines and # comments. A bad line is named by its number, never shown.
   */
  static async parse(text: string, source: string): Promise<AgeIdentities> {
    const keys: string[] = [];
    const lines = text.split(/\r?\n/);
    for (let i = 0; i < lines.length; i++) {
      const l = lines[i]!.trim();
      if (l === "" || l.startsWith("#")) continue;
      if (!/^AGE-SECRET-KEY-1[0-9A-Z]+$/.test(l)) {
        throw new IdentityError(`identity file ${source}: line ${i + 1} is not an age X25519 identity (AGE-SECRET-KEY-1…, as age-keygen writes); its content is not shown`);
      }
      keys.push(l);
    }
    if (keys.length === 0) throw new IdentityError(`identity file ${source} holds no identity (AGE-SECRET-KEY-1… lines)`);
    const fingerprints: string[] = [];
    for (const [n, k] of keys.entries()) {
      const r = identityRecipient(k);
      if (r === undefined) throw new IdentityError(`identity file ${source}: identity ${n + 1} is malformed (bad bech32 encoding or checksum); its content is not shown`);
      fingerprints.push(recipientFingerprint(r));
    }
    return new AgeIdentities(keys, fingerprints, source);
  }

  static async fromFile(path: string): Promise<AgeIdentities> {
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (err: unknown) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new IdentityError(`identity file ${path} cannot be read${code ? ` (${code})` : ""}`);
    }
    return AgeIdentities.parse(text, path);
  }

  /**
   * An identity file named by an API request: `name` is a path relative to
   * `dir` (a mounted Secret's key, say `key.txt`); it must stay inside `dir`
   * after symlinks are followed (Secret volumes are symlinks into `..data`).
   */
  static async fromDir(dir: string, name: string): Promise<AgeIdentities> {
    if (name === "" || isAbsolute(name) || name.split(/[\\/]/).some((s) => s === "" || s === "." || s === "..") || name.includes("\0")) {
      throw new IdentityError(`identityFile "${name}" must be a relative path inside the identity directory, without . or .. segments`);
    }
    let root: string;
    let file: string;
    try {
      root = await realpath(dir);
      file = await realpath(resolve(dir, name));
    } catch (err: unknown) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new IdentityError(
        `identityFile "${name}" not found in the identity directory ${dir}${code ? ` (${code})` : ""}: create the runner's identity Secret with that key, then wait until it is mounted (about a minute)`,
      );
    }
    const rel = relative(root, file);
    if (rel === "" || rel.startsWith(`..${sep}`) || rel === ".." || isAbsolute(rel)) throw new IdentityError(`identityFile "${name}" points outside the identity directory ${dir}`);
    return AgeIdentities.fromFile(file);
  }

  /** Opens age headers with these identities (see age.ts). */
  opener(): HeaderOpener {
    return identityOpener(this.#keys);
  }

  /** Whether one of these identities is one of `fingerprints`' recipients. */
  matchesAny(fingerprints: readonly string[]): boolean {
    return this.fingerprints.some((f) => fingerprints.includes(f));
  }

  toJSON(): string {
    return "[age identities]";
  }

  toString(): string {
    return "[age identities]";
  }

  [inspect.custom](): string {
    return `[age identities from ${this.source}: recipient fingerprints ${this.fingerprints.join(", ")}]`;
  }
}
