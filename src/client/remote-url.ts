import { USBIP_DEFAULT_PORT } from '../protocol/usbip/constants.js';
import { AddressError, formatHostPort, type HostPort, parseHostPort } from '../util/host-port.js';

/** Where a remote device comes from, as `--remote` names it. */
export type RemoteSpec =
  /** A device on a USB/IP server (usbipd, usbwire), imported by bus id; over TLS with usbip+tls://. */
  | { kind: 'usbip'; address: HostPort; busid: string; tls?: boolean }
  /** A usbredir host that listens (usbredirect --as, a SPICE-style server): we connect (usbredir+tls://: over TLS). */
  | { kind: 'usbredir'; address: HostPort; tls?: boolean }
  /** usbredir hosts that connect out (usbredirect --to): we listen. */
  | { kind: 'usbredir-listen'; address: HostPort };

export class RemoteUrlError extends Error {
  override name = 'RemoteUrlError';
}

const FORMS =
  'usbip://HOST[:PORT]/BUSID, usbredir://HOST:PORT, usbredir-listen://HOST:PORT (usbip+tls://, usbredir+tls:// over TLS)';

/** Parse `usbip://HOST[:PORT]/BUSID`, `usbredir://HOST:PORT`, `usbredir-listen://HOST:PORT`. */
export function parseRemoteUrl(text: string): RemoteSpec {
  const m = /^([a-z+-]+):\/\/([^/]*)(?:\/(.*))?$/.exec(text);
  if (!m) throw new RemoteUrlError(`"${text}": expected ${FORMS}`);
  const [, fullScheme, where, path] = m as unknown as [string, string, string, string | undefined];
  const tls = fullScheme === 'usbip+tls' || fullScheme === 'usbredir+tls';
  const scheme = tls ? fullScheme.slice(0, -'+tls'.length) : fullScheme;
  const secure = tls ? { tls: true } : {};
  const address = (defaultPort?: number) => {
    try {
      return parseHostPort(where, defaultPort);
    } catch (err) {
      if (err instanceof AddressError) throw new RemoteUrlError(`"${text}": ${err.message}`);
      throw err;
    }
  };
  switch (scheme) {
    case 'usbip': {
      if (!path) throw new RemoteUrlError(`"${text}": which device? expected usbip://HOST[:PORT]/BUSID`);
      if (!/^\d+-\d+(\.\d+)*$/.test(path)) {
        throw new RemoteUrlError(`"${text}": bad bus id "${path}" (expected e.g. 1-1 or 1-1.4)`);
      }
      return { kind: 'usbip', address: address(USBIP_DEFAULT_PORT), busid: path, ...secure };
    }
    case 'usbredir':
    case 'usbredir-listen': {
      if (path) throw new RemoteUrlError(`"${text}": ${scheme}:// takes no path (one device per connection)`);
      const a = address();
      if (a.port === 0 && scheme === 'usbredir') throw new RemoteUrlError(`"${text}": port must be 1-65535`);
      return scheme === 'usbredir' ? { kind: scheme, address: a, ...secure } : { kind: scheme, address: a };
    }
    default:
      throw new RemoteUrlError(`"${text}": unknown scheme "${fullScheme}://" (expected ${FORMS})`);
  }
}

export function formatRemoteUrl(spec: RemoteSpec): string {
  const where = formatHostPort(spec.address);
  const scheme = spec.kind !== 'usbredir-listen' && spec.tls ? `${spec.kind}+tls` : spec.kind;
  return spec.kind === 'usbip' ? `${scheme}://${where}/${spec.busid}` : `${scheme}://${where}`;
}
