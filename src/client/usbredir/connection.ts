import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { encodePacket } from '../../protocol/usbredir/codec.js';
import { Cap, packetTypeName, PacketType as T } from '../../protocol/usbredir/constants.js';
import { UsbredirProtocolError } from '../../protocol/usbredir/errors.js';
import { capsFrom, Negotiation } from '../../protocol/usbredir/negotiation.js';
import type {
  DeviceConnectPacket,
  EpInfoPacket,
  InterfaceInfoPacket,
  Packet,
} from '../../protocol/usbredir/packets.js';
import { UsbredirParser } from '../../protocol/usbredir/parser.js';
import { PduWriter } from '../../transport/pdu-writer.js';
import type { Logger } from '../../util/log.js';
import { usbwireVersion } from '../../util/version.js';
import { EndpointTable } from './endpoints.js';
import type { DeviceLink } from './link.js';
import { RemoteUsbredirDevice } from './remote-device.js';

/** What QEMU's usb-redir announces, without bulk_receiving (buffered bulk input is not implemented). */
export const GUEST_CAPS: readonly number[] = [
  Cap.ConnectDeviceVersion,
  Cap.Filter,
  Cap.DeviceDisconnectAck,
  Cap.EpInfoMaxPacketSize,
  Cap.Ids64Bits,
  Cap.BulkLength32Bits,
  Cap.BulkStreams,
];

export interface UsbredirClientConnectionOptions {
  /** "usbredir 10.1.2.4:4000": names the devices in logs. */
  where: string;
  logger: Logger;
  /** Hello, descriptor reads and cancels must be answered within this. */
  timeoutMs: number;
  /** Caps we announce (tests); default GUEST_CAPS. */
  caps?: readonly number[];
}

export interface UsbredirClientConnectionEvents {
  /** A device the host connected is ready (descriptors read). */
  device: [RemoteUsbredirDevice];
  close: [];
}

/**
 * One connection to a usbredir host, as the usb-guest: hello both ways, then the devices the
 * host connects one after the other (interface_info + ep_info + device_connect ... device_disconnect),
 * each a new RemoteUsbredirDevice. Any protocol violation closes the connection.
 */
export class UsbredirClientConnection extends EventEmitter<UsbredirClientConnectionEvents> {
  readonly #socket: Duplex;
  readonly #opts: UsbredirClientConnectionOptions;
  readonly #log: Logger;
  readonly #neg: Negotiation;
  readonly #parser: UsbredirParser;
  readonly #writer: PduWriter;
  readonly #link: DeviceLink;
  readonly #closed: Promise<void>;
  #helloTimer: NodeJS.Timeout | undefined;
  #interfaceInfo: InterfaceInfoPacket | undefined;
  #epInfo: EpInfoPacket | undefined;
  #device: RemoteUsbredirDevice | undefined;
  #failed = false;
  #ended = false;
  #devicesReady = 0;

  constructor(socket: Duplex, opts: UsbredirClientConnectionOptions) {
    super();
    this.#socket = socket;
    this.#opts = opts;
    this.#log = opts.logger;
    this.#neg = new Negotiation('guest', capsFrom(opts.caps ?? GUEST_CAPS));
    this.#parser = new UsbredirParser(
      this.#neg,
      (p) => this.#received(p),
      (p, dataLength) => this.#checkData(p, dataLength),
    );
    this.#writer = new PduWriter(socket);
    this.#link = {
      neg: this.#neg,
      log: this.#log,
      send: (p) => this.#send(p),
      fail: (reason) => this.#fail(reason),
    };
    this.#closed = new Promise((resolve) => socket.once('close', () => resolve(this.#teardown())));
  }

  /** Devices that became ready on this connection so far. */
  get devicesReady(): number {
    return this.#devicesReady;
  }

  get device(): RemoteUsbredirDevice | undefined {
    return this.#device;
  }

  /** Resolves once the connection is closed and its device (if any) has disconnected. */
  get closed(): Promise<void> {
    return this.#closed;
  }

  start(): void {
    const socket = this.#socket as Duplex & { setNoDelay?: (on: boolean) => void };
    socket.setNoDelay?.(true);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (err) => this.#log.debug(`connection error: ${err.message}`));
    this.#helloTimer = setTimeout(() => this.#fail(`no hello within ${this.#opts.timeoutMs} ms`), this.#opts.timeoutMs);
    this.#send({ type: T.Hello, id: 0n, version: `usbwire ${usbwireVersion()}`, caps: [...this.#neg.ourCaps] });
  }

  close(): Promise<void> {
    this.#socket.destroy();
    return this.#closed;
  }

  #send(p: Packet): void {
    if (this.#ended || this.#socket.destroyed) return;
    let parts: [Buffer, Buffer];
    try {
      parts = encodePacket(p, this.#neg);
    } catch (err) {
      this.#fail(`cannot send ${packetTypeName(p.type)}: ${(err as Error).message}`);
      return;
    }
    this.#writer.write(parts[1].length > 0 ? parts : [parts[0]]);
  }

  #onData(chunk: Buffer): void {
    if (this.#failed) return;
    try {
      this.#parser.push(chunk);
    } catch (err) {
      if (err instanceof UsbredirProtocolError) this.#fail(`${err.reason}: ${err.message}`);
      else this.#fail(`internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    }
  }

  /** A packet's data length, checked before the parser gathers the data. */
  #checkData(p: Packet, dataLength: number): void {
    if (dataLength === 0 || !this.#device || this.#device.gone) return;
    const limit = this.#device.dataLimit(p);
    const name = packetTypeName(p.type);
    if (limit === undefined) {
      throw new UsbredirProtocolError(
        'unexpected-reply',
        `${name} id ${p.id} with ${dataLength} bytes answers nothing we sent`,
        p.type,
      );
    }
    if (dataLength > limit) {
      throw new UsbredirProtocolError(
        'unexpected-reply',
        `${name} id ${p.id} carries ${dataLength} bytes, at most ${limit} expected`,
        p.type,
      );
    }
  }

  /** The host broke the protocol (or stopped answering): say why once and close. */
  #fail(reason: string): void {
    if (this.#failed || this.#ended) return;
    this.#failed = true;
    this.#log.warn(`closing the connection: ${reason}`);
    this.#socket.destroy();
  }

  #received(p: Packet): void {
    if (this.#failed) return;
    if (p.type === T.Hello) {
      if (this.#helloTimer === undefined) {
        this.#log.warn('second hello from the host ignored');
        return;
      }
      clearTimeout(this.#helloTimer);
      this.#helloTimer = undefined;
      const ids = this.#neg.layout.headerSize === 16 ? 64 : 32;
      this.#log.info(`host "${p.version}" caps 0x${(p.caps[0] ?? 0).toString(16)}, ${ids}-bit ids`);
      return;
    }
    if (!this.#neg.helloReceived) {
      this.#fail(`${packetTypeName(p.type)} before hello`);
      return;
    }
    switch (p.type) {
      case T.DeviceConnect:
        this.#deviceConnect(p);
        return;
      case T.DeviceDisconnect:
        this.#deviceDisconnect();
        return;
      case T.InterfaceInfo:
        this.#interfaceInfo = p;
        break;
      case T.EpInfo:
        this.#epInfo = p;
        break;
    }
    const device = this.#device;
    if (device && !device.gone) device.handle(p);
    else if (p.type !== T.InterfaceInfo && p.type !== T.EpInfo) {
      this.#log.debug(`${packetTypeName(p.type)} id ${p.id} without a device: dropped`);
    }
  }

  #deviceConnect(p: DeviceConnectPacket): void {
    if (this.#device && !this.#device.gone) {
      this.#log.warn('device_connect while a device is connected: ignored');
      return;
    }
    if (!this.#interfaceInfo || !this.#epInfo) {
      this.#fail('device_connect before interface_info and ep_info');
      return;
    }
    const table = new EndpointTable();
    table.setInterfaces(this.#interfaceInfo.interfaces);
    table.setEndpoints(this.#epInfo.endpoints);
    const device = new RemoteUsbredirDevice(this.#link, p, table, {
      where: this.#opts.where,
      timeoutMs: this.#opts.timeoutMs,
      close: () => this.close(),
    });
    this.#device = device;
    void this.#bringUp(device);
  }

  async #bringUp(device: RemoteUsbredirDevice): Promise<void> {
    try {
      await device.init();
    } catch (err) {
      if (!device.gone) this.#fail(`${device.name}: ${(err as Error).message}`);
      return;
    }
    if (device.gone) return;
    this.#devicesReady++;
    this.#log.info(`${device.name}: ready, ${device.speed} speed`);
    try {
      this.emit('device', device);
    } catch (err) {
      this.#log.error(`${device.name}: a device listener failed: ${(err as Error).stack ?? err}`);
    }
  }

  #deviceDisconnect(): void {
    if (this.#neg.peerHas(Cap.DeviceDisconnectAck)) this.#send({ type: T.DeviceDisconnectAck, id: 0n });
    // The next device starts with a clean slate: its own interface and endpoint info.
    this.#interfaceInfo = undefined;
    this.#epInfo = undefined;
    const device = this.#device;
    this.#device = undefined;
    device?.detach('device_disconnect from the host');
  }

  #teardown(): void {
    if (this.#ended) return;
    this.#ended = true;
    clearTimeout(this.#helloTimer);
    this.#device?.detach(this.#failed ? 'protocol error' : 'connection closed');
    this.emit('close');
  }
}
