import type { UsbipDevlistEntry, UsbipInterfaceInfo } from '../../protocol/usbip/op.js';
import { speedToLinux } from '../../protocol/usbip/status.js';
import {
  activeEndpoints,
  type EndpointType,
  type ParsedConfiguration,
  parseConfiguration,
  parseDeviceDescriptor,
} from '../../usb/descriptors.js';
import type { UsbDevice } from '../../usb/device.js';
import type { PresentDevice } from '../registry.js';

export function sysfsPath(busid: string): string {
  return `/sys/devices/usbwire/${busid}`;
}

/** The USB/IP view of an exported device; fields a broken descriptor cannot provide read as 0. */
export function describeExport(entry: PresentDevice): UsbipDevlistEntry {
  const { device } = entry;
  let dev: ReturnType<typeof parseDeviceDescriptor> | undefined;
  try {
    dev = parseDeviceDescriptor(device.descriptors.device);
  } catch {
    dev = undefined;
  }
  const config = parseConfigurationOrUndefined(device.descriptors.configurations[0]);
  const interfaces: UsbipInterfaceInfo[] = (config?.interfaces ?? []).map((iface) => {
    const alt = iface.alternates.find((a) => a.alternate === 0) ?? iface.alternates[0]!;
    return {
      interfaceClass: alt.interfaceClass,
      interfaceSubClass: alt.interfaceSubClass,
      interfaceProtocol: alt.interfaceProtocol,
    };
  });
  return {
    path: sysfsPath(entry.busid),
    busid: entry.busid,
    busnum: entry.busnum,
    devnum: entry.devnum,
    speed: speedToLinux(device.speed),
    idVendor: dev?.vendorId ?? 0,
    idProduct: dev?.productId ?? 0,
    bcdDevice: dev?.bcdDevice ?? 0,
    bDeviceClass: dev?.deviceClass ?? 0,
    bDeviceSubClass: dev?.deviceSubClass ?? 0,
    bDeviceProtocol: dev?.deviceProtocol ?? 0,
    bConfigurationValue: config?.value ?? 0,
    bNumConfigurations: dev?.numConfigurations ?? device.descriptors.configurations.length,
    bNumInterfaces: interfaces.length,
    interfaces,
  };
}

function parseConfigurationOrUndefined(b: Buffer | undefined): ParsedConfiguration | undefined {
  if (!b) return undefined;
  try {
    return parseConfiguration(b);
  } catch {
    return undefined;
  }
}

/**
 * Endpoint types of a device's active configuration, honouring the selected alternate settings.
 * Configuration descriptors are parsed once per session; alternate settings are read per lookup
 * because SET_INTERFACE can change them at any time.
 */
export class EndpointTypes {
  readonly #device: UsbDevice;
  readonly #configs = new Map<number, ParsedConfiguration>();

  constructor(device: UsbDevice) {
    this.#device = device;
    for (const raw of device.descriptors.configurations) {
      const c = parseConfigurationOrUndefined(raw);
      if (c && !this.#configs.has(c.value)) this.#configs.set(c.value, c);
    }
  }

  /** Type of the endpoint with this address (0x80 bit for IN), undefined if not active. */
  lookup(address: number): EndpointType | undefined {
    const config = this.#configs.get(this.#device.configuration);
    if (!config) return undefined;
    const eps = activeEndpoints(config, (i) => this.#device.alternateSetting(i));
    return eps.find((e) => e.address === address)?.type;
  }
}
