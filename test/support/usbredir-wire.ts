import net from 'node:net';
import { encodePacket } from '../../src/protocol/usbredir/codec.js';
import { PacketType as T } from '../../src/protocol/usbredir/constants.js';
import { capsFrom, Negotiation } from '../../src/protocol/usbredir/negotiation.js';
import type { Packet } from '../../src/protocol/usbredir/packets.js';
import { UsbredirParser } from '../../src/protocol/usbredir/parser.js';
import { until } from './usbip-wire.js';

/** A usbredir guest on a raw socket that encodes whatever packets a test builds. */
export class UsbredirWire {
  readonly neg = new Negotiation('guest', capsFrom([0, 1, 2, 3, 4, 5, 6, 7]));
  readonly packets: Packet[] = [];
  closed = false;

  private constructor(readonly socket: net.Socket) {
    const parser = new UsbredirParser(this.neg, (p) => this.packets.push(p));
    socket.on('data', (c: Buffer) => parser.push(c));
    socket.on('close', () => {
      this.closed = true;
    });
    socket.on('error', () => {});
  }

  static async connect(port: number): Promise<UsbredirWire> {
    const socket = net.connect({ host: '127.0.0.1', port });
    await new Promise((resolve) => socket.once('connect', resolve));
    return new UsbredirWire(socket);
  }

  /** Hello both ways, then wait for device_connect. */
  async attach(): Promise<void> {
    this.send([{ type: T.Hello, id: 0n, version: 'wire guest', caps: [...this.neg.ourCaps] }]);
    await until(() => this.packets.some((p) => p.type === T.DeviceConnect), 'device_connect');
  }

  send(packets: Packet[]): void {
    this.socket.write(Buffer.concat(packets.flatMap((p) => encodePacket(p, this.neg))));
  }
}

const EMPTY = Buffer.alloc(0);

export function bulkIn(id: bigint, length: number): Packet {
  return { type: T.BulkPacket, id, endpoint: 0x81, status: 0, length, streamId: 0, data: EMPTY };
}
