/** The codec targets' loops: as many inputs as the budget allows, in-process. */
import type { RequestShape } from '../../src/protocol/usbip/index.js';
import type { Role } from '../../src/protocol/usbredir/index.js';
import { FuzzFailure, installAllocationGuard, runUsbipCase, runUsbredirCase } from './codec.js';
import type { Corpus } from './corpus.js';
import { inputRand, usbipCase, usbredirCase } from './inputs.js';
import { b64, peakRssMiB, resetPeakRss, type SavedInput, saveFailure, type TargetResult, unb64 } from './report.js';

export interface Budget {
  inputs: number;
  ms: number;
}

export interface RunContext {
  seed: number;
  corpus: Corpus;
  failuresDir: string;
  /** Stop a target after this many failures (each is saved). */
  maxFailures: number;
}

type CodecTarget = 'codec-usbip' | 'codec-usbredir';

function buildCase(target: CodecTarget, ctx: RunContext, index: number) {
  const rand = inputRand(ctx.seed, target, index);
  if (target === 'codec-usbip') {
    const c = usbipCase(ctx.corpus, rand);
    return {
      run: () => runUsbipCase(c),
      saved: () => ({
        role: c.role,
        source: c.source,
        mutations: c.mutations,
        bytes: b64(c.bytes),
        chunks: c.chunks,
        shapes: [...c.shapes],
      }),
    };
  }
  const c = usbredirCase(ctx.corpus, rand);
  return {
    run: () => runUsbredirCase(c),
    saved: () => ({
      role: c.role,
      source: c.source,
      mutations: c.mutations,
      ourCaps: c.ourCaps,
      bytes: b64(c.bytes),
      chunks: c.chunks,
    }),
  };
}

export function runCodecTarget(target: CodecTarget, ctx: RunContext, budget: Budget): TargetResult {
  installAllocationGuard();
  resetPeakRss();
  const started = Date.now();
  const failures: string[] = [];
  const reasons = new Map<string, number>();
  let packets = 0;
  let index = 0;
  for (; index < budget.inputs; index++) {
    if ((index & 255) === 0 && Date.now() - started > budget.ms) break;
    const c = buildCase(target, ctx, index);
    try {
      const r = c.run();
      packets += r.packets;
      const key = r.error ?? 'parsed to the end';
      reasons.set(key, (reasons.get(key) ?? 0) + 1);
    } catch (err) {
      const error = err instanceof FuzzFailure ? err.message : `harness: ${(err as Error)?.stack ?? String(err)}`;
      const saved: SavedInput = { target, seed: ctx.seed, index, error, input: c.saved() };
      failures.push(`input ${index}: ${error.split('\n')[0]} (saved ${saveFailure(ctx.failuresDir, saved)})`);
      if (failures.length >= ctx.maxFailures) {
        index++;
        break;
      }
    }
  }
  const top = [...reasons.entries()].sort((a, b) => b[1] - a[1]).slice(0, 6);
  return {
    target,
    inputs: index,
    ms: Date.now() - started,
    peakRssMiB: peakRssMiB(),
    failures,
    details: [`${packets} packets decoded and round-tripped; outcomes: ${top.map(([k, n]) => `${k} ${n}`).join(', ')}`],
  };
}

/** Run one saved codec input again; returns what it did (throws FuzzFailure if it still fails). */
export function replayCodec(saved: SavedInput): string {
  installAllocationGuard();
  const i = saved.input;
  const bytes = unb64(i.bytes);
  const chunks = i.chunks as number[];
  if (saved.target === 'codec-usbip') {
    const shapes = new Map<number, RequestShape>(i.shapes as [number, RequestShape][]);
    const r = runUsbipCase({ role: i.role as 'server' | 'client', bytes, chunks, shapes });
    return `${r.packets} packets, ${r.error ?? 'no error'}`;
  }
  const r = runUsbredirCase({ role: i.role as Role, ourCaps: i.ourCaps as number[], bytes, chunks });
  return `${r.packets} packets, ${r.error ?? 'no error'}`;
}
