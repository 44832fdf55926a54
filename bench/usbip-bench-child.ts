// Sender side of bench/usbip-throughput.ts, run in its own process:
//   usbip <transferSize>  → a UsbipServer exporting an in-memory bulk IN source
//   raw <chunkSize> <total> → a TCP server pumping `total` bytes per connection in chunkSize writes
// Reports {port} to the parent over IPC.
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { DeviceRegistry } from '../src/server/registry.js';
import { UsbipServer } from '../src/server/usbip/index.js';
import { tuneSocket } from '../src/transport/tcp.js';
import { buildConfiguration, buildDeviceDescriptor, StringTable } from '../src/usb/descriptors.js';
import type { DeviceDescriptors, UsbDevice, UsbDeviceEvents } from '../src/usb/device.js';
import { StandardRequest } from '../src/usb/setup.js';
import { TransferStatus } from '../src/usb/status.js';
import type { Transfer } from '../src/usb/transfer.js';
import { setLogSink } from '../src/util/log.js';

/** Bulk IN 0x81 answers every transfer at once from one preallocated buffer. */
export class BulkSourceDevice extends EventEmitter<UsbDeviceEvents> implements UsbDevice {
  readonly name = 'bulk-source';
  readonly speed = 'super' as const;
  readonly descriptors: DeviceDescriptors;
  configuration = 0;
  readonly #payload: Buffer;

  constructor(maxTransfer: number) {
    super();
    this.#payload = Buffer.alloc(maxTransfer, 0xa5);
    const device = buildDeviceDescriptor({
      bcdUSB: 0x300,
      deviceClass: 0,
      deviceSubClass: 0,
      deviceProtocol: 0,
      maxPacketSize0: 9,
      vendorId: 0x1209,
      productId: 0xbe7c,
      bcdDevice: 1,
      iManufacturer: 0,
      iProduct: 0,
      iSerialNumber: 0,
      numConfigurations: 1,
    });
    const config = buildConfiguration(
      { value: 1, attributes: 0, maxPowerMa: 100, superSpeed: true },
      [
        {
          number: 0,
          alternates: [
            {
              alternate: 0,
              interfaceClass: 0xff,
              interfaceSubClass: 0,
              interfaceProtocol: 0,
              endpoints: [{ address: 0x81, type: 'bulk', maxPacketSize: 1024, interval: 0 }],
            },
          ],
        },
      ],
      new StringTable(),
    );
    this.descriptors = { device, configurations: [config] };
  }

  alternateSetting(): number {
    return 0;
  }

  async submit(t: Transfer): Promise<void> {
    if (t.type !== 'control') return t.completeIn(this.#payload.subarray(0, Math.min(t.length, this.#payload.length)));
    const s = t.setup!;
    if (s.bRequest === StandardRequest.GetDescriptor) {
      const type = s.wValue >> 8;
      const d = type === 1 ? this.descriptors.device : type === 2 ? this.descriptors.configurations[0] : undefined;
      return d ? t.completeIn(d.subarray(0, s.wLength)) : t.fail(TransferStatus.Stall);
    }
    if (s.bRequest === StandardRequest.GetConfiguration) return t.completeIn(Buffer.from([this.configuration]));
    if (s.bRequest === StandardRequest.SetConfiguration) {
      this.configuration = s.wValue;
      return;
    }
    t.fail(TransferStatus.Stall);
  }

  cancel(): void {}
  async reset(): Promise<void> {
    this.configuration = 0;
  }
  async close(): Promise<void> {}
}

async function startUsbip(transferSize: number): Promise<number> {
  const registry = new DeviceRegistry();
  registry.add(new BulkSourceDevice(transferSize));
  const server = new UsbipServer(registry, { host: '127.0.0.1', port: 0 });
  return (await server.listen()).port;
}

function startRaw(chunkSize: number, total: number): Promise<number> {
  const chunk = Buffer.alloc(chunkSize, 0xa5);
  const server = net.createServer((socket) => {
    tuneSocket(socket);
    let sent = 0;
    const pump = () => {
      while (sent < total) {
        const n = Math.min(chunkSize, total - sent);
        sent += n;
        if (!socket.write(n === chunkSize ? chunk : chunk.subarray(0, n))) return void socket.once('drain', pump);
      }
      socket.end();
    };
    pump();
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)),
  );
}

if (process.send) {
  setLogSink('silent');
  const [mode, a, b] = process.argv.slice(2);
  const port = mode === 'raw' ? await startRaw(Number(a), Number(b)) : await startUsbip(Number(a));
  process.send({ port });
  process.on('disconnect', () => process.exit(0));
}
