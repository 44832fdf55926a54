/** Failures saved for replay, memory figures, and the per-target summary line. */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export interface SavedInput {
  target: string;
  seed: number;
  index: number;
  error: string;
  /** Everything the target needs to run this input again, JSON-safe (buffers as base64). */
  input: Record<string, unknown>;
}

export function saveFailure(dir: string, f: SavedInput): string {
  mkdirSync(dir, { recursive: true });
  const file = resolve(join(dir, `${f.target}-seed${f.seed}-${f.index}.json`));
  writeFileSync(file, `${JSON.stringify(f, null, 1)}\n`);
  return file;
}

export function loadFailure(file: string): SavedInput {
  return JSON.parse(readFileSync(file, 'utf8')) as SavedInput;
}

export function b64(b: Buffer): string {
  return b.toString('base64');
}

export function unb64(s: unknown): Buffer {
  return Buffer.from(String(s), 'base64');
}

/** Peak resident set size of a process in MiB (Linux VmHWM), or NaN elsewhere. */
export function peakRssMiB(pid: number | 'self' = 'self'): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** Start a new peak measurement for this process (the peak restarts from the current RSS). */
export function resetPeakRss(): void {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
  } catch {
    // Not Linux, or not allowed: the peak then covers the whole run.
  }
}

export interface TargetResult {
  target: string;
  inputs: number;
  ms: number;
  /** Peak RSS of the process running the code under test during this target, MiB. */
  peakRssMiB: number;
  failures: string[];
  details: string[];
}

export function formatResult(r: TargetResult): string {
  const rate = r.inputs / Math.max(r.ms / 1000, 1e-3);
  const status = r.failures.length === 0 ? 'ok' : `${r.failures.length} FAILED`;
  const head =
    `${r.target.padEnd(16)} ${String(r.inputs).padStart(9)} inputs  ${(r.ms / 1000).toFixed(1).padStart(6)} s  ` +
    `${rate.toFixed(0).padStart(7)} inputs/s  peak RSS ${r.peakRssMiB.toFixed(0).padStart(4)} MiB  ${status}`;
  return [head, ...r.details.map((d) => `    ${d}`), ...r.failures.map((f) => `    FAIL ${f}`)].join('\n');
}
