// Host side of the guest tool dwlog (guest/tools/dwlog.c): its write log and the bytes of each
// write, to check an image after a fault at exactly the offsets the guest saw complete.
import { readFileSync } from 'node:fs';
import { readAt } from './rig.js';

/** dwlog's write sizes, in order (write ID uses SIZES[ID % 8]). */
export const DWLOG_SIZES = [4096, 65536, 512, 126976, 266240, 16384, 1536, 32768] as const;

export interface LoggedWrite {
  id: number;
  offset: number;
  length: number;
}

export interface WriteLog {
  /** writes the guest saw complete */
  done: LoggedWrite[];
  /** the write that failed (the fault reached the writer), if the writer lived to log it */
  failed?: LoggedWrite & { errno: number };
  /** the writer reached the end of its region before the fault */
  full: boolean;
}

export function parseWriteLog(text: string): WriteLog {
  const log: WriteLog = { done: [], full: false };
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f[0] === 'W' && f.length === 4) log.done.push({ id: +f[1]!, offset: +f[2]!, length: +f[3]! });
    else if (f[0] === 'E' && f.length === 5) log.failed = { id: +f[1]!, offset: +f[2]!, length: +f[3]!, errno: +f[4]! };
    else if (f[0] === 'F') log.full = true;
  }
  return log;
}

export function readWriteLog(path: string): WriteLog {
  return parseWriteLog(readFileSync(path, 'utf8'));
}

/** Completed writes in a log file (0 when it does not exist yet). */
export function countLogged(path: string): number {
  try {
    return parseWriteLog(readFileSync(path, 'utf8')).done.length;
  } catch {
    return 0;
  }
}

function seedOf(seed: number, id: number): number {
  let s = (Math.imul(seed, 0x9e3779b1) ^ Math.imul(id + 1, 0x85ebca6b)) >>> 0;
  s = (s ^ (s >>> 16)) >>> 0;
  s = Math.imul(s, 0x7feb352d) >>> 0;
  s = (s ^ (s >>> 15)) >>> 0;
  return s === 0 ? 1 : s;
}

/** The bytes dwlog writes for write `id` (xorshift32 words, little-endian). */
export function dwlogBytes(seed: number, id: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let s = seedOf(seed, id);
  for (let i = 0; i < length; i += 4) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out.writeUInt32LE(s >>> 0, i);
  }
  return out;
}

/**
 * Every logged write is in the image byte for byte. Returns the number of bytes checked; throws
 * naming the first write that is not there.
 */
export async function assertLoggedWritesInImage(img: string, log: WriteLog, seed: number): Promise<number> {
  let bytes = 0;
  for (const w of log.done) {
    const got = await readAt(img, w.offset, w.length);
    const want = dwlogBytes(seed, w.id, w.length);
    if (!got.equals(want)) {
      let i = 0;
      while (i < got.length && got[i] === want[i]) i++;
      throw new Error(
        `write ${w.id} (${w.length} bytes at ${w.offset}) completed in the guest but is not in ${img}: first difference at offset ${w.offset + i}`,
      );
    }
    bytes += w.length;
  }
  return bytes;
}

/**
 * The range a writer may have touched: from its start to the end of the write after the last
 * logged one (that one was in flight when the fault hit, so it may be there in part or not at all).
 */
export function touchedRange(log: WriteLog, start: number): { offset: number; length: number } {
  const next = log.done.length;
  const last = log.done[next - 1];
  const end = (last ? last.offset + last.length : start) + DWLOG_SIZES[next % DWLOG_SIZES.length]!;
  return { offset: start, length: end - start };
}
