// Bearer-token check for /api/v1. Both sides are hashed with SHA-256 first,
// so timingSafeEqual always compares two 32-byte buffers: neither the token's
// length nor how many leading bytes match shows in the response time. Every
// request takes the same path (missing, malformed, wrong and right headers).
import { createHash, timingSafeEqual } from "node:crypto";

const sha256 = (s: string): Buffer => createHash("sha256").update(s, "utf8").digest();

export class BearerAuth {
  readonly #expected: Buffer;

  constructor(token: string) {
    if (token.length < 16) throw new Error("api token must be at least 16 characters");
    this.#expected = sha256(token);
  }

  /** True when `header` (the Authorization header) is "Bearer <token>". */
  check(header: string | string[] | undefined): boolean {
    const value = typeof header === "string" ? header : "";
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(value);
    const presented = m?.[1] ?? "";
    // Compared even when the header is missing or malformed, so that path costs the same.
    const equal = timingSafeEqual(sha256(presented), this.#expected);
    return equal && m !== null;
  }
}
