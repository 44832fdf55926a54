// Runs inside the guest: an isochronous OUT client on the vhci copy of QEMU's usb-audio, through
// usbwire's own LibusbDevice. Selects the streaming alternate setting, sends TRANSFERS × PACKETS
// packets of the endpoint's size, each starting with a unique marker, and prints one JSON line.
// Usage: node real-iso-client.js BUS-PORT TRANSFERS PACKETS
import { openLibusbDevice } from '../../src/devices/libusb/libusb-device.js';
import { parseConfiguration } from '../../src/usb/descriptors.js';
import { TransferStatus } from '../../src/usb/status.js';
import { type IsoPacket, Transfer } from '../../src/usb/transfer.js';
import { setLogSink } from '../../src/util/log.js';

export function isoMarker(transfer: number, packet: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (transfer * 31 + packet * 7 + i) & 0xff;
  b.write(`usbwire-iso-${transfer}-${packet}.`, 0, 'latin1');
  return b;
}

async function main(): Promise<void> {
  setLogSink('silent');
  const [where = '', transfersText = '20', packetsText = '8'] = process.argv.slice(2);
  const [bus, path] = where.split('-');
  const dev = await openLibusbDevice({ busNumber: Number(bus), portNumbers: path!.split('.').map(Number) });
  const config = parseConfiguration(dev.descriptors.configurations[0]!);
  let found: { iface: number; alt: number; ep: number; size: number } | undefined;
  for (const i of config.interfaces) {
    for (const a of i.alternates) {
      const ep = a.endpoints.find((e) => e.type === 'isochronous' && (e.address & 0x80) === 0);
      if (ep && !found) found = { iface: i.number, alt: a.alternate, ep: ep.address, size: ep.maxPacketSize & 0x7ff };
    }
  }
  if (!found) throw new Error('no isochronous OUT endpoint');
  const setAlt = new Transfer({
    type: 'control',
    endpoint: 0,
    setup: { bmRequestType: 0x01, bRequest: 11, wValue: found.alt, wIndex: found.iface, wLength: 0 },
  });
  await dev.submit(setAlt);
  if (setAlt.status !== TransferStatus.Ok) throw new Error(`SET_INTERFACE: ${setAlt.status}`);
  const transfers = Number(transfersText);
  const packets = Number(packetsText);
  const started = Date.now();
  const results = await Promise.all(
    Array.from({ length: transfers }, (_, n) => {
      const iso: IsoPacket[] = [];
      const chunks: Buffer[] = [];
      for (let p = 0; p < packets; p++) {
        iso.push({ offset: p * found.size, length: found.size, actualLength: 0, status: TransferStatus.Ok });
        chunks.push(isoMarker(n, p, found.size));
      }
      const t = new Transfer({ type: 'isochronous', endpoint: found.ep, data: Buffer.concat(chunks), isoPackets: iso });
      return dev.submit(t).then(() => t);
    }),
  );
  const ok = results.filter(
    (t) =>
      t.status === TransferStatus.Ok &&
      t.isoPackets!.every((p) => p.status === TransferStatus.Ok && p.actualLength === found.size),
  ).length;
  const bytes = results.reduce((s, t) => s + t.actualLength, 0);
  console.log(
    JSON.stringify({
      ...found,
      transfers,
      packets,
      ok,
      bytes,
      ms: Date.now() - started,
      statuses: [...new Set(results.map((t) => t.status))],
    }),
  );
  await dev.close();
}

if (process.argv[1]?.endsWith('real-iso-client.js')) await main();
