import { BlockList, isIP, type Socket } from 'node:net';
import type { PeerIdentity } from '../transport/peer.js';

/** Who is on the other end of a connection, as far as the transport could establish it. */
export interface ClientIdentity {
  /** Remote IP address, without port. */
  readonly address: string;
  /** A client certificate the TLS layer verified against the configured CA. */
  readonly certificate?: { readonly subject: string; readonly altNames: readonly string[] };
  /** The TLS-PSK identity the client proved it has the key for. */
  readonly psk?: string;
}

/** The peer as access rules see it: its IP address without port, and what the transport proved. */
export function clientIdentity(socket: Socket, peer: PeerIdentity): ClientIdentity {
  const address = socket.remoteAddress ?? '?';
  if (peer.kind === 'cert') return { address, certificate: { subject: peer.subject, altNames: peer.altNames } };
  if (peer.kind === 'psk') return { address, psk: peer.identity };
  return { address };
}

/** "cert alice (10.0.0.2)", "psk lab-1 (10.0.0.2)", "10.0.0.2": for log lines. */
export function describeClient(c: ClientIdentity): string {
  if (c.certificate) return `cert ${c.certificate.subject} (${c.address})`;
  if (c.psk !== undefined) return `psk ${c.psk} (${c.address})`;
  return c.address;
}

export class AccessRuleError extends Error {
  override name = 'AccessRuleError';
}

type ClientMatcher = (c: ClientIdentity) => boolean;

interface Rule {
  clients: ClientMatcher[];
  /** Bus ids, or undefined for every device. */
  devices: Set<string> | undefined;
}

/**
 * Which client may see and use which exported device. Without rules everyone may use everything
 * (the policy of a server on loopback); with rules, a client may use a device only if a rule
 * names both. Clients are written `*`, `address:IP[/PREFIX]`, `cert:NAME` (the certificate's
 * subject CN or one of its subjectAltNames), `cert:*`, `psk:IDENTITY` or `psk:*`; devices as bus ids
 * or `*`.
 */
export class AccessPolicy {
  static readonly open = new AccessPolicy([]);
  readonly #rules: Rule[];

  private constructor(rules: Rule[]) {
    this.#rules = rules;
  }

  /** From the config file's `access` list: `[{ "clients": [...], "devices": [...] }, ...]`. */
  static parse(value: unknown): AccessPolicy {
    if (!Array.isArray(value)) throw new AccessRuleError('"access" must be a list of { clients, devices } rules');
    return new AccessPolicy(value.map((r, i) => parseRule(r, `access[${i}]`)));
  }

  /** True when rules restrict who may use what. */
  get restricted(): boolean {
    return this.#rules.length > 0;
  }

  allows(client: ClientIdentity, busid: string): boolean {
    if (!this.restricted) return true;
    return this.#rules.some(
      (r) => (r.devices === undefined || r.devices.has(busid)) && r.clients.some((m) => m(client)),
    );
  }

  /** Bus ids a rule names that are not among `known`: a typo would otherwise silently deny. */
  unknownDevices(known: readonly string[]): string[] {
    const have = new Set(known);
    return [...new Set(this.#rules.flatMap((r) => [...(r.devices ?? [])]))].filter((b) => !have.has(b));
  }
}

function parseRule(value: unknown, where: string): Rule {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new AccessRuleError(`${where}: expected { "clients": [...], "devices": [...] }`);
  }
  const r = value as Record<string, unknown>;
  for (const key of Object.keys(r)) {
    if (key !== 'clients' && key !== 'devices') throw new AccessRuleError(`${where}: unknown key "${key}"`);
  }
  const clients = stringList(r.clients, `${where}.clients`).map((c) => parseClient(c, `${where}.clients`));
  const devices = stringList(r.devices, `${where}.devices`);
  for (const d of devices) {
    if (d !== '*' && !/^\d+-\d+(\.\d+)*$/.test(d)) {
      throw new AccessRuleError(`${where}.devices: "${d}" is not a bus id (e.g. 1-1) or *`);
    }
  }
  return { clients, devices: devices.includes('*') ? undefined : new Set(devices) };
}

function stringList(value: unknown, where: string): string[] {
  const list = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(list) || list.length === 0 || !list.every((s) => typeof s === 'string')) {
    throw new AccessRuleError(`${where}: expected a non-empty list of strings`);
  }
  return list;
}

function parseClient(text: string, where: string): ClientMatcher {
  if (text === '*') return () => true;
  const colon = text.indexOf(':');
  const kind = colon < 0 ? '' : text.slice(0, colon);
  const arg = text.slice(colon + 1);
  if (arg === '') throw new AccessRuleError(`${where}: "${text}" names nobody`);
  switch (kind) {
    case 'address':
      return addressMatcher(arg, where);
    case 'cert':
      if (arg === '*') return (c) => c.certificate !== undefined;
      return (c) => c.certificate !== undefined && certificateNames(c.certificate).includes(arg);
    case 'psk':
      if (arg === '*') return (c) => c.psk !== undefined;
      return (c) => c.psk === arg;
    default:
      throw new AccessRuleError(`${where}: "${text}": expected *, address:IP[/PREFIX], cert:NAME or psk:IDENTITY`);
  }
}

/** The names a certificate answers to: its CN, and each subjectAltName with and without its type. */
function certificateNames(cert: { subject: string; altNames: readonly string[] }): string[] {
  const names = [cert.subject];
  const cn = /(?:^|[,/\n])\s*CN=([^,/\n]+)/.exec(cert.subject);
  if (cn) names.push(cn[1]!.trim());
  for (const alt of cert.altNames) {
    names.push(alt);
    const colon = alt.indexOf(':');
    if (colon > 0) names.push(alt.slice(colon + 1));
  }
  return names;
}

function addressMatcher(text: string, where: string): ClientMatcher {
  const [ip = '', prefixText] = text.split('/');
  const family = isIP(ip);
  if (family === 0) throw new AccessRuleError(`${where}: "address:${text}": not an IP address`);
  const type = family === 4 ? 'ipv4' : 'ipv6';
  const max = family === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (
    !Number.isInteger(prefix) ||
    prefix < 0 ||
    prefix > max ||
    (prefixText !== undefined && !/^\d+$/.test(prefixText))
  ) {
    throw new AccessRuleError(`${where}: "address:${text}": prefix must be 0-${max}`);
  }
  const list = new BlockList();
  list.addSubnet(ip, prefix, type);
  return (c) => {
    const addr = c.address.startsWith('::ffff:') && family === 4 ? c.address.slice(7) : c.address;
    const f = isIP(addr);
    return f !== 0 && list.check(addr, f === 4 ? 'ipv4' : 'ipv6');
  };
}
