// Device side of bench/usbip-throughput.ts, run in its own process:
//   usbip            → a UsbipServer exporting gadget zero (source/sink: bulk IN 0x81 sources zeros,
//                      bulk OUT 0x01 sinks and checks them)
//   raw <chunk> <total> → a TCP server pumping `total` bytes per connection in chunk-sized writes
//   sink <total>     → a TCP server reading `total` bytes per connection, then closing it
// Reports {port} to the parent over IPC.
import net from 'node:net';
import { createGadgetZero } from '../src/devices/gadget-zero/index.js';
import { DeviceRegistry } from '../src/server/registry.js';
import { UsbipServer } from '../src/server/usbip/index.js';
import { tuneSocket } from '../src/transport/tcp.js';
import { setLogSink } from '../src/util/log.js';

async function startUsbip(): Promise<number> {
  const registry = new DeviceRegistry();
  registry.add(createGadgetZero({ name: 'bench gadget zero' }));
  const server = new UsbipServer(registry, { host: '127.0.0.1', port: 0 });
  return (await server.listen()).port;
}

function listen(onSocket: (socket: net.Socket) => void): Promise<number> {
  const server = net.createServer((socket) => {
    tuneSocket(socket);
    onSocket(socket);
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)),
  );
}

function startRaw(chunkSize: number, total: number): Promise<number> {
  const chunk = Buffer.alloc(chunkSize, 0xa5);
  return listen((socket) => {
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
}

function startSink(total: number): Promise<number> {
  return listen((socket) => {
    let received = 0;
    socket.on('data', (c: Buffer) => {
      received += c.length;
      if (received >= total) socket.end();
    });
  });
}

if (process.send) {
  setLogSink('silent');
  const [mode, a, b] = process.argv.slice(2);
  const port =
    mode === 'raw'
      ? await startRaw(Number(a), Number(b))
      : mode === 'sink'
        ? await startSink(Number(a))
        : await startUsbip();
  process.send({ port });
  process.on('disconnect', () => process.exit(0));
}
