import { whatHolds } from '../devices/real-host/holders.js';
import { type HostRoot, type HostUsbDevice, listHostDevices, REAL_HOST } from '../devices/real-host/sysfs.js';
import { hex4 } from '../util/hex.js';
import { className, UsbIds } from '../util/usb-ids.js';

/** What `usbwire list --local` prints: the host's USB devices, the way `usbip list -l` starts them. */
export function formatLocal(
  devices: readonly HostUsbDevice[],
  ids: UsbIds,
  holds: (d: HostUsbDevice) => string[],
): string {
  if (devices.length === 0) return 'no USB devices on this host (or /sys/bus/usb is not readable)\n';
  let out = '';
  for (const d of devices) {
    const id = `${hex4(d.vendorId)}:${hex4(d.productId)}`;
    const vendor = d.manufacturer ?? ids.vendor(d.vendorId) ?? 'unknown vendor';
    const product = d.product ?? ids.product(d.vendorId, d.productId) ?? 'unknown product';
    out += ` - busid ${d.path} (${id})\n`;
    out += `   ${vendor} : ${product} (${id})\n`;
    const details = [`${d.speed} Mbit/s`];
    if (d.serial) details.push(`serial ${d.serial}`);
    out += `   ${details.join(', ')}\n`;
    const classes =
      d.deviceClass !== 0 || d.interfaces.length === 0
        ? [className(ids, d.deviceClass, d.deviceSubClass, d.deviceProtocol)]
        : d.interfaces.map(
            (i) => `${i.number}: ${className(ids, i.interfaceClass, i.interfaceSubClass, i.interfaceProtocol)}`,
          );
    for (const c of classes) out += `   ${c}\n`;
    const drivers = [...new Set(d.interfaces.map((i) => i.driver).filter((x): x is string => x !== undefined))];
    out += `   driver: ${drivers.length ? drivers.join(', ') : 'none'}\n`;
    const held = holds(d);
    const usbfs = drivers.includes('usbfs') ? ['claimed by a userspace program (usbfs)'] : [];
    const busy = [...held, ...usbfs];
    out += `   in use: ${busy.length ? busy.join('; ') : 'no'}\n\n`;
  }
  return out;
}

export async function listLocal(host: HostRoot = REAL_HOST): Promise<string> {
  return formatLocal(await listHostDevices(host, { strings: true }), UsbIds.load(), (d) => whatHolds(d, host));
}
