import { parseArgs } from 'node:util';
import { parseRemoteUrl, type RemoteSpec, RemoteUrlError } from '../client/remote-url.js';
import { deviceClasses, parseDeviceSpec } from '../devices/catalog.js';
import { type DeviceSpec, DeviceSpecError } from '../devices/classes.js';
import {
  parseStorageOption,
  STORAGE_OPTIONS_USAGE,
  type StorageWrapping,
} from '../devices/mass-storage/storage-wrappers.js';
import { type DeviceSelector, parseSelector, SelectorError } from '../devices/real-host/selector.js';
import type { AccessPolicy } from '../server/access.js';
import type { CredentialFlags } from '../transport/credentials.js';
import { AddressError, type HostPort, LOOPBACK, parseHostPort } from '../util/host-port.js';
import { ConfigError, loadConfig, type ServeConfig } from './config.js';

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
  /** --tls-cert/--tls-key/--tls-ca or --psk-file [--psk-identity]; none: plain TCP. */
  credentials: CredentialFlags;
  /** Access rules from the config file; undefined: every client may use every device. */
  access: AccessPolicy | undefined;
  limits: ServeConfig['limits'];
  /** SIGTERM/SIGINT take devices a guest holds (a mounted disk) at once instead of waiting. */
  forceStop: boolean;
}

/** One device flag, `--remote` or `--device`, in command-line order. */
export type ExportSpec =
  | { kind: 'local'; spec: DeviceSpec }
  | { kind: 'remote'; remote: RemoteSpec; storage: StorageWrapping; text: string }
  | { kind: 'host'; selector: DeviceSelector; force: boolean; storage: StorageWrapping; text: string };

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
${deviceHelp()}  --remote URL[,OPTS]          a device another server exports, re-exported here (the bridge):
                                 usbip://HOST[:PORT]/BUSID   import from a USB/IP server (usbipd)
                                 usbredir://HOST:PORT        connect to a usbredir host that listens
                                                             (usbredirect --as)
                                 usbredir-listen://HOST:PORT usbredir hosts connect here
                                                             (usbredirect --to)
                                 usbip+tls://, usbredir+tls:// the same over TLS
                               reconnects with backoff; the busid is kept while the device is away
  --device SELECTOR[,force][,OPTS]
                               a USB device plugged into this host, through libusb: a port path
                               (1-1.4: whatever is plugged there) or VID:PID[:SERIAL]; exported
                               when it appears, kept while it is away; a disk the host has
                               mounted or open is refused unless ,force
                               OPTS for a Bulk-Only disk (--remote, --device):
                                 as-uas[=high|super]  present it as a UAS disk (many commands
                                                      queued, one round trip each)
                                 read-ahead[=pipelined]
                                                      prefetch sequential reads (near the disk:
                                                      hits skip the link); pipelined: prefetch
                                                      commands in one go (usbwire far end)
  --demo-size MIB              size of the in-memory demo disk (default 64)

security (both protocols; plain TCP without, with a warning on a non-loopback address):
  --tls-cert FILE --tls-key FILE
                               TLS 1.3 with this certificate and key (PEM)
  --tls-ca FILE                and require client certificates signed by these CAs (mutual TLS)
  --psk-file FILE              TLS 1.3 with pre-shared keys instead: lines identity:hexkey
  --psk-identity ID            the identity to use when connecting out (default: the file's only one)
                               Connections out (--usbredir-connect, --remote usbip+tls://,
                               usbredir+tls://) use the same certificate, CA or key.

operation:
  --control unix:PATH|HOST:PORT|none
                               the control endpoint (usbwire type/key/pointer/devices talk to it);
                               loopback TCP only. Default: /run/usbwire/control.sock as root,
                               else $XDG_RUNTIME_DIR/usbwire/control.sock or
                               /tmp/usbwire-UID/control.sock (skipped if another usbwire has it)
  --log-level LEVEL            debug, info, warn or error (default info)
  --config FILE                a JSON file holding flags, devices, access rules and limits
                               (see the README's "Config file"); flags given too are added
  --force-stop                 on SIGTERM/SIGINT, take disks a guest holds (mounted) at once: the
                               guest sees its medium removed. Without it the first signal waits
                               until the guests let go, and a second one forces
  -h, --help                   show this help
`;

export function parseServeArgs(argv: string[]): ServeOptions | 'help' {
  const options = serveOptions();
  const config = expandConfig(argv, new Set(Object.keys(options)));
  argv = config.argv;
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
    credentials: credentialFlags(v, { cert: '--tls-cert', key: '--tls-key', ca: '--tls-ca' }),
    access: config.access,
    limits: config.limits,
    forceStop: v['force-stop'] === true,
  };
}

/** The credential flags that were given (shared with `usbwire tunnel`, whose flags are --cert/--key/--ca). */
export function credentialFlags(
  v: Record<string, unknown>,
  names: { cert: string; key: string; ca: string },
): CredentialFlags {
  const out: CredentialFlags = {};
  const file = (flag: string) => {
    const path = v[flag.slice(2)];
    if (path === undefined) return undefined;
    if (typeof path !== 'string' || path === '') throw new UsageError(`${flag} needs a file name`);
    return { flag, path };
  };
  const cert = file(names.cert);
  const key = file(names.key);
  const ca = file(names.ca);
  const pskFile = file('--psk-file');
  const id = v['psk-identity'];
  if (cert) out.cert = cert;
  if (key) out.key = key;
  if (ca) out.ca = ca;
  if (pskFile) out.pskFile = pskFile;
  if (typeof id === 'string') out.pskIdentity = { flag: '--psk-identity', value: id };
  return out;
}

/** `--config FILE` stands for the flags in the file, at its place on the command line. */
function expandConfig(argv: string[], flags: ReadonlySet<string>): ServeConfig {
  const at = argv.findIndex((a) => a === '--config' || a.startsWith('--config='));
  if (at < 0) return { argv, access: undefined, limits: {} };
  const inline = argv[at]!.startsWith('--config=');
  const path = inline ? argv[at]!.slice('--config='.length) : argv[at + 1];
  if (!path || path.startsWith('-')) throw new UsageError('--config needs a file name');
  const rest = argv.slice(at + (inline ? 1 : 2));
  if (rest.some((a) => a === '--config' || a.startsWith('--config=')))
    throw new UsageError('--config may be given once');
  const deviceFlags = new Set([...deviceClasses().map((c) => c.name), 'device', 'remote']);
  try {
    const config = loadConfig(path, flags, deviceFlags);
    return { ...config, argv: [...argv.slice(0, at), ...config.argv, ...rest] };
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(`--config ${err.message}`);
    throw err;
  }
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
      const [url = '', ...options] = text.split(',');
      const storage = storageOptions('--remote', text, options);
      try {
        specs.push({ kind: 'remote', remote: parseRemoteUrl(url), storage, text });
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
  const force = options.includes('force');
  const storage = storageOptions(
    '--device',
    text,
    options.filter((o) => o !== 'force'),
    'force, ',
  );
  try {
    return { kind: 'host', selector: parseSelector(selectorText), force, storage, text };
  } catch (err) {
    if (err instanceof SelectorError) throw new UsageError(`--device ${err.message}`);
    throw err;
  }
}

/** The storage wrappers among a device flag's options; any other option is an error. */
function storageOptions(flag: string, text: string, options: string[], others = ''): StorageWrapping {
  const storage: StorageWrapping = {};
  for (const o of options) {
    let known: boolean;
    try {
      known = parseStorageOption(o, storage);
    } catch (err) {
      throw new UsageError(`${flag} ${text}: ${(err as Error).message}`);
    }
    if (!known)
      throw new UsageError(`${flag} ${text}: unknown option "${o}" (known: ${others}${STORAGE_OPTIONS_USAGE})`);
  }
  return storage;
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
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    'tls-ca': { type: 'string' },
    'psk-file': { type: 'string' },
    'psk-identity': { type: 'string' },
    config: { type: 'string' },
    'force-stop': { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  } as const;
}
