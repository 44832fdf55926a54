/**
 * Client targets: our USB/IP and usbredir clients against a hostile server replaying mutated
 * server streams (client-child.ts). Oracles: the client process never crashes; each input
 * settles (import refused or device used and closed) with every step under its deadline; no
 * internal-error log line; peak RSS of the client process.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { ClientInput, ClientOutcome } from './client-child.js';
import type { Budget, RunContext } from './codec-target.js';
import { type Corpus, loadCorpus, type Protocol } from './corpus.js';
import { inputRand, mutatedStream, streams } from './inputs.js';
import { int } from './mutate.js';
import { peakRssMiB, type SavedInput, saveFailure, type TargetResult } from './report.js';
import { buildDevices } from './scenario.js';

/** No input may take longer than this in the client process, whatever the server does. */
const INPUT_BOUND_MS = 30_000;
const CHILD = fileURLToPath(new URL('./client-child.js', import.meta.url));

const BUSIDS = (() => {
  const d = buildDevices();
  void d.registry.closeAll();
  return d.busid;
})();

class ClientProcess {
  readonly child: ChildProcess;
  crashed: string | undefined;
  #ready: Promise<void>;
  readonly #pending = new Map<number, (m: ClientOutcome | { crash: string }) => void>();

  constructor() {
    this.child = fork(CHILD, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let ready!: () => void;
    this.#ready = new Promise((r) => {
      ready = r;
    });
    this.child.on('message', (m: { type: string; error?: string; id?: number }) => {
      if (m.type === 'ready') ready();
      else if (m.type === 'crash') this.crashed = m.error;
      else if (m.type === 'done') {
        const p = this.#pending.get(m.id!);
        this.#pending.delete(m.id!);
        p?.(m as ClientOutcome);
      }
    });
    this.child.on('exit', (code, signal) => {
      this.crashed ??= `client process exited (code ${code}, signal ${signal})`;
      for (const p of this.#pending.values()) p({ crash: this.crashed });
      this.#pending.clear();
    });
  }

  async run(input: ClientInput): Promise<ClientOutcome | { crash: string } | { hang: string }> {
    await this.#ready;
    if (this.crashed) return { crash: this.crashed };
    let timer: NodeJS.Timeout | undefined;
    const result = await Promise.race([
      new Promise<ClientOutcome | { crash: string }>((resolve) => {
        this.#pending.set(input.id, resolve);
        this.child.send(input);
      }),
      new Promise<{ hang: string }>((resolve) => {
        timer = setTimeout(() => resolve({ hang: `input not settled within ${INPUT_BOUND_MS} ms` }), INPUT_BOUND_MS);
      }),
    ]);
    clearTimeout(timer);
    this.#pending.delete(input.id);
    return result;
  }

  peakRssMiB(): number {
    return this.child.pid ? peakRssMiB(this.child.pid) : Number.NaN;
  }

  stop(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

function buildInput(corpus: Corpus, protocol: Protocol, seed: number, target: string, index: number): ClientInput {
  const rand = inputRand(seed, target, index);
  const all = streams(corpus, protocol);
  const t = all[int(rand, all.length)]!;
  const { bytes } = mutatedStream(
    rand,
    t.toClient,
    all.map((s) => s.toClient),
    protocol === 'usbip' ? 'be' : 'le',
  );
  // The captured write boundaries, moved in proportion to the mutated length.
  const scale = t.toClient.length > 0 ? bytes.length / t.toClient.length : 1;
  const pacing: [number, number][] = t.pacing.map((p) => [Math.min(bytes.length, Math.round(p.at * scale)), p.after]);
  if (pacing.length === 0) pacing.push([0, 0]);
  return {
    type: 'input',
    id: index,
    protocol,
    name: t.name,
    kind: t.kind,
    busid: t.kind ? BUSIDS[t.kind] : '9-9',
    bytes: bytes.toString('base64'),
    pacing,
    finAtEnd: rand() < 0.7,
  };
}

export async function runClientTarget(
  target: string,
  ctx: RunContext,
  budget: Budget,
  concurrency: number,
): Promise<TargetResult> {
  const protocol: Protocol = target === 'client-usbip' ? 'usbip' : 'usbredir';
  const started = Date.now();
  const failures: string[] = [];
  const outcomes = new Map<string, number>();
  let proc = new ClientProcess();
  let peak = 0;
  let next = 0;
  let done = 0;
  let largest = { bytes: 0, where: '' };
  const worker = async () => {
    while (next < budget.inputs && Date.now() - started < budget.ms && failures.length < ctx.maxFailures) {
      const index = next++;
      const input = buildInput(ctx.corpus, protocol, ctx.seed, target, index);
      const used = proc;
      const r = await used.run(input);
      done++;
      let error: string | undefined;
      if ('hang' in r) error = r.hang;
      else if ('crash' in r) error = `client process crashed: ${r.crash}`;
      else if (r.failure) error = r.failure;
      else outcomes.set(r.outcome, (outcomes.get(r.outcome) ?? 0) + 1);
      if ('largestAlloc' in r && r.largestAlloc.bytes > largest.bytes) largest = r.largestAlloc;
      if (!error) continue;
      const saved: SavedInput = { target, seed: ctx.seed, index, error, input: { ...input } };
      failures.push(`input ${index}: ${error.split('\n')[0]} (saved ${saveFailure(ctx.failuresDir, saved)})`);
      // A crashed or hung process is replaced (once, by whoever notices first).
      if (!('failure' in r) && proc === used) {
        peak = Math.max(peak, used.peakRssMiB());
        used.stop();
        proc = new ClientProcess();
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  peak = Math.max(peak, proc.peakRssMiB());
  proc.stop();
  return {
    target,
    inputs: done,
    ms: Date.now() - started,
    peakRssMiB: peak,
    failures,
    details: [
      `${concurrency} inputs at a time; outcomes: ${[...outcomes.entries()].map(([k, n]) => `${k} ${n}`).join(', ')}`,
      `largest single allocation in the client: ${largest.bytes} bytes, at ${largest.where}`,
    ],
  };
}

/** Run one saved client input again in a fresh client process. */
export async function replayClient(saved: SavedInput): Promise<string> {
  if (!loadCorpus()) throw new Error('no corpus');
  const proc = new ClientProcess();
  try {
    const r = await proc.run(saved.input as unknown as ClientInput);
    if ('hang' in r) return `HANG: ${r.hang}`;
    if ('crash' in r) return `CRASH: ${r.crash}`;
    return r.failure ? `FAILED: ${r.failure}` : `ok: ${r.outcome}`;
  } finally {
    proc.stop();
  }
}
