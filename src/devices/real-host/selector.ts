import { hex4 } from '../../util/hex.js';
import type { HostUsbDevice } from './sysfs.js';

/** Which host device to export: a port path (follows whatever is plugged there) or an id. */
export type DeviceSelector =
  | { kind: 'port'; path: string }
  | { kind: 'id'; vendorId: number; productId: number; serial: string | undefined };

export class SelectorError extends Error {
  override name = 'SelectorError';
}

/** Parse "1-1.4" (port path) or "046d:0825" / "046d:0825:SERIAL". */
export function parseSelector(text: string): DeviceSelector {
  if (/^\d+-\d+(\.\d+)*$/.test(text)) return { kind: 'port', path: text };
  const m = /^([0-9a-fA-F]{4}):([0-9a-fA-F]{4})(?::(.+))?$/.exec(text);
  if (m) {
    return {
      kind: 'id',
      vendorId: Number.parseInt(m[1]!, 16),
      productId: Number.parseInt(m[2]!, 16),
      serial: m[3],
    };
  }
  throw new SelectorError(`"${text}": expected a port path (e.g. 1-1.4) or VID:PID[:SERIAL] (e.g. 046d:0825)`);
}

export function formatSelector(s: DeviceSelector): string {
  if (s.kind === 'port') return s.path;
  const id = `${hex4(s.vendorId)}:${hex4(s.productId)}`;
  return s.serial === undefined ? id : `${id}:${s.serial}`;
}

export function matches(s: DeviceSelector, d: HostUsbDevice): boolean {
  if (s.kind === 'port') return d.path === s.path;
  return d.vendorId === s.vendorId && d.productId === s.productId && (s.serial === undefined || d.serial === s.serial);
}

/**
 * The one device a selector names among `devices`; undefined when none is plugged (yet). Several
 * devices with the same VID:PID are ambiguous: the error lists them so the user can pick one.
 */
export function selectDevice(s: DeviceSelector, devices: readonly HostUsbDevice[]): HostUsbDevice | undefined {
  const found = devices.filter((d) => matches(s, d));
  if (found.length > 1) {
    const which = found.map((d) => `${d.path}${d.serial ? ` (serial ${d.serial})` : ''}`).join(', ');
    throw new SelectorError(
      `${formatSelector(s)} matches ${found.length} devices: ${which}; give a port path or VID:PID:SERIAL`,
    );
  }
  return found[0];
}
