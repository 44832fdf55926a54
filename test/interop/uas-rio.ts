// Host side of the guest tool `rio` (guest/tools/rio.c): NPROC processes doing random direct
// reads and writes of their own regions at once. The host replays each child's operations from
// the seed (same PRNG, same block contents as rio.c) to know the final content of every region,
// and checks the image byte for byte; everything else must be what it was before.
import assert from 'node:assert/strict';
import { readAt } from './rig.js';

export const RIO_BLOCK = 4096;
const MAX_RUN = 8;
const MAGIC = 0x214f4952;

export interface RioPlan {
  /** byte offset of child 0's region */
  base: number;
  /** bytes per child */
  region: number;
  nproc: number;
  ops: number;
  seed: number;
}

function hash32(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

/** Block `blk` of a child's region as its write `op` wrote it (rio.c block_content). */
export function rioBlock(seed: number, child: number, op: number, blk: number): Buffer {
  const h = hash32(
    (seed ^ hash32((Math.imul(child, 0x9e3779b9) ^ hash32((op ^ hash32((blk + 0x85ebca6b) >>> 0)) >>> 0)) >>> 0)) >>> 0,
  );
  const b = Buffer.alloc(RIO_BLOCK);
  b.writeUInt32LE(MAGIC, 0);
  b.writeUInt32LE(child, 4);
  b.writeUInt32LE(op, 8);
  b.writeUInt32LE(blk, 12);
  for (let j = 4; j < RIO_BLOCK / 4; j++) b.writeUInt32LE(hash32((h + j) >>> 0), j * 4);
  return b;
}

/** For each block of child `child`'s region: the op that wrote it last, or -1 (original). */
export function rioLastWriters(plan: RioPlan, child: number): { last: Int32Array; writes: number; reads: number } {
  const nblocks = plan.region / RIO_BLOCK;
  const last = new Int32Array(nblocks).fill(-1);
  let s = (hash32((plan.seed ^ Math.imul(child + 1, 0x9e3779b9)) >>> 0) | 1) >>> 0;
  const next = () => {
    s = (s ^ (s << 13)) >>> 0;
    s = (s ^ (s >>> 17)) >>> 0;
    s = (s ^ (s << 5)) >>> 0;
    return s;
  };
  let writes = 0;
  let reads = 0;
  for (let op = 0; op < plan.ops; op++) {
    const kind = next() & 1;
    const run = Math.min(1 + (next() % MAX_RUN), nblocks);
    const at = next() % (nblocks - run + 1);
    if (kind === 0) {
      for (let k = 0; k < run; k++) last[at + k] = op;
      writes++;
    } else reads++;
  }
  return { last, writes, reads };
}

export function fnv1a(buf: Buffer, h = 0x811c9dc5): number {
  for (let i = 0; i < buf.length; i++) h = Math.imul(h ^ buf[i]!, 16777619) >>> 0;
  return h >>> 0;
}

/** The bytes rio's whole run leaves in the image: the written blocks over `orig` (all regions). */
export function rioFinal(plan: RioPlan, orig: Buffer): Buffer {
  const out = Buffer.from(orig);
  for (let c = 0; c < plan.nproc; c++) {
    const { last } = rioLastWriters(plan, c);
    last.forEach((op, blk) => {
      if (op >= 0) rioBlock(plan.seed, c, op, blk).copy(out, c * plan.region + blk * RIO_BLOCK);
    });
  }
  return out;
}

/** Whole extent of the regions, as a range for "nothing else changed" checks. */
export function rioRange(plan: RioPlan): { name: string; offset: number; length: number } {
  return { name: 'rio', offset: plan.base, length: plan.nproc * plan.region };
}

/** Guest command: run rio on DEV, output to OUT (the host parses it with parseRioOutput). */
export function guestRio(plan: RioPlan, dev: string, out: string): string {
  return `rio ${dev} ${plan.nproc} ${plan.base} ${plan.region} ${plan.ops} ${plan.seed} > ${out} 2>&1`;
}

export interface RioChild {
  writes: number;
  reads: number;
  fnv: number;
}

/** rio's output: every child's line and the summary; throws with the output unless all is ok. */
export function parseRioOutput(text: string, plan: RioPlan): { children: RioChild[]; seconds: number } {
  const children: RioChild[] = [];
  for (const m of text.matchAll(/^child (\d+) ok writes (\d+) reads (\d+) fnv ([0-9a-f]{8})$/gm)) {
    children[Number(m[1])] = { writes: Number(m[2]), reads: Number(m[3]), fnv: Number.parseInt(m[4]!, 16) };
  }
  const sum = /^rio: ok (\d+) ops in ([\d.]+) s$/m.exec(text);
  assert.ok(sum, `rio did not finish ok:\n${text}`);
  assert.equal(Number(sum[1]), plan.nproc * plan.ops, `rio ops:\n${text}`);
  for (let c = 0; c < plan.nproc; c++) assert.ok(children[c], `no ok line for rio child ${c}:\n${text}`);
  return { children, seconds: Number(sum[2]) };
}

/**
 * Host side: every region of the image holds what the replay says (the original bytes `orig`
 * of the whole extent, before the run, plus each child's last writes), the guest's counts and
 * FNV of each region agree with the replay.
 */
export async function assertRioImage(img: string, plan: RioPlan, orig: Buffer, children: RioChild[]): Promise<void> {
  const want = rioFinal(plan, orig);
  const got = await readAt(img, plan.base, plan.nproc * plan.region);
  for (let c = 0; c < plan.nproc; c++) {
    const { writes, reads } = rioLastWriters(plan, c);
    assert.deepEqual(
      { writes: children[c]!.writes, reads: children[c]!.reads },
      { writes, reads },
      `rio child ${c}: op counts of the guest vs the replay`,
    );
    const w = want.subarray(c * plan.region, (c + 1) * plan.region);
    const g = got.subarray(c * plan.region, (c + 1) * plan.region);
    if (!g.equals(w)) {
      let i = 0;
      while (g[i] === w[i]) i++;
      const at = plan.base + c * plan.region + i;
      const hdr = g.subarray(i - (i % RIO_BLOCK), i - (i % RIO_BLOCK) + 16);
      const found =
        hdr.readUInt32LE(0) === MAGIC
          ? `a block of child ${hdr.readUInt32LE(4)} op ${hdr.readUInt32LE(8)} block ${hdr.readUInt32LE(12)}`
          : 'not a rio block';
      assert.fail(
        `rio region ${c} differs in the image at byte ${at} (region block ${Math.floor(i / RIO_BLOCK)}): found ${found}`,
      );
    }
    assert.equal(fnv1a(g), children[c]!.fnv, `rio child ${c}: FNV of the region the guest read vs the image`);
  }
}
