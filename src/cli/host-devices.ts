import { HostDeviceSource } from '../devices/real-host/source.js';
import type { HostUsbDevice } from '../devices/real-host/sysfs.js';
import type { UsbDevice } from '../usb/device.js';
import type { DeviceSource } from '../usb/source.js';
import type { ExportSpec } from './args.js';
import { UsageError } from './args.js';

type HostSpec = Extract<ExportSpec, { kind: 'host' }>;

/** libusb is loaded only when a host device is exported: usbwire without it serves everything else. */
async function libusbOpener(): Promise<(d: HostUsbDevice) => Promise<UsbDevice>> {
  const { openLibusbDevice } = await import('../devices/libusb/libusb-device.js');
  const { libusb } = await import('../devices/libusb/libusb-ffi.js');
  try {
    libusb();
  } catch (err) {
    throw new UsageError(`--device: ${(err as Error).message}`);
  }
  return (d) => openLibusbDevice({ busNumber: d.busnum, portNumbers: d.path.split('-')[1]!.split('.').map(Number) });
}

/** The sources for every --device, or none (and no libusb) when there is none. */
export async function hostDeviceSources(specs: readonly HostSpec[]): Promise<DeviceSource[]> {
  if (specs.length === 0) return [];
  const open = await libusbOpener();
  return specs.map((s) => new HostDeviceSource({ selector: s.selector, force: s.force, open }));
}
