import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { AccessPolicy, AccessRuleError } from '../server/access.js';
import { DEFAULT_SERVER_LIMITS, type ServerLimits } from '../server/limits.js';
import { DEFAULT_PEER_TIMEOUT_MS } from '../transport/peer-timeout.js';

/**
 * `usbwire serve --config FILE`: a whole setup in one JSON file. Top-level keys are serve's own
 * flags (`"usbip": "0.0.0.0:3240"`, `"tls-cert": "server.pem"`; a list for a repeatable flag),
 * `"devices"` lists device flags in bus id order (`[{ "disk": "a.img,readonly" }, { "keyboard":
 * true }, { "remote": "usbip://host/1-1" }]`), `"access"` holds the access rules (access.ts) and
 * `"limits"` the limits (limits.ts). Relative paths are relative to the file.
 */
export interface ServeConfig {
  /** The flags the file stands for, as they would be written on the command line. */
  argv: string[];
  access: AccessPolicy | undefined;
  limits: ServerLimits & { peerTimeoutMs?: number };
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Flags whose value is a file name (relative to the config file). */
const PATH_FLAGS = new Set(['tls-cert', 'tls-key', 'tls-ca', 'psk-file']);
/** Device flags whose value starts with a file name, before the first comma. */
const PATH_DEVICES = new Set(['disk']);
/** Keys that are not flags, or flags that make no sense in a file. */
const NOT_FLAGS = new Set(['devices', 'access', 'limits', 'config', 'help']);

const LIMITS: Record<keyof ServeConfig['limits'], { min: number; max: number; default: number }> = {
  maxTransferLength: { min: 4096, max: 1 << 30, default: DEFAULT_SERVER_LIMITS.maxTransferLength },
  maxTransfersInFlight: { min: 1, max: 1 << 20, default: DEFAULT_SERVER_LIMITS.maxTransfersInFlight },
  maxBytesInFlight: { min: 4096, max: 2 ** 34, default: DEFAULT_SERVER_LIMITS.maxBytesInFlight },
  maxConnections: { min: 1, max: 1 << 20, default: DEFAULT_SERVER_LIMITS.maxConnections },
  maxConnectionsPerAddress: { min: 1, max: 1 << 20, default: DEFAULT_SERVER_LIMITS.maxConnectionsPerAddress },
  handshakeTimeoutMs: { min: 100, max: 3_600_000, default: DEFAULT_SERVER_LIMITS.handshakeTimeoutMs },
  writeStallTimeoutMs: { min: 100, max: 3_600_000, default: DEFAULT_SERVER_LIMITS.writeStallTimeoutMs },
  peerTimeoutMs: { min: 2000, max: 3_600_000, default: DEFAULT_PEER_TIMEOUT_MS },
};

/**
 * Read and check a config file. `flags` are serve's flag names (`usbip`, `disk`, ...) and
 * `deviceFlags` those that name a device; anything else is an error naming the key.
 */
export function loadConfig(path: string, flags: ReadonlySet<string>, deviceFlags: ReadonlySet<string>): ServeConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    return parseConfig(text, dirname(resolve(path)), flags, deviceFlags);
  } catch (err) {
    if (err instanceof ConfigError || err instanceof AccessRuleError) throw new ConfigError(`${path}: ${err.message}`);
    throw err;
  }
}

export function parseConfig(
  text: string,
  baseDir: string,
  flags: ReadonlySet<string>,
  deviceFlags: ReadonlySet<string>,
): ServeConfig {
  const root = parseJson(text);
  if (typeof root !== 'object' || root === null || Array.isArray(root)) throw new ConfigError('expected a JSON object');
  const argv: string[] = [];
  const top = root as Record<string, unknown>;
  for (const [key, value] of Object.entries(top)) {
    if (NOT_FLAGS.has(key)) continue;
    if (!flags.has(key) || deviceFlags.has(key)) {
      const hint = deviceFlags.has(key) ? ` (devices go in "devices": [{ "${key}": ... }])` : '';
      throw new ConfigError(`unknown key "${key}"${hint}`);
    }
    for (const v of Array.isArray(value) ? value : [value]) argv.push(...flag(key, v, key, baseDir));
  }
  const devices = top.devices ?? [];
  if (!Array.isArray(devices)) throw new ConfigError('"devices" must be a list');
  devices.forEach((d, i) => {
    const where = `devices[${i}]`;
    if (typeof d !== 'object' || d === null || Array.isArray(d) || Object.keys(d).length !== 1) {
      throw new ConfigError(`${where}: expected one device, e.g. { "disk": "a.img" }`);
    }
    const [name, value] = Object.entries(d)[0]!;
    if (!deviceFlags.has(name)) throw new ConfigError(`${where}: unknown device "${name}"`);
    argv.push(...flag(name, value, where, baseDir));
  });
  return {
    argv,
    access: top.access === undefined ? undefined : AccessPolicy.parse(top.access),
    limits: parseLimits(top.limits),
  };
}

function flag(name: string, value: unknown, where: string, baseDir: string): string[] {
  if (value === true) return [`--${name}`];
  if (typeof value === 'number' && Number.isFinite(value)) return [`--${name}`, String(value)];
  if (typeof value !== 'string') throw new ConfigError(`${where}: expected a string, a number or true`);
  if (PATH_FLAGS.has(name)) return [`--${name}`, relativeTo(baseDir, value)];
  if (PATH_DEVICES.has(name)) {
    const comma = value.indexOf(',');
    const file = comma < 0 ? value : value.slice(0, comma);
    return [`--${name}`, relativeTo(baseDir, file) + (comma < 0 ? '' : value.slice(comma))];
  }
  if (name === 'control' && value.startsWith('unix:'))
    return [`--${name}`, `unix:${relativeTo(baseDir, value.slice(5))}`];
  return [`--${name}`, value];
}

function relativeTo(baseDir: string, file: string): string {
  return file === '' || isAbsolute(file) ? file : resolve(baseDir, file);
}

function parseLimits(value: unknown): ServeConfig['limits'] {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new ConfigError('"limits" must be an object');
  const out: Record<string, number> = {};
  for (const [key, v] of Object.entries(value)) {
    const range = LIMITS[key as keyof typeof LIMITS];
    if (!range) throw new ConfigError(`limits: unknown limit "${key}" (known: ${Object.keys(LIMITS).join(', ')})`);
    if (typeof v !== 'number' || !Number.isInteger(v) || v < range.min || v > range.max) {
      throw new ConfigError(`limits.${key}: expected an integer from ${range.min} to ${range.max}`);
    }
    out[key] = v;
  }
  return out;
}

/** JSON.parse with the error's position as line:column. */
function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    const message = (err as Error).message;
    const pos = /position (\d+)/.exec(message);
    if (!pos) throw new ConfigError(`not valid JSON: ${message}`);
    const before = text.slice(0, Number(pos[1]));
    const line = before.split('\n').length;
    const column = before.length - before.lastIndexOf('\n');
    throw new ConfigError(
      `not valid JSON at line ${line}, column ${column}: ${message.replace(/ in JSON at position \d+.*$/, '')}`,
    );
  }
}
