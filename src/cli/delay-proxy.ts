import { parseArgs } from 'node:util';
import type { LinkOptions } from '../transport/delay-pipe.js';
import { DelayProxy } from '../transport/delay-proxy.js';
import { formatHostPort } from '../util/host-port.js';
import { createLogger, setLogLevel } from '../util/log.js';
import { parseEndpoint, UsageError } from './args.js';

export const DELAY_PROXY_HELP = `usage: usbwire delay-proxy --listen HOST:PORT --to HOST:PORT [--rtt TIME]
                           [--up-delay TIME] [--down-delay TIME] [--rate RATE]
                           [--up-rate RATE] [--down-rate RATE]

A TCP proxy that adds latency and a bandwidth cap, for tests and benchmarks where netem is not
available. Put it in front of any usbwire listener (USB/IP or usbredir) and point the client at it:

  usbwire serve --disk disk.img --usbip 127.0.0.1:3240 &
  usbwire delay-proxy --listen 127.0.0.1:3250 --to 127.0.0.1:3240 --rtt 10ms &
  usbip attach -r 127.0.0.1 -p 3250 ...    (or qemu ... -chardev socket,port=3250,...)

Data read at time t leaves at t + delay, whatever else is in flight (pipelining is kept); order,
half-close and errors are passed on; each direction's queue is bounded (8 MiB plus the
bandwidth-delay product), beyond that the sender is paused.

  --listen HOST:PORT      where clients connect
  --to HOST:PORT          the server
  --rtt TIME              round-trip delay, split evenly between the directions (default 0)
  --up-delay TIME         one-way delay client → server (overrides half of --rtt)
  --down-delay TIME       one-way delay server → client (overrides half of --rtt)
  --rate RATE             bandwidth cap in each direction (default: none)
  --up-rate RATE          cap client → server (overrides --rate)
  --down-rate RATE        cap server → client (overrides --rate)
  --log-level LEVEL       debug, info, warn or error (default info)
  -h, --help              show this help

TIME: a number with us, ms or s (10ms, 1.5ms, 0.2s; a bare number is ms), at most 60 s.
RATE: bits per second with bit, kbit, mbit or gbit (1000s), or bytes per second with
      B, k, M or G (1024s): 100mbit, 8mbit, 512k, 10M.
`;

const log = createLogger('delay-proxy');
const MAX_DELAY_MS = 60_000;

const TIME_UNITS: Record<string, number> = { '': 1, us: 0.001, ms: 1, s: 1000 };
const RATE_UNITS: Record<string, number> = {
  bit: 1 / 8,
  kbit: 1000 / 8,
  mbit: 1e6 / 8,
  gbit: 1e9 / 8,
  b: 1,
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
};

/** "10ms", "1.5ms", "0.2s", "500us", "10" (ms) → milliseconds. */
export function parseDuration(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(us|ms|s|)$/.exec(text.trim());
  if (!m) throw new UsageError(`${flag} ${text}: expected a time such as 10ms, 1.5ms or 0.2s`);
  const ms = Number(m[1]) * TIME_UNITS[m[2]!]!;
  if (ms > MAX_DELAY_MS) throw new UsageError(`${flag} ${text}: at most 60s`);
  return ms;
}

/** "100mbit", "512k", "10M" → bytes per second. */
export function parseRate(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  const unit = m?.[2]?.toLowerCase();
  const scale = unit === undefined ? undefined : RATE_UNITS[unit === 'bps' ? 'b' : unit];
  if (!m || scale === undefined) {
    throw new UsageError(`${flag} ${text}: expected a rate such as 100mbit, 8mbit, 512k or 10M`);
  }
  const bytesPerSecond = Number(m[1]) * scale;
  if (!(bytesPerSecond >= 1)) throw new UsageError(`${flag} ${text}: must be at least 8bit (1 byte per second)`);
  return bytesPerSecond;
}

export interface DelayProxyArgs {
  listen: ReturnType<typeof parseEndpoint>;
  to: ReturnType<typeof parseEndpoint>;
  up: LinkOptions;
  down: LinkOptions;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
}

/** Parse the flags of `usbwire delay-proxy`; undefined: --help was asked for. */
export function parseDelayProxyArgs(argv: string[]): DelayProxyArgs | undefined {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        listen: { type: 'string' },
        to: { type: 'string' },
        rtt: { type: 'string' },
        'up-delay': { type: 'string' },
        'down-delay': { type: 'string' },
        rate: { type: 'string' },
        'up-rate': { type: 'string' },
        'down-rate': { type: 'string' },
        'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message.split('\n')[0]} (see usbwire delay-proxy --help)`);
  }
  if (values.help) return undefined;
  const text = (name: string) => values[name] as string | undefined;
  const level = text('log-level') ?? 'info';
  if (!['debug', 'info', 'warn', 'error'].includes(level)) {
    throw new UsageError(`--log-level ${level}: expected debug, info, warn or error`);
  }
  for (const required of ['listen', 'to']) {
    if (text(required) === undefined)
      throw new UsageError(`delay-proxy needs --${required} HOST:PORT (see usbwire delay-proxy --help)`);
  }
  const half = text('rtt') === undefined ? 0 : parseDuration(text('rtt')!, '--rtt') / 2;
  const delay = (flag: string) => (text(flag) === undefined ? half : parseDuration(text(flag)!, `--${flag}`));
  const rate = (flag: string) => {
    const t = text(flag) ?? text('rate');
    if (t === undefined) return undefined;
    return parseRate(t, text(flag) === undefined ? '--rate' : `--${flag}`);
  };
  return {
    listen: parseEndpoint(text('listen')!, '--listen'),
    to: parseEndpoint(text('to')!, '--to'),
    up: { delayMs: delay('up-delay'), bytesPerSecond: rate('up-rate') },
    down: { delayMs: delay('down-delay'), bytesPerSecond: rate('down-rate') },
    logLevel: level as DelayProxyArgs['logLevel'],
  };
}

/** `usbwire delay-proxy`: relay until SIGINT/SIGTERM. Resolves with the exit code. */
export async function delayProxy(argv: string[]): Promise<number> {
  const args = parseDelayProxyArgs(argv);
  if (!args) {
    process.stdout.write(DELAY_PROXY_HELP);
    return 0;
  }
  setLogLevel(args.logLevel);
  const proxy = new DelayProxy({ listen: args.listen, to: args.to, up: args.up, down: args.down, logger: log });
  try {
    await proxy.listen();
  } catch (err) {
    throw new UsageError(`cannot listen on ${formatHostPort(args.listen)}: ${(err as Error).message}`);
  }
  const signal = await new Promise<string>((resolve) => {
    for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(s, () => resolve(s));
  });
  log.info(`${signal}: closing`);
  await proxy.close();
  return 0;
}
