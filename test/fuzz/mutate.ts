/** Seeded byte-stream mutations for the fuzzer: everything here is a pure function of `rand`. */

export type Rand = () => number;

export function int(rand: Rand, n: number): number {
  return Math.floor(rand() * n);
}

export function pick<T>(rand: Rand, items: readonly T[]): T {
  return items[int(rand, items.length)]!;
}

/** Values that sit on the edges length and count fields are checked against. */
const EXTREMES32 = [
  0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 0x10001, 0x7fffffff, 0x80000000, 0xffffffff, 0xfffffffe,
  0x01000000, 0x02000000, 0x02000001, 0x08000400, 0x08000401, 1024, 1025, 4096, 4097, 31, 32, 33, 312, 48,
];

export type Endian = 'be' | 'le';

/** Overwrite a 1/2/4-byte field at an aligned offset with an edge value, near its old value or random. */
function lengthField(rand: Rand, b: Buffer, endian: Endian): void {
  const width = pick(rand, [1, 2, 4, 4, 4] as const);
  if (b.length < width) return;
  const at = int(rand, Math.floor(b.length / width)) * width;
  const old = width === 1 ? b[at]! : width === 2 ? read16(b, at, endian) : read32(b, at, endian);
  const mask = width === 4 ? 0xffffffff : width === 2 ? 0xffff : 0xff;
  const choice = int(rand, 4);
  let v =
    choice === 0
      ? pick(rand, EXTREMES32)
      : choice === 1
        ? old + pick(rand, [-1, 1, -2, 2, 16, -16, 4096])
        : choice === 2
          ? old * pick(rand, [2, 16, 0x100, 0x10000])
          : int(rand, 0x100000000);
  v = (v >>> 0) & mask;
  if (width === 1) b[at] = v;
  else if (width === 2) endian === 'be' ? b.writeUInt16BE(v >>> 0, at) : b.writeUInt16LE(v >>> 0, at);
  else endian === 'be' ? b.writeUInt32BE(v >>> 0, at) : b.writeUInt32LE(v >>> 0, at);
}

function read16(b: Buffer, at: number, endian: Endian): number {
  return endian === 'be' ? b.readUInt16BE(at) : b.readUInt16LE(at);
}
function read32(b: Buffer, at: number, endian: Endian): number {
  return endian === 'be' ? b.readUInt32BE(at) : b.readUInt32LE(at);
}

function randomBytes(rand: Rand, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = int(rand, 256);
  return b;
}

export const MUTATIONS = [
  'bit-flip',
  'byte-set',
  'insert',
  'delete',
  'length-field',
  'splice',
  'truncate',
  'duplicate',
  'random',
] as const;
export type Mutation = (typeof MUTATIONS)[number];

/**
 * One mutated copy of `base`: 1 to 4 mutations (the names are returned for statistics). `others`
 * are the other streams of the same direction, for splicing. The result is never longer than
 * `maxLength`.
 */
export function mutate(
  rand: Rand,
  base: Buffer,
  others: readonly Buffer[],
  endian: Endian,
  maxLength = 1 << 20,
): { bytes: Buffer; applied: Mutation[] } {
  let b = Buffer.from(base);
  const applied: Mutation[] = [];
  const count = 1 + int(rand, rand() < 0.6 ? 1 : 4);
  for (let i = 0; i < count; i++) {
    const m = pick(rand, MUTATIONS);
    applied.push(m);
    switch (m) {
      case 'bit-flip':
        if (b.length > 0) {
          const at = int(rand, b.length);
          b[at] = b[at]! ^ (1 << int(rand, 8));
        }
        break;
      case 'byte-set':
        if (b.length > 0) b[int(rand, b.length)] = pick(rand, [0, 0xff, 0x80, 0x7f, 1, int(rand, 256)]);
        break;
      case 'insert': {
        const at = int(rand, b.length + 1);
        const n = 1 + int(rand, rand() < 0.8 ? 8 : 512);
        b = Buffer.concat([b.subarray(0, at), randomBytes(rand, n), b.subarray(at)]);
        break;
      }
      case 'delete': {
        if (b.length === 0) break;
        const at = int(rand, b.length);
        const n = 1 + int(rand, rand() < 0.8 ? 8 : 256);
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + n)]);
        break;
      }
      case 'length-field':
        lengthField(rand, b, endian);
        break;
      case 'splice': {
        const other = others.length > 0 ? pick(rand, others) : b;
        const cut = int(rand, b.length + 1);
        const from = int(rand, other.length + 1);
        b = Buffer.concat([b.subarray(0, cut), other.subarray(from)]);
        break;
      }
      case 'truncate':
        b = b.subarray(0, int(rand, b.length + 1));
        break;
      case 'duplicate': {
        if (b.length === 0) break;
        const at = int(rand, b.length);
        const n = 1 + int(rand, Math.min(b.length - at, 400));
        const to = int(rand, b.length + 1);
        b = Buffer.concat([b.subarray(0, to), b.subarray(at, at + n), b.subarray(to)]);
        break;
      }
      case 'random':
        b = Buffer.concat([b.subarray(0, int(rand, b.length + 1)), randomBytes(rand, int(rand, 256))]);
        break;
    }
  }
  if (b.length > maxLength) b = b.subarray(0, maxLength);
  return { bytes: b, applied };
}

/** Split a stream into the pieces it arrives in: mostly small, sometimes one byte, sometimes whole. */
export function chunkSizes(rand: Rand, length: number): number[] {
  const sizes: number[] = [];
  const style = int(rand, 4);
  let left = length;
  while (left > 0) {
    const n =
      style === 0 ? left : style === 1 ? 1 + int(rand, 4) : style === 2 ? 1 + int(rand, 64) : 1 + int(rand, 4096);
    const take = Math.min(n, left);
    sizes.push(take);
    left -= take;
  }
  return sizes;
}
