/**
 * Server targets: mutated client streams on real connections to our USB/IP server and usbredir
 * listeners (a child process), several at once, while well-behaved clients use their own disks.
 * Oracles: the server never exits; after our FIN every connection is closed within
 * CLOSE_BOUND_MS; no internal-error log line; every fuzzed device is free again afterwards and
 * still works for a normal client; the good clients' data checks pass within their bound; peak RSS
 * stays under MAX_SERVER_RSS_MIB.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { RemoteUsbipDevice } from '../../src/client/usbip/remote-device.js';
import { UsbredirClientConnection } from '../../src/client/usbredir/connection.js';
import type { RemoteUsbredirDevice } from '../../src/client/usbredir/remote-device.js';
import { createLogger } from '../../src/util/log.js';
import type { Budget, RunContext } from './codec-target.js';
import { loadCorpus, type Protocol, type Transcript } from './corpus.js';
import { describeGood, GoodClient } from './good-client.js';
import { inputRand, mutatedStream, streams } from './inputs.js';
import { chunkSizes, int } from './mutate.js';
import { b64, type SavedInput, saveFailure, type TargetResult, unb64 } from './report.js';
import { exercise, FUZZ_KINDS, withDeadline } from './scenario.js';
import type { ServerReady, ServerStats } from './server-child.js';

/** After our FIN the server must have closed the connection within this (its teardown waits at most 5 s). */
export const CLOSE_BOUND_MS = 15_000;
/** Peak RSS of the server process during one target. */
export const MAX_SERVER_RSS_MIB = 1024;

const CHILD = fileURLToPath(new URL('./server-child.js', import.meta.url));

class ServerProcess {
  readonly child: ChildProcess;
  crashed: string | undefined;
  crashedAt = 0;
  #waiters = new Map<string, (m: unknown) => void>();

  constructor() {
    this.child = fork(CHILD, [], { execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child.on('message', (m: { type: string; error?: string }) => {
      if (m.type === 'crash') {
        this.crashed = m.error;
        this.crashedAt = Date.now();
      }
      const w = this.#waiters.get(m.type);
      this.#waiters.delete(m.type);
      w?.(m);
    });
    // A send racing the child's death: the exit handler reports it.
    this.child.on('error', () => {});
    this.child.on('exit', (code, signal) => {
      if (this.crashed) return;
      this.crashed = `server process exited (code ${code}, signal ${signal})`;
      this.crashedAt = Date.now();
    });
  }

  request<T>(type: string, reply: string): Promise<T> {
    if (!this.child.connected) return Promise.reject(new Error(`server process gone: ${this.crashed ?? 'exited'}`));
    return withDeadline(
      new Promise<T>((resolve) => {
        this.#waiters.set(reply, resolve as (m: unknown) => void);
        if (type) this.child.send({ type });
      }),
      10_000,
      `server ${type || reply}`,
    );
  }

  async stop(): Promise<void> {
    if (!this.child.connected) return;
    this.child.send({ type: 'exit' });
    await Promise.race([once(this.child, 'exit'), new Promise((r) => setTimeout(r, 3000))]);
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}

/** Which listener an input goes to: 'usbip', or the usbredir listener of a device kind or 'good'. */
interface Target {
  tight: boolean;
  name: string;
}

function portOf(ready: ServerReady, t: Target): number {
  const ports = t.tight ? ready.tight : ready;
  return t.name === 'usbip' ? ports.usbip : t.name === 'good' ? ready.usbredir.good! : ports.usbredir[t.name]!;
}

interface ServerInput {
  protocol: Protocol;
  transcript: Transcript;
  to: Target;
  port: number;
  bytes: Buffer;
  chunks: number[];
  /** Pause after this many chunks, to let the server act in the middle of the stream. */
  yieldEvery: number;
  finDelayMs: number;
  /** No FIN at all: the server must answer something, or close by its handshake timeout. */
  noFin: boolean;
  mutations: string;
}

function buildInput(ctx: RunContext, target: string, index: number, ready: ServerReady): ServerInput {
  const rand = inputRand(ctx.seed, target, index);
  const protocol: Protocol = target === 'server-usbip' ? 'usbip' : 'usbredir';
  const all = streams(ctx.corpus, protocol);
  const transcript = all[int(rand, all.length)]!;
  const { bytes, mutations } = mutatedStream(
    rand,
    transcript.toServer,
    all.map((t) => t.toServer),
    protocol === 'usbip' ? 'be' : 'le',
  );
  // Half the time the servers with tiny in-flight caps. usbredir: the listener of the captured
  // device; sometimes the good client's (busy: refused).
  const tight = rand() < 0.5;
  const name = protocol === 'usbip' ? 'usbip' : rand() < 0.05 ? 'good' : (transcript.kind ?? 'disk');
  const to = { tight, name };
  return {
    protocol,
    transcript,
    to,
    port: portOf(ready, to),
    bytes,
    chunks: chunkSizes(rand, bytes.length),
    yieldEvery: 1 + int(rand, 8),
    finDelayMs: rand() < 0.8 ? 0 : int(rand, 400),
    noFin: tight && rand() < 0.04,
    mutations,
  };
}

/** The tight servers' handshake timeout (server-child.ts), plus slack for a loaded machine. */
const NO_FIN_BOUND_MS = 1000 + 4000;

/** Without a FIN: wait until the server said something or closed, within NO_FIN_BOUND_MS. */
async function answeredOrClosed(socket: net.Socket, received: () => number): Promise<boolean> {
  const deadline = Date.now() + NO_FIN_BOUND_MS;
  while (Date.now() < deadline) {
    if (received() > 0 || socket.destroyed || socket.readableEnded) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

/** One hostile connection: send, FIN, and time how long the server takes to close. */
async function runInput(input: ServerInput): Promise<{ closeMs: number; received: number } | { hang: string }> {
  const socket = net.connect(input.port, '127.0.0.1');
  socket.on('error', () => {});
  let received = 0;
  socket.on('data', (c: Buffer) => {
    received += c.length;
  });
  // Not events.once: it rejects on 'error', and a reset is a normal end here.
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now())));
  try {
    await withDeadline(new Promise((resolve) => socket.once('connect', resolve)), 5000, 'connect');
  } catch {
    socket.destroy();
    return { hang: 'connect to the server did not succeed within 5 s' };
  }
  let at = 0;
  for (let i = 0; i < input.chunks.length && !socket.destroyed; i++) {
    const n = input.chunks[i]!;
    socket.write(input.bytes.subarray(at, at + n));
    at += n;
    if (i % input.yieldEvery === 0) await new Promise((r) => setImmediate(r));
  }
  if (input.noFin) {
    const ok = await answeredOrClosed(socket, () => received);
    socket.destroy();
    if (!ok) return { hang: `no reply and not closed ${NO_FIN_BOUND_MS} ms after the last byte (no FIN sent)` };
    return { closeMs: 0, received };
  }
  if (input.finDelayMs > 0) await new Promise((r) => setTimeout(r, input.finDelayMs));
  const fin = Date.now();
  socket.end();
  const closedAt = await Promise.race([closed, new Promise<undefined>((r) => setTimeout(r, CLOSE_BOUND_MS))]);
  if (closedAt === undefined) {
    socket.destroy();
    return { hang: `connection still open ${CLOSE_BOUND_MS} ms after our FIN (${received} bytes received)` };
  }
  return { closeMs: closedAt - fin, received };
}

/** A normal client imports each fuzzed device over `protocol` and runs its exercise: the device survived. */
async function probe(protocol: Protocol, ready: ServerReady): Promise<string[]> {
  const problems: string[] = [];
  const log = createLogger('probe');
  const strict = { waitMs: 3000, cancelMs: 3000, strict: false };
  for (const kind of FUZZ_KINDS) {
    try {
      if (protocol === 'usbip') {
        const dev = await RemoteUsbipDevice.import({ host: '127.0.0.1', port: ready.usbip }, ready.busid[kind]!, {
          logger: log,
          timeoutMs: 5000,
        });
        await exercise(kind, dev, strict);
        await dev.close();
      } else {
        const socket = net.connect(ready.usbredir[kind]!, '127.0.0.1');
        await once(socket, 'connect');
        const conn = new UsbredirClientConnection(socket, { where: 'probe', logger: log, timeoutMs: 5000 });
        const dev = once(conn, 'device') as Promise<[RemoteUsbredirDevice]>;
        conn.start();
        const [d] = await withDeadline(dev, 5000, `${kind} device over usbredir`);
        await exercise(kind, d, strict);
        await conn.close();
      }
    } catch (err) {
      problems.push(`after fuzzing, ${kind} over ${protocol} does not work: ${(err as Error).message}`);
    }
  }
  return problems;
}

/** Wait until no fuzzed device is held by anyone (teardown finished), up to a bound. */
async function waitReleased(server: ServerProcess, ready: ServerReady): Promise<string | undefined> {
  const fuzzed = new Set(Object.values(ready.busid));
  const deadline = Date.now() + 10_000;
  let held: [string, string | undefined][] = [];
  while (Date.now() < deadline) {
    const stats = await server.request<ServerStats>('stats', 'stats');
    held = stats.owners.filter(([busid, owner]) => fuzzed.has(busid) && owner != null);
    if (held.length === 0) return undefined;
    await new Promise((r) => setTimeout(r, 200));
  }
  return `devices still held 10 s after the last connection closed: ${held.map(([b, o]) => `${b} by ${o}`).join(', ')}`;
}

export async function runServerTargets(
  ctx: RunContext,
  budgets: (Budget & { target: string })[],
  concurrency: number,
): Promise<TargetResult[]> {
  const server = new ServerProcess();
  const ready = await server.request<ServerReady>('', 'ready');
  const goodUsbip = await GoodClient.usbip(ready.usbip, ready.good.usbip);
  const goodRedir = await GoodClient.usbredir(ready.usbredir.good!);
  goodUsbip.start(ctx.seed);
  goodRedir.start(ctx.seed + 1);
  const results: TargetResult[] = [];
  try {
    for (const b of budgets) {
      if (server.crashed) break;
      results.push(
        await runPhase(server, ready, ctx, b, concurrency).catch(
          (err: unknown): TargetResult => ({
            target: b.target,
            inputs: 0,
            ms: 0,
            peakRssMiB: Number.NaN,
            failures: [`harness: ${(err as Error).message}`],
            details: [],
          }),
        ),
      );
    }
  } finally {
    const a = await goodUsbip.stop();
    const r = await goodRedir.stop();
    const last = results[results.length - 1];
    last?.details.push('well-behaved clients, served during all server targets:');
    for (const s of [a, r]) {
      last?.details.push(`  ${describeGood(s)}`);
      if (s.error) last?.failures.push(`well-behaved ${describeGood(s)}`);
      if (s.ops === 0) last?.failures.push(`well-behaved ${s.name} completed no operation`);
    }
    if (server.crashed) last?.failures.push(`server process: ${server.crashed}`);
    await server.stop();
  }
  return results;
}

async function runPhase(
  server: ServerProcess,
  ready: ServerReady,
  ctx: RunContext,
  budget: Budget & { target: string },
  concurrency: number,
): Promise<TargetResult> {
  const { target } = budget;
  await server.request('reset-peak', 'reset');
  const started = Date.now();
  const failures: string[] = [];
  const closeTimes: number[] = [];
  let next = 0;
  let done = 0;
  let received = 0;
  let withoutFin = 0;
  /** Inputs with the time they started and ended: a crash is blamed on those that overlap it. */
  const recent: { index: number; input: ServerInput; start: number; end: number }[] = [];
  const save = (index: number, input: ServerInput, error: string) => {
    const saved: SavedInput = {
      target,
      seed: ctx.seed,
      index,
      error,
      input: {
        protocol: input.protocol,
        source: input.transcript.name,
        to: input.to,
        mutations: input.mutations,
        bytes: b64(input.bytes),
        chunks: input.chunks,
        yieldEvery: input.yieldEvery,
        finDelayMs: input.finDelayMs,
        noFin: input.noFin,
      },
    };
    return saveFailure(ctx.failuresDir, saved);
  };
  const worker = async () => {
    while (
      next < budget.inputs &&
      Date.now() - started < budget.ms &&
      !server.crashed &&
      failures.length < ctx.maxFailures
    ) {
      const index = next++;
      const input = buildInput(ctx, target, index, ready);
      const entry = { index, input, start: Date.now(), end: Number.POSITIVE_INFINITY };
      recent.push(entry);
      if (recent.length > 8 * concurrency) recent.shift();
      const r = await runInput(input);
      entry.end = Date.now();
      done++;
      if (input.noFin) withoutFin++;
      if ('hang' in r) failures.push(`input ${index}: ${r.hang} (saved ${save(index, input, r.hang)})`);
      else {
        closeTimes.push(r.closeMs);
        received += r.received;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const ms = Date.now() - started;
  if (server.crashed) {
    for (const { index, input, start, end } of recent) {
      if (start > server.crashedAt || end < server.crashedAt - 50) continue;
      failures.push(`server crashed with input ${index} in flight (saved ${save(index, input, server.crashed)})`);
    }
    failures.push(`server: ${server.crashed.split('\n').slice(0, 3).join(' | ')}`);
    return { target, inputs: done, ms, peakRssMiB: Number.NaN, failures, details: [] };
  }
  const held = await waitReleased(server, ready);
  if (held) failures.push(held);
  const protocol: Protocol = target === 'server-usbip' ? 'usbip' : 'usbredir';
  failures.push(...(await probe(protocol, ready)));
  const stats = await server.request<ServerStats>('stats', 'stats');
  const largest = stats.largestAlloc;
  for (const line of stats.internal) failures.push(`server logged: ${line}`);
  if (stats.peakRssMiB > MAX_SERVER_RSS_MIB) {
    failures.push(`server peak RSS ${stats.peakRssMiB.toFixed(0)} MiB > ${MAX_SERVER_RSS_MIB} MiB`);
  }
  closeTimes.sort((a, b) => a - b);
  const pct = (p: number) => closeTimes[Math.min(closeTimes.length - 1, Math.floor(p * closeTimes.length))] ?? 0;
  return {
    target,
    inputs: done,
    ms,
    peakRssMiB: stats.peakRssMiB,
    failures,
    details: [
      `${concurrency} connections at a time; close after FIN: median ${pct(0.5)} ms, p99 ${pct(0.99)} ms, max ${pct(1)} ms; ` +
        `${(received / 2 ** 20).toFixed(1)} MiB of replies; ${stats.warnings} protocol warnings logged; ` +
        `${withoutFin} connections never sent FIN (answered or closed within ${NO_FIN_BOUND_MS} ms)`,
      `server after GC: heap ${stats.heapUsedMiB.toFixed(0)} MiB, external ${stats.externalMiB.toFixed(0)} MiB, RSS ${stats.rssMiB.toFixed(0)} MiB`,
      `largest single allocation in the server: ${largest.bytes} bytes, at ${largest.where}`,
    ],
  };
}

/** Run one saved server input alone against a fresh server process. */
export async function replayServer(saved: SavedInput): Promise<string> {
  const server = new ServerProcess();
  try {
    const ready = await server.request<ServerReady>('', 'ready');
    const i = saved.input;
    const protocol = i.protocol as Protocol;
    const source = String(i.source);
    const transcript = streams(loadCorpusOrThrow(), protocol).find((t) => t.name === source)!;
    const input: ServerInput = {
      protocol,
      transcript,
      to: i.to as Target,
      port: portOf(ready, i.to as Target),
      bytes: unb64(i.bytes),
      chunks: i.chunks as number[],
      yieldEvery: Number(i.yieldEvery),
      finDelayMs: Number(i.finDelayMs),
      noFin: i.noFin === true,
      mutations: String(i.mutations),
    };
    const r = await runInput(input);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    if (server.crashed) return `server CRASHED: ${server.crashed}`;
    const stats = await server.request<ServerStats>('stats', 'stats');
    const outcome = 'hang' in r ? `HANG: ${r.hang}` : `closed ${r.closeMs} ms after FIN, ${r.received} bytes received`;
    return `${outcome}; internal errors logged: ${stats.internal.length === 0 ? 'none' : stats.internal.join(' | ')}`;
  } finally {
    await server.stop();
  }
}

function loadCorpusOrThrow() {
  const c = loadCorpus();
  if (!c) throw new Error('no corpus in test/fuzz/corpus (npm run fuzz -- --capture)');
  return c;
}
