import { readFileSync } from 'node:fs';
import { readdir, readFile, readlink } from 'node:fs/promises';
import { basename, join } from 'node:path';

/** A USB device as the host's kernel sees it (sysfs), whoever drives it. */
export interface HostUsbDevice {
  /** Port path: "1-1.4" (bus 1, port 1, then port 4 of the hub there). */
  path: string;
  busnum: number;
  devnum: number;
  vendorId: number;
  productId: number;
  deviceClass: number;
  deviceSubClass: number;
  deviceProtocol: number;
  /** Mbit/s as sysfs says it: "1.5", "12", "480", "5000", "10000", "20000". */
  speed: string;
  manufacturer: string | undefined;
  product: string | undefined;
  serial: string | undefined;
  /** bConfigurationValue, 0 when unconfigured. */
  configuration: number;
  interfaces: HostUsbInterface[];
  /** The device's folder under sysfs (resolved), for finding what hangs below it. */
  sysfsDir: string;
}

export interface HostUsbInterface {
  /** "1-1.4:1.0" */
  name: string;
  number: number;
  interfaceClass: number;
  interfaceSubClass: number;
  interfaceProtocol: number;
  /** Kernel driver bound to it ("usb-storage", "usbhid", "usbfs" for a libusb user), if any. */
  driver: string | undefined;
}

/** Root of the host's file system view; tests point it at a fake tree. */
export interface HostRoot {
  /** Prefix for /sys, /proc and /dev paths ("" on the real host). */
  root: string;
}

export const REAL_HOST: HostRoot = { root: '' };

const DEVICE_NAME = /^\d+-\d+(\.\d+)*$/;

export interface ListOptions {
  /**
   * Also read the string descriptors (manufacturer, product, serial) and the active
   * configuration. The kernel takes the device lock to show those: while a usbfs ioctl is in
   * progress on a device (testusb holds it for a whole test) the read waits. The default leaves
   * them out, for polling.
   */
  strings?: boolean;
  /** Only the device on this port path (an exported device's poll: one device, not the whole bus). */
  only?: string;
}

/**
 * Every USB device on the host except root hubs, in port-path order. Reads are asynchronous and
 * one at a time: a read the kernel makes wait blocks one thread-pool thread, never the event loop.
 */
export async function listHostDevices(host: HostRoot = REAL_HOST, opts: ListOptions = {}): Promise<HostUsbDevice[]> {
  const dir = join(host.root, '/sys/bus/usb/devices');
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const devices: HostUsbDevice[] = [];
  for (const name of names.filter((n) => DEVICE_NAME.test(n) && (opts.only === undefined || n === opts.only))) {
    const d = await readDevice(join(dir, name), name, names, opts.strings ?? false);
    if (d) devices.push(d);
  }
  return devices.sort((a, b) => comparePaths(a.path, b.path));
}

async function readDevice(
  dir: string,
  path: string,
  allNames: string[],
  strings: boolean,
): Promise<HostUsbDevice | undefined> {
  const attr = (name: string) => readAttrAsync(dir, name);
  const hex = async (name: string) => Number.parseInt((await attr(name)) ?? '', 16);
  const vendorId = await hex('idVendor');
  const productId = await hex('idProduct');
  if (Number.isNaN(vendorId) || Number.isNaN(productId)) return undefined;
  const interfaces: HostUsbInterface[] = [];
  for (const n of allNames.filter((n) => n.startsWith(`${path}:`)))
    interfaces.push(await readInterface(join(dir, '..', n), n));
  interfaces.sort((a, b) => a.number - b.number);
  const stringAttr = (name: string) => (strings ? attr(name) : Promise.resolve(undefined));
  return {
    path,
    busnum: Number((await attr('busnum')) ?? 0),
    devnum: Number((await attr('devnum')) ?? 0),
    vendorId,
    productId,
    deviceClass: (await hex('bDeviceClass')) || 0,
    deviceSubClass: (await hex('bDeviceSubClass')) || 0,
    deviceProtocol: (await hex('bDeviceProtocol')) || 0,
    speed: (await attr('speed')) ?? '?',
    manufacturer: await stringAttr('manufacturer'),
    product: await stringAttr('product'),
    serial: await stringAttr('serial'),
    configuration: Number((await stringAttr('bConfigurationValue')) || 0),
    interfaces,
    sysfsDir: await resolveLink(dir),
  };
}

async function readInterface(dir: string, name: string): Promise<HostUsbInterface> {
  const hex = async (attr: string) => Number.parseInt((await readAttrAsync(dir, attr)) ?? '', 16) || 0;
  let driver: string | undefined;
  try {
    driver = basename(await readlink(join(dir, 'driver')));
  } catch {
    driver = undefined;
  }
  return {
    name,
    number: await hex('bInterfaceNumber'),
    interfaceClass: await hex('bInterfaceClass'),
    interfaceSubClass: await hex('bInterfaceSubClass'),
    interfaceProtocol: await hex('bInterfaceProtocol'),
    driver,
  };
}

async function readAttrAsync(dir: string, name: string): Promise<string | undefined> {
  try {
    return (await readFile(join(dir, name), 'latin1')).trim();
  } catch {
    return undefined;
  }
}

/** A sysfs or procfs attribute that the kernel shows without taking a device lock. */
export function readAttr(dir: string, name: string): string | undefined {
  try {
    return readFileSync(join(dir, name), 'latin1').trim();
  } catch {
    return undefined;
  }
}

async function resolveLink(path: string): Promise<string> {
  try {
    return join(path, '..', await readlink(path));
  } catch {
    return path;
  }
}

/** "1-2" < "1-10" < "1-10.1" < "2-1": numeric, part by part. */
export function comparePaths(a: string, b: string): number {
  const pa = a.split(/[-.]/).map(Number);
  const pb = b.split(/[-.]/).map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? -1) - (pb[i] ?? -1);
    if (d !== 0) return d;
  }
  return 0;
}
