import { parseArgs } from 'node:util';
import { parseRemoteUrl, type RemoteSpec, RemoteUrlError } from '../client/remote-url.js';
import { deviceClasses, parseDeviceSpec } from '../devices/catalog.js';
import { type DeviceSpec, DeviceSpecError } from '../devices/classes.js';
import { type DeviceSelector, parseSelector, SelectorError } from '../devices/real-host/selector.js';
import { AddressError, type HostPort, LOOPBACK, parseHostPort } from '../util/host-port.js';

/** A user-facing error: printed as one line, exit code 2 (bad usage) or 1. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export type Endpoint = HostPort;

export interface UsbredirSpec extends Endpoint {
  /** Which exported device this usbredir connection carries (default: the first). */
  busid: string | undefined;
}

/** Where the control endpoint listens: a unix socket (default), loopback TCP, or nowhere. */
export type ControlSpec = { kind: 'unix'; path: string } | ({ kind: 'tcp' } & Endpoint) | { kind: 'none' };

export interface ServeOptions {
  usbip: Endpoint[];
  usbredir: UsbredirSpec[];
  usbredirConnect: UsbredirSpec[];
  /** Local devices in the order given. */
  devices: DeviceSpec[];
  /** Local and remote devices in the order given: bus ids 1-1, 1-2, ... */
  exports: ExportSpec[];
  demoSizeMiB: number;
  control: ControlSpec | undefined;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  /** SIGTERM/SIGINT take devices a guest holds (a mounted disk) at once instead of waiting. */
  forceStop: boolean;
}

/** One device flag, `--remote` or `--device`, in command-line order. */
export type ExportSpec =
  | { kind: 'local'; spec: DeviceSpec }
  | { kind: 'remote'; remote: RemoteSpec; text: string }
  | { kind: 'host'; selector: DeviceSelector; force: boolean; text: string };

export const DEFAULT_USBIP: Endpoint = { host: '127.0.0.1', port: 3240 };

/** Parse "HOST:PORT", "[v6]:PORT" or ":PORT"/"PORT" (host defaults to 127.0.0.1). */
export function parseEndpoint(text: string, flag: string): Endpoint {
  try {
    const e = parseHostPort(text, undefined, LOOPBACK);
    if (e.port === 0) throw new AddressError(`"${text}": port must be 1-65535`);
    return e;
  } catch (err) {
    if (err instanceof AddressError) throw new UsageError(`${flag} ${err.message} (expected HOST:PORT)`);
    throw err;
  }
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

export function parseControl(text: string): ControlSpec {
  if (text === 'none') return { kind: 'none' };
  if (text.startsWith('unix:')) {
    const path = text.slice('unix:'.length);
    if (path === '') throw new UsageError('--control unix:PATH needs a path');
    return { kind: 'unix', path };
  }
  if (text.startsWith('/') || text.startsWith('.')) return { kind: 'unix', path: text };
  return { kind: 'tcp', ...parseEndpoint(text, '--control') };
}

const HELP_COLUMN = 31;
const HELP_WIDTH = 100;

function deviceHelp(): string {
  return deviceClasses()
    .map((c) => {
      const flag = `  --${c.name}${c.usage ? ` ${c.usage}` : ''}`;
      const lines = wrap(c.summary, HELP_WIDTH - HELP_COLUMN);
      const first = flag.length < HELP_COLUMN - 1 ? flag.padEnd(HELP_COLUMN) : `${flag}\n${' '.repeat(HELP_COLUMN)}`;
      return `${first}${lines.join(`\n${' '.repeat(HELP_COLUMN)}`)}\n`;
    })
    .join('');
}

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  return [...lines, line];
}

export const SERVE_HELP = `usage: usbwire serve [options]

Export USB devices over USB/IP and usbredir. With no device option, exports an in-memory demo
disk; with no protocol option, listens for USB/IP on ${DEFAULT_USBIP.host}:${DEFAULT_USBIP.port}.

protocols:
  --usbip HOST:PORT            listen for USB/IP clients (usbip attach, vhci-hcd)
  --usbredir HOST:PORT[=BUSID] listen for usbredir guests (QEMU usb-redir connecting out);
                               each connection carries one device (default: the first)
  --usbredir-connect HOST:PORT[=BUSID]
                               connect to a listening usbredir guest (QEMU server=on)

devices (repeatable, mixed freely; bus ids 1-1, 1-2, ... in the order given):
${deviceHelp()}  --remote URL                 a device another server exports, re-exported here (the bridge):
                                 usbip://HOST[:PORT]/BUSID   import from a USB/IP server (usbipd)
                                 usbredir://HOST:PORT        connect to a usbredir host that listens
                                                             (usbredirect --as)
                                 usbredir-listen://HOST:PORT usbredir hosts connect here
                                                             (usbredirect --to)
                               reconnects with backoff; the busid is kept while the device is away
  --device SELECTOR[,force]    a USB device plugged into this host, through libusb: a port path
                               (1-1.4: whatever is plugged there) or VID:PID[:SERIAL]; exported
                               when it appears, kept while it is away; a disk the host has
                               mounted or open is refused unless ,force
  --demo-size MIB              size of the in-memory demo disk (default 64)

operation:
  --control unix:PATH|HOST:PORT|none
                               the control endpoint (usbwire type/key/pointer/devices talk to it);
                               loopback TCP only. Default: /run/usbwire/control.sock as root,
                               else $XDG_RUNTIME_DIR/usbwire/control.sock or
                               /tmp/usbwire-UID/control.sock (skipped if another usbwire has it)
  --log-level LEVEL            debug, info, warn or error (default info)
  --force-stop                 on SIGTERM/SIGINT, take disks a guest holds (mounted) at once: the
                               guest sees its medium removed. Without it the first signal waits
                               until the guests let go, and a second one forces
  -h, --help                   show this help
`;

export function parseServeArgs(argv: string[]): ServeOptions | 'help' {
  const options = serveOptions();
  let parsed: ReturnType<
    typeof parseArgs<{ options: typeof options; allowPositionals: true; strict: true; tokens: true }>
  >;
  try {
    parsed = parseArgs({ args: withOptionalValues(argv), options, allowPositionals: true, strict: true, tokens: true });
  } catch (err) {
    const message = (err as Error).message;
    const unknown = /^Unknown option '([^']+)'/.exec(message);
    throw new UsageError(
      unknown ? `unknown option ${unknown[1]} (see usbwire serve --help)` : message.split('\n')[0]!.replace(/\.$/, ''),
    );
  }
  const v = parsed.values as Record<string, string | string[] | boolean | boolean[] | undefined>;
  if (v.help) return 'help';
  if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument "${parsed.positionals[0]}"`);
  const logLevel = (v['log-level'] as string | undefined) ?? 'info';
  if (!['debug', 'info', 'warn', 'error'].includes(logLevel)) {
    throw new UsageError(`--log-level ${logLevel}: expected debug, info, warn or error`);
  }
  const demo = (v['demo-size'] as string | undefined) ?? '64';
  if (!/^\d+$/.test(demo) || Number(demo) < 1 || Number(demo) > 1 << 20) {
    throw new UsageError(`--demo-size ${demo}: expected a size in MiB (1-1048576)`);
  }
  const strings = (name: string) => (v[name] as string[] | undefined) ?? [];
  const usbip = strings('usbip').map((e) => parseEndpoint(e, '--usbip'));
  const usbredir = strings('usbredir').map((e) => parseUsbredir(e, '--usbredir'));
  const usbredirConnect = strings('usbredir-connect').map((e) => parseUsbredir(e, '--usbredir-connect'));
  if (usbip.length + usbredir.length + usbredirConnect.length === 0) usbip.push(DEFAULT_USBIP);
  const control = v.control === undefined ? undefined : parseControl(v.control as string);
  const exports = exportSpecs(parsed.tokens ?? []);
  return {
    usbip,
    usbredir,
    usbredirConnect,
    devices: exports.flatMap((e) => (e.kind === 'local' ? [e.spec] : [])),
    exports,
    demoSizeMiB: Number(demo),
    control,
    logLevel: logLevel as ServeOptions['logLevel'],
    forceStop: v['force-stop'] === true,
  };
}

/** A device flag as the user wrote it, for messages: `--disk a.img,readonly`. */
export function deviceFlag(name: string, value: string | undefined): string {
  return `--${name}${value === undefined ? '' : ` ${value}`}`;
}

/** Device flags and --remote in the order given, each decoded. */
function exportSpecs(tokens: readonly { kind: string; name?: string; value?: string | undefined }[]): ExportSpec[] {
  const names = new Set(deviceClasses().map((c) => c.name));
  const specs: ExportSpec[] = [];
  for (const t of tokens) {
    if (t.kind !== 'option' || !t.name) continue;
    if (t.name === 'device') {
      specs.push(parseHostDevice(t.value ?? ''));
      continue;
    }
    if (t.name === 'remote') {
      const text = t.value ?? '';
      try {
        specs.push({ kind: 'remote', remote: parseRemoteUrl(text), text });
      } catch (err) {
        if (err instanceof RemoteUrlError) throw new UsageError(`--remote ${err.message}`);
        throw err;
      }
      continue;
    }
    if (!names.has(t.name)) continue;
    try {
      specs.push({ kind: 'local', spec: parseDeviceSpec(t.name, t.value) });
    } catch (err) {
      if (err instanceof DeviceSpecError) {
        throw new UsageError(`${deviceFlag(t.name, t.value)}: ${err.message}`);
      }
      throw err;
    }
  }
  return specs;
}

/** --device SELECTOR[,force]: a device plugged into this host, exported through libusb. */
function parseHostDevice(text: string): ExportSpec {
  const [selectorText = '', ...options] = text.split(',');
  let force = false;
  for (const o of options) {
    if (o === 'force') force = true;
    else throw new UsageError(`--device ${text}: unknown option "${o}" (known: force)`);
  }
  try {
    return { kind: 'host', selector: parseSelector(selectorText), force, text };
  } catch (err) {
    if (err instanceof SelectorError) throw new UsageError(`--device ${err.message}`);
    throw err;
  }
}

/** A device flag whose value is optional, given without one, gets an empty value. */
function withOptionalValues(argv: string[]): string[] {
  const optional = new Set(
    deviceClasses()
      .filter((c) => c.usage?.startsWith('['))
      .map((c) => `--${c.name}`),
  );
  return argv.map((a, i) => {
    const next = argv[i + 1];
    return optional.has(a) && (next === undefined || next.startsWith('-')) ? `${a}=` : a;
  });
}

function serveOptions() {
  const devices = Object.fromEntries(
    deviceClasses().map((c) => [c.name, { type: c.usage === undefined ? 'boolean' : 'string', multiple: true }]),
  ) as Record<string, { type: 'string' | 'boolean'; multiple: true }>;
  return {
    ...devices,
    usbip: { type: 'string', multiple: true },
    usbredir: { type: 'string', multiple: true },
    'usbredir-connect': { type: 'string', multiple: true },
    remote: { type: 'string', multiple: true },
    device: { type: 'string', multiple: true },
    'demo-size': { type: 'string' },
    control: { type: 'string' },
    'log-level': { type: 'string' },
    'force-stop': { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  } as const;
}
