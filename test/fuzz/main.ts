/**
 * npm run fuzz [-- options]: hostile input against both protocols' codecs, live servers and
 * clients. Prints the seed; a failing input is saved for `--replay FILE`.
 *
 *   --seed N            seed (default: random, printed)
 *   --inputs N          inputs per codec target (default: 50 × --live-inputs, or time)
 *   --live-inputs N     inputs per live target, server and client (default: --inputs / 50, or time)
 *   --duration S        total time budget in seconds (default 40; with --inputs, a cap)
 *   --targets a,b       codec-usbip,codec-usbredir,server-usbip,server-usbredir,client-usbip,client-usbredir
 *   --concurrency N     hostile connections (server targets) or inputs (client targets) at once (default 6)
 *   --failures DIR      where failing inputs go (default dist/fuzz-failures)
 *   --replay FILE       run one saved input again and say what happens
 *   --capture           capture the seed corpus again (test/fuzz/corpus/) and exit
 */
import { setLogSink } from '../../src/util/log.js';
import { type RunContext, replayCodec, runCodecTarget } from './codec-target.js';
import { captureCorpus, loadCorpus, saveCorpus } from './corpus.js';
import { replayClient, runClientTarget } from './live-client.js';
import { replayServer, runServerTargets } from './live-server.js';
import { formatResult, loadFailure, type TargetResult } from './report.js';

const ALL_TARGETS = [
  'codec-usbip',
  'codec-usbredir',
  'server-usbip',
  'server-usbredir',
  'client-usbip',
  'client-usbredir',
] as const;
type Target = (typeof ALL_TARGETS)[number];

/** Share of the time budget per target (the codecs are cheap per input, live targets are not). */
const SHARE: Record<Target, number> = {
  'codec-usbip': 0.15,
  'codec-usbredir': 0.15,
  'server-usbip': 0.2,
  'server-usbredir': 0.2,
  'client-usbip': 0.15,
  'client-usbredir': 0.15,
};

function parseArgs(argv: string[]) {
  const opts = {
    seed: Math.floor(Math.random() * 0x7fffffff),
    inputs: Number.POSITIVE_INFINITY,
    liveInputs: Number.POSITIVE_INFINITY,
    durationS: Number.NaN,
    targets: [...ALL_TARGETS] as Target[],
    concurrency: 6,
    failures: 'dist/fuzz-failures',
    replay: undefined as string | undefined,
    capture: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    const num = () => {
      const n = Number(value());
      if (!Number.isFinite(n) || n < 0) throw new Error(`${a}: not a number`);
      return n;
    };
    if (a === '--seed') opts.seed = num() >>> 0;
    else if (a === '--inputs') opts.inputs = num();
    else if (a === '--live-inputs') opts.liveInputs = num();
    else if (a === '--duration') opts.durationS = num();
    else if (a === '--concurrency') opts.concurrency = Math.max(1, num());
    else if (a === '--failures') opts.failures = value();
    else if (a === '--replay') opts.replay = value();
    else if (a === '--capture') opts.capture = true;
    else if (a === '--targets') {
      const names = value().split(',');
      for (const n of names)
        if (!(ALL_TARGETS as readonly string[]).includes(n)) throw new Error(`unknown target ${n}`);
      opts.targets = names as Target[];
    } else throw new Error(`unknown option ${a}`);
  }
  // Live inputs cost milliseconds, not microseconds: by default a fiftieth of the codec count.
  if (Number.isFinite(opts.inputs) && !Number.isFinite(opts.liveInputs)) opts.liveInputs = Math.ceil(opts.inputs / 50);
  if (Number.isFinite(opts.liveInputs) && !Number.isFinite(opts.inputs)) opts.inputs = opts.liveInputs * 50;
  // Without a count, a time budget; with one, time is only a cap if given.
  if (Number.isNaN(opts.durationS)) {
    opts.durationS = Number.isFinite(opts.inputs) || Number.isFinite(opts.liveInputs) ? Number.POSITIVE_INFINITY : 40;
  }
  return opts;
}

async function main(): Promise<number> {
  const opts = parseArgs(process.argv.slice(2));
  setLogSink('silent');
  if (opts.capture) {
    const corpus = await captureCorpus();
    console.log(
      `captured ${corpus.transcripts.length} transcripts (digest ${corpus.digest}) into ${saveCorpus(corpus)}`,
    );
    return 0;
  }
  if (opts.replay) {
    const saved = loadFailure(opts.replay);
    console.log(`replaying ${saved.target} seed ${saved.seed} input ${saved.index}; it failed with: ${saved.error}`);
    const outcome = saved.target.startsWith('codec-')
      ? replayCodec(saved)
      : saved.target.startsWith('server-')
        ? await replayServer(saved)
        : await replayClient(saved);
    console.log(`now: ${outcome}`);
    return 0;
  }
  const corpus = loadCorpus() ?? (await captureCorpus());
  const ctx: RunContext = { seed: opts.seed, corpus, failuresDir: opts.failures, maxFailures: 5 };
  const weight = opts.targets.reduce((s, t) => s + SHARE[t], 0);
  const totalMs = opts.durationS * 1000;
  const msFor = (t: Target) => (totalMs * SHARE[t]) / weight;
  console.log(
    `usbwire fuzz: seed ${opts.seed}, corpus ${corpus.digest} (${corpus.transcripts.length} transcripts), ` +
      `targets ${opts.targets.join(',')}`,
  );
  console.log(
    `replay this run: npm run fuzz -- --seed ${opts.seed} ${process.argv
      .slice(2)
      .filter((a, i, all) => a !== '--seed' && all[i - 1] !== '--seed')
      .join(' ')}`,
  );
  const results: TargetResult[] = [];
  const report = (r: TargetResult) => {
    results.push(r);
    console.log(formatResult(r));
  };
  for (const t of opts.targets) {
    if (t === 'codec-usbip' || t === 'codec-usbredir')
      report(runCodecTarget(t, ctx, { inputs: opts.inputs, ms: msFor(t) }));
  }
  const serverTargets = opts.targets.filter((t) => t === 'server-usbip' || t === 'server-usbredir');
  if (serverTargets.length > 0) {
    const budgets = serverTargets.map((t) => ({ target: t, inputs: opts.liveInputs, ms: msFor(t) }));
    for (const r of await runServerTargets(ctx, budgets, opts.concurrency)) report(r);
  }
  for (const t of opts.targets) {
    if (t === 'client-usbip' || t === 'client-usbredir') {
      report(await runClientTarget(t, ctx, { inputs: opts.liveInputs, ms: msFor(t) }, opts.concurrency));
    }
  }
  const failed = results.filter((r) => r.failures.length > 0);
  console.log(
    failed.length === 0 ? `fuzz: all targets passed (seed ${opts.seed})` : `fuzz: FAILED (seed ${opts.seed})`,
  );
  return failed.length === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
    process.exit(2);
  },
);
