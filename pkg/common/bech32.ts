// bech32 (BIP 173), as age encodes its keys: "age1…" recipients and
// "AGE-SECRET-KEY-1…" identities. Used by the config validation (pkg/apis)
// and by the age module (pkg/encryption); imports no other package.
import { Buffer } from "node:buffer";

const BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
function polymod(values: number[]): number {
  const gen = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
  let chk = 1;
  for (const v of values) {
    const top = chk >>> 25;
    chk = ((chk & 0x1ffffff) << 5) ^ v;
    for (let i = 0; i < 5; i++) if ((top >>> i) & 1) chk ^= gen[i]!;
  }
  return chk >>> 0;
}
const hrpExpand = (hrp: string) => [...[...hrp].map((c) => c.charCodeAt(0) >> 5), 0, ...[...hrp].map((c) => c.charCodeAt(0) & 31)];

/** The 32 bytes a bech32 string of `hrp` holds (case-insensitive, not mixed), or undefined if it is not one. */
export function bech32Decode(s: string, hrp: string): Buffer | undefined {
  if (s !== s.toLowerCase() && s !== s.toUpperCase()) return undefined;
  const l = s.toLowerCase();
  if (!l.startsWith(`${hrp}1`)) return undefined;
  const data = [...l.slice(hrp.length + 1)].map((c) => BECH32.indexOf(c));
  if (data.length < 6 || data.some((d) => d < 0) || polymod([...hrpExpand(hrp), ...data]) !== 1) return undefined;
  let acc = 0;
  let bits = 0;
  const out: number[] = [];
  for (const v of data.slice(0, -6)) {
    acc = (acc << 5) | v;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((acc >>> bits) & 0xff);
    }
  }
  if (bits >= 5 || (acc & ((1 << bits) - 1)) !== 0 || out.length !== 32) return undefined;
  return Buffer.from(out);
}

export function bech32Encode(hrp: string, bytes: Buffer): string {
  const data: number[] = [];
  let acc = 0;
  let bits = 0;
  for (const b of bytes) {
    acc = ((acc << 8) | b) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      data.push((acc >>> bits) & 31);
    }
  }
  if (bits > 0) data.push((acc << (5 - bits)) & 31);
  const mod = polymod([...hrpExpand(hrp), ...data, 0, 0, 0, 0, 0, 0]) ^ 1;
  const check = [0, 1, 2, 3, 4, 5].map((i) => (mod >>> (5 * (5 - i))) & 31);
  return `${hrp}1${[...data, ...check].map((d) => BECH32[d]).join("")}`;
}
