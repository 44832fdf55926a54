import { once } from 'node:events';
import net from 'node:net';
import { encodePacket } from '../../src/protocol/usbredir/codec.js';
import { EndpointKind, endpointIndex, PacketType as T } from '../../src/protocol/usbredir/constants.js';
import { capsFrom, Negotiation } from '../../src/protocol/usbredir/negotiation.js';
import type { EpInfoEntry, Packet, PacketOf } from '../../src/protocol/usbredir/packets.js';
import { UsbredirParser } from '../../src/protocol/usbredir/parser.js';
import { buildDeviceDescriptor } from '../../src/usb/descriptors.js';

export const ALL_HOST_CAPS = [0, 1, 2, 3, 4, 5, 6, 7];

export interface FakeEndpoint {
  address: number;
  type: number;
  maxPacketSize: number;
  interval?: number;
  maxStreams?: number;
}

/** Interface 0 with bulk 0x81/0x02 (512), interrupt IN 0x83 (8, interval 4). */
export const DEFAULT_ENDPOINTS: FakeEndpoint[] = [
  { address: 0x81, type: EndpointKind.Bulk, maxPacketSize: 512 },
  { address: 0x02, type: EndpointKind.Bulk, maxPacketSize: 512 },
  { address: 0x83, type: EndpointKind.Interrupt, maxPacketSize: 8, interval: 4 },
];

export const FAKE_DEVICE_DESCRIPTOR = buildDeviceDescriptor({
  bcdUSB: 0x0200,
  deviceClass: 0,
  deviceSubClass: 0,
  deviceProtocol: 0,
  maxPacketSize0: 64,
  vendorId: 0x1234,
  productId: 0x5678,
  bcdDevice: 0x0100,
  iManufacturer: 0,
  iProduct: 0,
  iSerialNumber: 0,
  numConfigurations: 1,
});

/** A configuration descriptor matching DEFAULT_ENDPOINTS. */
export function fakeConfigDescriptor(endpoints: FakeEndpoint[] = DEFAULT_ENDPOINTS): Buffer {
  const eps = endpoints.flatMap((e) => [
    7,
    5,
    e.address,
    e.type,
    e.maxPacketSize & 0xff,
    e.maxPacketSize >> 8,
    e.interval ?? 0,
  ]);
  const body = [9, 4, 0, 0, endpoints.length, 0xff, 0, 0, 0, ...eps];
  const total = 9 + body.length;
  return Buffer.from([9, 2, total & 0xff, total >> 8, 1, 1, 0, 0x80, 50, ...body]);
}

export function epInfo(endpoints: FakeEndpoint[]): EpInfoEntry[] {
  const out: EpInfoEntry[] = Array.from({ length: 32 }, () => ({
    type: EndpointKind.Invalid,
    interval: 0,
    interface: 0,
    maxPacketSize: 0,
    maxStreams: 0,
  }));
  out[0] = { type: EndpointKind.Control, interval: 0, interface: 0, maxPacketSize: 64, maxStreams: 0 };
  out[16] = { ...out[0] };
  for (const e of endpoints) {
    out[endpointIndex(e.address)] = {
      type: e.type,
      interval: e.interval ?? 0,
      interface: 0,
      maxPacketSize: e.maxPacketSize,
      maxStreams: e.maxStreams ?? 0,
    };
  }
  return out;
}

/** device_connect for a high-speed 1234:5678, or the given ids. */
export function deviceConnectPacket(vendorId = 0x1234, productId = 0x5678): Packet {
  const ids = { vendorId, productId, deviceVersionBcd: 0x0100 };
  return { type: T.DeviceConnect, id: 0n, speed: 2, deviceClass: 0, deviceSubclass: 0, deviceProtocol: 0, ...ids };
}

/**
 * A scripted usbredir host on a TCP port: the test decides every packet it sends (or raw bytes),
 * and reads what the client sent. `serveDescriptors` answers the client's enumeration.
 */
export class FakeUsbredirHost {
  readonly neg: Negotiation;
  readonly received: Packet[] = [];
  socket!: net.Socket;
  closed = false;
  #server: net.Server;
  #taken = 0;
  #waiters: (() => void)[] = [];
  #auto: ((p: Packet) => boolean) | undefined;

  private constructor(server: net.Server, caps: number[]) {
    this.#server = server;
    this.neg = new Negotiation('host', capsFrom(caps));
  }

  /** Listen on a free port; the connection arrives later (see `accepted`). */
  static async listen(
    caps = ALL_HOST_CAPS,
  ): Promise<{ host: FakeUsbredirHost; port: number; accepted: Promise<void> }> {
    let host!: FakeUsbredirHost;
    let accept!: () => void;
    const accepted = new Promise<void>((r) => {
      accept = r;
    });
    const server = net.createServer((socket) => {
      host.#attach(socket);
      accept();
    });
    host = new FakeUsbredirHost(server, caps);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return { host, port: (server.address() as net.AddressInfo).port, accepted };
  }

  #attach(socket: net.Socket): void {
    this.socket = socket;
    const parser = new UsbredirParser(this.neg, (p) => {
      if (this.#auto?.(p)) return;
      this.received.push(p);
      for (const w of this.#waiters.splice(0)) w();
    });
    socket.on('data', (c: Buffer) => {
      try {
        parser.push(c);
      } catch {
        socket.destroy();
      }
    });
    socket.on('close', () => {
      this.closed = true;
      for (const w of this.#waiters.splice(0)) w();
    });
    socket.on('error', () => {});
  }

  send(...packets: Packet[]): void {
    for (const p of packets) this.socket.write(Buffer.concat(encodePacket(p, this.neg)));
  }

  raw(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** The hello always goes with the 12-byte header of a connection whose hellos are not known yet. */
  hello(version = 'fake host'): void {
    const fresh = new Negotiation('host', this.neg.ourCaps);
    this.raw(Buffer.concat(encodePacket({ type: T.Hello, id: 0n, version, caps: [...this.neg.ourCaps] }, fresh)));
  }

  /** interface_info, ep_info, device_connect (high speed). */
  connectDevice(endpoints: FakeEndpoint[] = DEFAULT_ENDPOINTS): void {
    this.send(
      {
        type: T.InterfaceInfo,
        id: 0n,
        interfaces: [{ number: 0, interfaceClass: 0xff, interfaceSubclass: 0, interfaceProtocol: 0 }],
      },
      { type: T.EpInfo, id: 0n, endpoints: epInfo(endpoints) },
      deviceConnectPacket(),
    );
  }

  /** Answer GET_DESCRIPTOR and get_configuration from the client by itself. */
  serveDescriptors(device = FAKE_DEVICE_DESCRIPTOR, config = fakeConfigDescriptor(), configuration = 1): void {
    this.#auto = (p) => {
      if (p.type === T.GetConfiguration) {
        this.send({ type: T.ConfigurationStatus, id: p.id, status: 0, configuration });
        return true;
      }
      if (p.type !== T.ControlPacket || p.request !== 6) return false;
      const type = p.value >> 8;
      const source = type === 1 ? device : type === 2 ? config : Buffer.alloc(0);
      const data = source.subarray(0, p.length);
      this.send({ ...p, status: source.length ? 0 : 4, length: data.length, data });
      return true;
    };
  }

  /** The next packet the client sent that no test took yet, of `type` (others are skipped). */
  async next<K extends Packet['type']>(type: K, timeoutMs = 2000): Promise<PacketOf<K>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (this.#taken < this.received.length) {
        const p = this.received[this.#taken++]!;
        if (p.type === type) return p as PacketOf<K>;
      }
      if (this.closed) throw new Error(`connection closed while waiting for packet type ${type}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no packet of type ${type} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  async close(): Promise<void> {
    this.socket?.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
