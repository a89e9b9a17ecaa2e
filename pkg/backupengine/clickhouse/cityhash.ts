// CityHash128 as ClickHouse uses it for the checksum of every block of its
// compressed format: Google's CityHash v1.0.2 (ClickHouse kept that version
// for compatibility; later CityHash versions give other values). verify uses
// it to prove an lz4 backup's blocks from the bytes alone: a corrupted
// block whose object checksum was rewritten still fails here.
//
// Written with BigInt for clarity, not speed (tens of MB/s): it runs in
// verify only, never in the backup or restore data path, where ClickHouse
// checks the same checksums itself.

const M = (1n << 64n) - 1n;
const k0 = 0xc3a5c85c97cb3127n;
const k1 = 0xb492b66fbe98f273n;
const k2 = 0x9ae16a3b2f90404fn;
const k3 = 0xc949d7c7509e6557n;
const kMul = 0x9ddfea08eb382d69n;

const mul = (a: bigint, b: bigint) => (a * b) & M;
const add = (a: bigint, b: bigint) => (a + b) & M;
const sub = (a: bigint, b: bigint) => (a - b) & M;
const rot = (v: bigint, s: bigint) => (s === 0n ? v : ((v >> s) | (v << (64n - s))) & M);
const rotAtLeast1 = (v: bigint, s: bigint) => ((v >> s) | (v << (64n - s))) & M;
const shiftMix = (v: bigint) => v ^ (v >> 47n);

function hash128to64(lo: bigint, hi: bigint): bigint {
  let a = mul(lo ^ hi, kMul);
  a ^= a >> 47n;
  let b = mul(hi ^ a, kMul);
  b ^= b >> 47n;
  return mul(b, kMul);
}
const hashLen16 = (u: bigint, v: bigint) => hash128to64(u, v);

class Bytes {
  readonly b: Uint8Array;
  readonly view: DataView;
  constructor(b: Uint8Array, view: DataView) {
    this.b = b;
    this.view = view;
  }
  f64(i: number): bigint {
    return this.view.getBigUint64(i, true);
  }
  f32(i: number): bigint {
    return BigInt(this.view.getUint32(i, true));
  }
}

function hashLen0to16(s: Bytes, at: number, len: number): bigint {
  if (len > 8) {
    const a = s.f64(at);
    const b = s.f64(at + len - 8);
    return hashLen16(a, rotAtLeast1(add(b, BigInt(len)), BigInt(len))) ^ b;
  }
  if (len >= 4) {
    const a = s.f32(at);
    return hashLen16(add(BigInt(len), (a << 3n) & M), s.f32(at + len - 4));
  }
  if (len > 0) {
    const a = BigInt(s.b[at]!);
    const b = BigInt(s.b[at + (len >> 1)]!);
    const c = BigInt(s.b[at + len - 1]!);
    const y = (a + (b << 8n)) & 0xffffffffn;
    const z = (BigInt(len) + (c << 2n)) & 0xffffffffn;
    return mul(shiftMix(mul(y, k2) ^ mul(z, k3)), k2);
  }
  return k2;
}

function weakHashLen32WithSeeds(w: bigint, x: bigint, y: bigint, z: bigint, a: bigint, b: bigint): [bigint, bigint] {
  a = add(a, w);
  b = rot(add(add(b, a), z), 21n);
  const c = a;
  a = add(a, x);
  a = add(a, y);
  b = add(b, rot(a, 44n));
  return [add(a, z), add(b, c)];
}
const weakAt = (s: Bytes, at: number, a: bigint, b: bigint) => weakHashLen32WithSeeds(s.f64(at), s.f64(at + 8), s.f64(at + 16), s.f64(at + 24), a, b);

function cityMurmur(s: Bytes, at: number, len: number, seedLo: bigint, seedHi: bigint): [bigint, bigint] {
  let a = seedLo;
  let b = seedHi;
  let c: bigint;
  let d: bigint;
  let l = len - 16;
  if (l <= 0) {
    a = mul(shiftMix(mul(a, k1)), k1);
    c = add(mul(b, k1), hashLen0to16(s, at, len));
    d = shiftMix(add(a, len >= 8 ? s.f64(at) : c));
  } else {
    c = hashLen16(add(s.f64(at + len - 8), k1), a);
    d = hashLen16(add(b, BigInt(len)), add(c, s.f64(at + len - 16)));
    a = add(a, d);
    let p = at;
    do {
      a ^= mul(shiftMix(mul(s.f64(p), k1)), k1);
      a = mul(a, k1);
      b ^= a;
      c ^= mul(shiftMix(mul(s.f64(p + 8), k1)), k1);
      c = mul(c, k1);
      d ^= c;
      p += 16;
      l -= 16;
    } while (l > 0);
  }
  a = hashLen16(a, c);
  b = hashLen16(d, b);
  return [a ^ b, hashLen16(b, a)];
}

function cityHash128WithSeed(s: Bytes, at: number, len: number, seedLo: bigint, seedHi: bigint): [bigint, bigint] {
  if (len < 128) return cityMurmur(s, at, len, seedLo, seedHi);
  let x = seedLo;
  let y = seedHi;
  let z = mul(BigInt(len), k1);
  let v0 = add(mul(rot(y ^ k1, 49n), k1), s.f64(at));
  let v1 = add(mul(rot(v0, 42n), k1), s.f64(at + 8));
  let w0 = add(mul(rot(add(y, z), 35n), k1), x);
  let w1 = mul(rot(add(x, s.f64(at + 88)), 53n), k1);
  let p = at;
  do {
    for (let half = 0; half < 2; half++) {
      x = mul(rot(add(add(add(x, y), v0), s.f64(p + 16)), 37n), k1);
      y = mul(rot(add(add(y, v1), s.f64(p + 48)), 42n), k1);
      x ^= w1;
      y ^= v0;
      z = rot(z ^ w0, 33n);
      [v0, v1] = weakAt(s, p, mul(v1, k1), add(x, w0));
      [w0, w1] = weakAt(s, p + 32, add(z, w1), y);
      [z, x] = [x, z];
      p += 64;
    }
    len -= 128;
  } while (len >= 128);
  y = add(y, add(mul(rot(w0, 37n), k0), z));
  x = add(x, mul(rot(add(v0, z), 49n), k0));
  for (let done = 0; done < len; ) {
    done += 32;
    y = add(mul(rot(sub(y, x), 42n), k0), v1);
    w0 = add(w0, s.f64(p + len - done + 16));
    x = add(mul(rot(x, 49n), k0), w0);
    w0 = add(w0, v0);
    [v0, v1] = weakAt(s, p + len - done, v0, v1);
  }
  x = hashLen16(x, v0);
  y = hashLen16(y, w0);
  return [add(hashLen16(add(x, v1), w1), y), hashLen16(add(x, w1), add(y, v1))];
}

/** CityHash128 (v1.0.2) of `data`: [low 64 bits, high 64 bits]. */
export function cityHash128(data: Uint8Array): [bigint, bigint] {
  const s = new Bytes(data, new DataView(data.buffer, data.byteOffset, data.byteLength));
  const len = data.length;
  if (len >= 16) return cityHash128WithSeed(s, 16, len - 16, s.f64(0) ^ k3, s.f64(8));
  if (len >= 8) return cityHash128WithSeed(s, 0, 0, s.f64(0) ^ mul(BigInt(len), k0), s.f64(len - 8) ^ k1);
  return cityHash128WithSeed(s, 0, len, k0, k1);
}

/**
 * Whether a block of ClickHouse's compressed format (16 checksum bytes, then
 * the method byte, the two sizes and the compressed data) holds the checksum
 * of its content.
 */
export function compressedBlockChecksumOk(block: Uint8Array): boolean {
  const view = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const [lo, hi] = cityHash128(block.subarray(16));
  return view.getBigUint64(0, true) === lo && view.getBigUint64(8, true) === hi;
}
