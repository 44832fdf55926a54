import { parseArgs } from 'node:util';
import type { UsbSpeed } from '../usb/speed.js';

/** A user-facing error: printed as one line, exit code 2 (bad usage) or 1. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export interface Endpoint {
  host: string;
  port: number;
}

export interface DiskSpec {
  path: string;
  readOnly: boolean;
  speed: UsbSpeed;
}

export interface UsbredirSpec extends Endpoint {
  /** Which exported device this usbredir connection carries (default: the first). */
  busid: string | undefined;
}

export interface ServeOptions {
  usbip: Endpoint[];
  usbredir: UsbredirSpec[];
  usbredirConnect: UsbredirSpec[];
  disks: DiskSpec[];
  demoSizeMiB: number;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
}

export const DEFAULT_USBIP: Endpoint = { host: '127.0.0.1', port: 3240 };

/** Parse "HOST:PORT", "[v6]:PORT" or ":PORT"/"PORT" (host defaults to 127.0.0.1). */
export function parseEndpoint(text: string, flag: string): Endpoint {
  let host = '127.0.0.1';
  let portText = text;
  const v6 = /^\[([^\]]+)\]:(.*)$/.exec(text);
  if (v6) {
    host = v6[1]!;
    portText = v6[2]!;
  } else if (text.includes(':')) {
    const at = text.lastIndexOf(':');
    if (text.indexOf(':') !== at)
      throw new UsageError(`${flag} ${text}: put IPv6 addresses in brackets, e.g. [::1]:3240`);
    host = text.slice(0, at) || host;
    portText = text.slice(at + 1);
  }
  if (!/^\d+$/.test(portText)) throw new UsageError(`${flag} ${text}: expected HOST:PORT with a numeric port`);
  const port = Number(portText);
  if (port < 1 || port > 65535) throw new UsageError(`${flag} ${text}: port must be 1-65535`);
  return { host, port };
}

function parseUsbredir(text: string, flag: string): UsbredirSpec {
  const eq = text.lastIndexOf('=');
  const addr = eq >= 0 ? text.slice(0, eq) : text;
  const busid = eq >= 0 ? text.slice(eq + 1) : undefined;
  if (busid !== undefined && !/^\d+-\d+(\.\d+)*$/.test(busid)) {
    throw new UsageError(`${flag} ${text}: bad bus id "${busid}" (expected e.g. 1-1)`);
  }
  return { ...parseEndpoint(addr, flag), busid };
}

function parseDisk(text: string): DiskSpec {
  const parts = text.split(',');
  const path = parts[0] ?? '';
  if (path === '') throw new UsageError('--disk needs a path: --disk PATH[,readonly]');
  let readOnly = false;
  let speed: UsbSpeed = 'high';
  for (const opt of parts.slice(1)) {
    if (opt === 'readonly' || opt === 'ro') readOnly = true;
    else if (opt.startsWith('speed=')) {
      const value = opt.slice('speed='.length);
      if (value !== 'full' && value !== 'high' && value !== 'super') {
        throw new UsageError(`--disk ${text}: speed must be full, high or super`);
      }
      speed = value;
    } else throw new UsageError(`--disk ${text}: unknown option "${opt}" (known: readonly, speed=full|high|super)`);
  }
  return { path, readOnly, speed };
}

export const SERVE_HELP = `usage: usbwire serve [options]

Export USB devices over USB/IP and usbredir. With no device option, exports an in-memory demo
disk; with no protocol option, listens for USB/IP on ${DEFAULT_USBIP.host}:${DEFAULT_USBIP.port}.

  --usbip HOST:PORT            listen for USB/IP clients (usbip attach, vhci-hcd)
  --usbredir HOST:PORT[=BUSID] listen for usbredir guests (QEMU usb-redir connecting out);
                               each connection carries one device (default: the first)
  --usbredir-connect HOST:PORT[=BUSID]
                               connect to a listening usbredir guest (QEMU server=on)
  --disk PATH[,readonly][,speed=full|high|super]
                               export a raw disk image as USB mass storage (repeatable;
                               bus ids 1-1, 1-2, ... in order; default high speed)
  --demo-size MIB              size of the in-memory demo disk (default 64)
  --log-level LEVEL            debug, info, warn or error (default info)
  -h, --help                   show this help
`;

export function parseServeArgs(argv: string[]): ServeOptions | 'help' {
  let parsed: ReturnType<typeof parseArgs<{ options: typeof SERVE_OPTIONS; allowPositionals: true; strict: true }>>;
  try {
    parsed = parseArgs({ args: argv, options: SERVE_OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    const message = (err as Error).message;
    const unknown = /^Unknown option '([^']+)'/.exec(message);
    throw new UsageError(
      unknown ? `unknown option ${unknown[1]} (see usbwire serve --help)` : message.split('\n')[0]!.replace(/\.$/, ''),
    );
  }
  const v = parsed.values;
  if (v.help) return 'help';
  if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument "${parsed.positionals[0]}"`);
  const logLevel = v['log-level'] ?? 'info';
  if (!['debug', 'info', 'warn', 'error'].includes(logLevel)) {
    throw new UsageError(`--log-level ${logLevel}: expected debug, info, warn or error`);
  }
  const demo = v['demo-size'] ?? '64';
  if (!/^\d+$/.test(demo) || Number(demo) < 1 || Number(demo) > 1 << 20) {
    throw new UsageError(`--demo-size ${demo}: expected a size in MiB (1-1048576)`);
  }
  const usbip = (v.usbip ?? []).map((e) => parseEndpoint(e, '--usbip'));
  const usbredir = (v.usbredir ?? []).map((e) => parseUsbredir(e, '--usbredir'));
  const usbredirConnect = (v['usbredir-connect'] ?? []).map((e) => parseUsbredir(e, '--usbredir-connect'));
  if (usbip.length + usbredir.length + usbredirConnect.length === 0) usbip.push(DEFAULT_USBIP);
  return {
    usbip,
    usbredir,
    usbredirConnect,
    disks: (v.disk ?? []).map(parseDisk),
    demoSizeMiB: Number(demo),
    logLevel: logLevel as ServeOptions['logLevel'],
  };
}

const SERVE_OPTIONS = {
  usbip: { type: 'string', multiple: true },
  usbredir: { type: 'string', multiple: true },
  'usbredir-connect': { type: 'string', multiple: true },
  disk: { type: 'string', multiple: true },
  'demo-size': { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;
