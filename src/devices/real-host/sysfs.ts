import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
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

/** Every USB device on the host except root hubs, in port-path order. */
export function listHostDevices(host: HostRoot = REAL_HOST): HostUsbDevice[] {
  const dir = join(host.root, '/sys/bus/usb/devices');
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const devices: HostUsbDevice[] = [];
  for (const name of names.filter((n) => DEVICE_NAME.test(n))) {
    const d = readDevice(join(dir, name), name, names);
    if (d) devices.push(d);
  }
  return devices.sort((a, b) => comparePaths(a.path, b.path));
}

function readDevice(dir: string, path: string, allNames: string[]): HostUsbDevice | undefined {
  const attr = (name: string) => readAttr(dir, name);
  const hex = (name: string) => Number.parseInt(attr(name) ?? '', 16);
  const vendorId = hex('idVendor');
  const productId = hex('idProduct');
  if (Number.isNaN(vendorId) || Number.isNaN(productId)) return undefined;
  const interfaces = allNames
    .filter((n) => n.startsWith(`${path}:`))
    .map((n) => readInterface(join(dir, '..', n), n))
    .sort((a, b) => a.number - b.number);
  return {
    path,
    busnum: Number(attr('busnum') ?? 0),
    devnum: Number(attr('devnum') ?? 0),
    vendorId,
    productId,
    deviceClass: hex('bDeviceClass') || 0,
    deviceSubClass: hex('bDeviceSubClass') || 0,
    deviceProtocol: hex('bDeviceProtocol') || 0,
    speed: attr('speed') ?? '?',
    manufacturer: attr('manufacturer'),
    product: attr('product'),
    serial: attr('serial'),
    configuration: Number(attr('bConfigurationValue') || 0),
    interfaces,
    sysfsDir: resolveLink(dir),
  };
}

function readInterface(dir: string, name: string): HostUsbInterface {
  const hex = (attr: string) => Number.parseInt(readAttr(dir, attr) ?? '', 16) || 0;
  let driver: string | undefined;
  try {
    driver = basename(readlinkSync(join(dir, 'driver')));
  } catch {
    driver = undefined;
  }
  return {
    name,
    number: hex('bInterfaceNumber'),
    interfaceClass: hex('bInterfaceClass'),
    interfaceSubClass: hex('bInterfaceSubClass'),
    interfaceProtocol: hex('bInterfaceProtocol'),
    driver,
  };
}

export function readAttr(dir: string, name: string): string | undefined {
  try {
    return readFileSync(join(dir, name), 'latin1').trim();
  } catch {
    return undefined;
  }
}

function resolveLink(path: string): string {
  try {
    const target = readlinkSync(path);
    return join(path, '..', target);
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
