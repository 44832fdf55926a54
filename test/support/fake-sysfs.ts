import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { HostRoot } from '../../src/devices/real-host/sysfs.js';

const PCI = '/sys/devices/pci0000:00/0000:00:04.0/usb2';

/** A fake /sys + /proc tree laid out as Linux 6.1 lays out USB devices, for the host-device code. */
export class FakeSysfs implements HostRoot {
  readonly root = mkdtempSync(join(tmpdir(), 'usbwire-sysfs-'));
  static readonly PCI = PCI;

  file(path: string, text: string): void {
    mkdirSync(dirname(join(this.root, path)), { recursive: true });
    writeFileSync(join(this.root, path), `${text}\n`);
  }

  link(path: string, target: string): void {
    mkdirSync(dirname(join(this.root, path)), { recursive: true });
    symlinkSync(target, join(this.root, path));
  }

  mkdir(path: string): void {
    mkdirSync(join(this.root, path), { recursive: true });
  }

  /** A device at `path` on bus 2 with one interface (bound to `driver` if given). */
  device(path: string, attrs: Record<string, string>, iface: Record<string, string>, driver?: string): void {
    for (const [k, v] of Object.entries(attrs)) this.file(`${PCI}/${path}/${k}`, v);
    const ifName = `${path}:1.0`;
    for (const [k, v] of Object.entries(iface)) this.file(`${PCI}/${path}/${ifName}/${k}`, v);
    if (driver) this.link(`${PCI}/${path}/${ifName}/driver`, `../../../../../../bus/usb/drivers/${driver}`);
    this.link(`/sys/bus/usb/devices/${path}`, `../../../devices/pci0000:00/0000:00:04.0/usb2/${path}`);
    this.link(`/sys/bus/usb/devices/${ifName}`, `../../../devices/pci0000:00/0000:00:04.0/usb2/${path}/${ifName}`);
  }

  /** The device is unplugged: its sysfs entries go. */
  unplug(path: string): void {
    for (const p of [`/sys/bus/usb/devices/${path}`, `/sys/bus/usb/devices/${path}:1.0`, `${PCI}/${path}`]) {
      rmSync(join(this.root, p), { recursive: true, force: true });
    }
  }

  remove(): void {
    rmSync(this.root, { recursive: true, force: true });
  }
}
