import net from 'node:net';

export interface HostPort {
  host: string;
  port: number;
}

export class AddressError extends Error {
  override name = 'AddressError';
}

/** The host of a local address given as "PORT" or ":PORT". */
export const LOOPBACK = '127.0.0.1';

/**
 * Parse "HOST:PORT", "[IPv6]:PORT", or (with a default port) "HOST" / "[IPv6]", or (with a
 * default host) "PORT" / ":PORT". A bare IPv6 address without brackets is rejected: its last
 * group would read as a port.
 */
export function parseHostPort(text: string, defaultPort?: number, defaultHost?: string): HostPort {
  const s = text.trim();
  if (s === '') throw new AddressError('empty address, expected HOST:PORT');
  const portOnly = /^:?(\d+)$/.exec(s);
  if (portOnly && defaultHost !== undefined) return { host: defaultHost, port: parsePort(portOnly[1]!, text) };
  let host: string;
  let portText: string | undefined;
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close < 0) throw new AddressError(`"${text}": missing "]" after IPv6 address`);
    host = s.slice(1, close);
    const rest = s.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) throw new AddressError(`"${text}": expected ":PORT" after "]"`);
      portText = rest.slice(1);
    }
    if (net.isIPv6(host) === false) throw new AddressError(`"${text}": "${host}" is not an IPv6 address`);
  } else {
    const colons = s.split(':').length - 1;
    if (colons > 1) throw new AddressError(`"${text}": write IPv6 addresses in brackets, e.g. [::1]:3240`);
    const at = s.indexOf(':');
    host = at < 0 ? s : s.slice(0, at);
    portText = at < 0 ? undefined : s.slice(at + 1);
    if (host === '') throw new AddressError(`"${text}": missing host`);
    if (!/^[A-Za-z0-9._-]+$/.test(host)) throw new AddressError(`"${text}": "${host}" is not a valid host name`);
  }
  if (portText === undefined) {
    if (defaultPort === undefined) throw new AddressError(`"${text}": missing ":PORT"`);
    return { host, port: defaultPort };
  }
  return { host, port: parsePort(portText, text) };
}

function parsePort(p: string, whole: string): number {
  if (!/^\d{1,5}$/.test(p)) throw new AddressError(`"${whole}": port "${p}" is not a number`);
  const port = Number(p);
  if (port > 65535) throw new AddressError(`"${whole}": port ${port} out of range 0-65535`);
  return port;
}

export function formatHostPort(a: HostPort): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}
