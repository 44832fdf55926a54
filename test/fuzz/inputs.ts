/** Turning (seed, target, index) into one concrete input, so any input can be rebuilt from its numbers. */

import { GUEST_CAPS } from '../../src/client/usbredir/connection.js';
import { capsFrom, type Role } from '../../src/protocol/usbredir/index.js';
import { prng } from '../support/prng.js';
import { requestShapes, type UsbipCase, type UsbredirCase } from './codec.js';
import type { Corpus, Protocol, Transcript } from './corpus.js';
import { chunkSizes, type Endian, int, mutate, pick, type Rand } from './mutate.js';

/** What our usbredir host announces (session.ts), bulk streams included for the larger layouts. */
export const HOST_CAPS: readonly number[] = [0, 1, 2, 3, 4, 5, 6, 7];

export function inputRand(seed: number, target: string, index: number): Rand {
  let h = seed >>> 0;
  for (let i = 0; i < target.length; i++) h = Math.imul(h ^ target.charCodeAt(i), 0x01000193) >>> 0;
  h = Math.imul(h ^ index, 0x9e3779b1) >>> 0;
  h = Math.imul(h ^ Math.floor(index / 0x100000000), 0x85ebca6b) >>> 0;
  return prng(h);
}

export function streams(corpus: Corpus, protocol: Protocol): Transcript[] {
  return corpus.transcripts.filter((t) => t.protocol === protocol);
}

/** A mutated copy of one direction of a transcript (sometimes left intact, sometimes plain noise). */
export function mutatedStream(
  rand: Rand,
  base: Buffer,
  others: readonly Buffer[],
  endian: Endian,
): { bytes: Buffer; mutations: string } {
  const r = rand();
  if (r < 0.02) return { bytes: Buffer.from(base), mutations: 'none' };
  if (r < 0.06) {
    const noise = Buffer.alloc(int(rand, 600));
    for (let i = 0; i < noise.length; i++) noise[i] = int(rand, 256);
    return { bytes: noise, mutations: 'noise' };
  }
  const { bytes, applied } = mutate(rand, base, others, endian);
  return { bytes, mutations: applied.join('+') };
}

const shapesCache = new WeakMap<Transcript, ReturnType<typeof requestShapes>>();

export function usbipCase(corpus: Corpus, rand: Rand): UsbipCase & { source: string; mutations: string } {
  const all = streams(corpus, 'usbip');
  const t = pick(rand, all);
  const role = rand() < 0.5 ? 'server' : 'client';
  const dir = role === 'server' ? 'toServer' : 'toClient';
  const { bytes, mutations } = mutatedStream(
    rand,
    t[dir],
    all.map((s) => s[dir]),
    'be',
  );
  let shapes = shapesCache.get(t);
  if (!shapes) {
    shapes = requestShapes(t.toServer);
    shapesCache.set(t, shapes);
  }
  return { role, bytes, chunks: chunkSizes(rand, bytes.length), shapes, source: `${t.name}.${dir}`, mutations };
}

function randomCaps(rand: Rand): number[] {
  return capsFrom([0, 1, 2, 3, 4, 5, 6, 7].filter(() => rand() < 0.5));
}

export function usbredirCase(corpus: Corpus, rand: Rand): UsbredirCase & { source: string; mutations: string } {
  const all = streams(corpus, 'usbredir');
  const t = pick(rand, all);
  const role: Role = rand() < 0.5 ? 'host' : 'guest';
  const dir = role === 'host' ? 'toServer' : 'toClient';
  const { bytes, mutations } = mutatedStream(
    rand,
    t[dir],
    all.map((s) => s[dir]),
    'le',
  );
  const ourCaps = rand() < 0.6 ? capsFrom(role === 'host' ? HOST_CAPS : GUEST_CAPS) : randomCaps(rand);
  return { role, ourCaps, bytes, chunks: chunkSizes(rand, bytes.length), source: `${t.name}.${dir}`, mutations };
}
