import { EventEmitter } from 'node:events';
import { Cap, endpointIndex, PacketType as T } from '../../protocol/usbredir/constants.js';
import type { DeviceConnectPacket, Packet } from '../../protocol/usbredir/packets.js';
import { speedFromRedir } from '../../protocol/usbredir/status.js';
import type { DeviceDescriptors, UsbDevice, UsbDeviceEvents } from '../../usb/device.js';
import {
  ConfigurationTracker,
  DescriptorReadError,
  readConfigurationValue,
  readDescriptors,
} from '../../usb/device-state.js';
import type { SetupPacket } from '../../usb/setup.js';
import type { UsbSpeed } from '../../usb/speed.js';
import { TransferStatus } from '../../usb/status.js';
import { Transfer } from '../../usb/transfer.js';
import { hex2, hex4 } from '../../util/hex.js';
import type { EndpointTable } from './endpoints.js';
import { InterruptReceiver } from './interrupt-in.js';
import { IsoStream, isoParams } from './iso.js';
import type { DeviceLink } from './link.js';
import { PendingRequests } from './requests.js';
import { routeControl } from './standard-requests.js';
import { StreamRequests } from './stream-requests.js';

/** Transfers in flight at once per device; more fail with IoError instead of queueing without bound. */
export const MAX_IN_FLIGHT = 4096;

export interface RemoteUsbredirDeviceOptions {
  /** "usbredir 10.1.2.4:4000", for logs. */
  where: string;
  /** How long the host may take to answer a cancel or a descriptor read. */
  timeoutMs: number;
  /** Close the connection the device lives on. */
  close: () => Promise<void>;
}

/**
 * A device exported by a usbredir host (usbredirect, a SPICE client, usbwire), as a UsbDevice:
 * the usb-guest side of the protocol, as QEMU's hw/usb/redirect.c plays it. Each transfer is a
 * data packet with its own id; standard requests that change state have packets of their own
 * (standard-requests.ts); interrupt IN and iso go through host-driven streams.
 */
/** One interrupt or iso service interval at most: SuperSpeed Plus iso is 3 × 16 × 1024 bytes. */
const MAX_STREAMED_PACKET = 64 * 1024;

export class RemoteUsbredirDevice extends EventEmitter<UsbDeviceEvents> implements UsbDevice {
  readonly #link: DeviceLink;
  readonly #opts: RemoteUsbredirDeviceOptions;
  readonly info: DeviceConnectPacket;
  readonly speed: UsbSpeed;
  readonly #name: string;
  readonly #table: EndpointTable;
  readonly #tracker = new ConfigurationTracker();
  #descriptors: DeviceDescriptors = { device: Buffer.alloc(0), configurations: [] };
  readonly #requests: PendingRequests;
  readonly #interrupts = new Map<number, InterruptReceiver>();
  readonly #isos = new Map<number, IsoStream>();
  readonly #streams: StreamRequests;
  #gone = false;
  #warnedFull = false;

  constructor(link: DeviceLink, connect: DeviceConnectPacket, table: EndpointTable, opts: RemoteUsbredirDeviceOptions) {
    super();
    this.#link = link;
    this.#opts = opts;
    this.info = connect;
    this.#table = table;
    this.speed = speedFromRedir(connect.speed) ?? 'full';
    this.#name = `${opts.where} ${hex4(connect.vendorId)}:${hex4(connect.productId)}`;
    this.#streams = new StreamRequests(link, table, opts.timeoutMs);
    this.#requests = new PendingRequests(link, table, this.#tracker, opts.timeoutMs);
    if (this.streamsSupported) {
      const gone = () => Promise.resolve(TransferStatus.NoDevice);
      this.allocStreams = (endpoints, streams) => (this.#gone ? gone() : this.#streams.alloc(endpoints, streams));
      this.freeStreams = (endpoints) => (this.#gone ? gone() : this.#streams.free(endpoints));
    }
  }

  get name(): string {
    return this.#name;
  }
  get descriptors(): DeviceDescriptors {
    return this.#descriptors;
  }
  get configuration(): number {
    return this.#tracker.configuration;
  }
  get gone(): boolean {
    return this.#gone;
  }
  /** Transfers submitted and not completed yet (sent, or parked on an interrupt / iso stream). */
  get inFlight(): number {
    let n = this.#requests.size;
    for (const s of this.#interrupts.values()) n += s.waiting;
    for (const s of this.#isos.values()) n += s.waiting;
    return n;
  }
  /** Both sides announced bulk_streams. */
  get streamsSupported(): boolean {
    return this.#link.neg.both(Cap.BulkStreams);
  }

  alternateSetting(interfaceNumber: number): number {
    return this.#tracker.alternateSetting(interfaceNumber);
  }

  /** max_streams the host announced for an endpoint (0: none). */
  maxStreams(endpoint: number): number {
    return this.#table.get(endpoint).maxStreams;
  }

  /**
   * alloc_bulk_streams: stream ids 1..streams become usable on these bulk endpoints. Present only
   * when both sides announced bulk_streams (UsbDevice's optional streams methods), so whoever
   * re-exports this device knows whether it carries streams.
   */
  readonly allocStreams?: (endpoints: number[], streams: number) => Promise<number | TransferStatus>;
  /** free_bulk_streams; the host completes the endpoints' pending transfers cancelled. */
  readonly freeStreams?: (endpoints: number[]) => Promise<TransferStatus>;

  /** Read the descriptors and the current configuration over EP0; the device is ready after this. */
  async init(): Promise<void> {
    this.#descriptors = await readDescriptors((s) => this.#controlIn(s));
    const value = await readConfigurationValue((s) => this.#controlIn(s));
    if (value !== undefined) this.#tracker.setConfiguration(value);
  }

  submit(t: Transfer): Promise<void> {
    if (this.#gone) {
      t.fail(TransferStatus.NoDevice);
      return Promise.resolve();
    }
    const invalid = this.#validate(t);
    if (invalid) {
      this.#link.log.debug(`${t.describe()} rejected: ${invalid}`);
      t.fail(TransferStatus.Invalid);
      return Promise.resolve();
    }
    if (this.inFlight >= MAX_IN_FLIGHT) {
      if (!this.#warnedFull) this.#link.log.warn(`${MAX_IN_FLIGHT} transfers in flight: failing more`);
      this.#warnedFull = true;
      t.fail(TransferStatus.IoError);
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      switch (t.type) {
        case 'control':
          return this.#control(t, resolve);
        case 'bulk':
          return this.#requests.start(t, resolve, 'bulk');
        case 'interrupt':
          if (t.isIn) return this.#interrupt(t.endpoint).submit({ transfer: t, resolve });
          return this.#requests.start(t, resolve, 'interrupt');
        case 'isochronous':
          return this.#iso(t.endpoint).submit({ transfer: t, resolve });
      }
    });
  }

  cancel(t: Transfer): void {
    if (this.#gone || this.#requests.cancel(t)) return;
    const parked = t.isIn && t.type === 'interrupt' ? this.#interrupts.get(t.endpoint) : this.#isos.get(t.endpoint);
    parked?.cancel(t, TransferStatus.Cancelled);
  }

  /** Port reset: everything pending is cancelled, streams stop, then the configuration is read again. */
  async reset(): Promise<void> {
    if (this.#gone) return;
    this.#stopStreams(undefined, TransferStatus.Cancelled);
    this.#requests.cancelAll();
    this.#link.send({ type: T.Reset, id: 0n });
    this.#tracker.reset();
    const value = await readConfigurationValue((s) => this.#controlIn(s));
    if (value !== undefined) this.#tracker.setConfiguration(value);
  }

  /** Close the connection: the host releases the device; pending transfers complete with NoDevice. */
  close(): Promise<void> {
    return this.#opts.close();
  }

  /**
   * Most data a packet from the host may carry, checked before it is buffered: a reply at most
   * what its request asked for (undefined: no request has its id), a streamed interrupt or iso
   * packet at most one service interval's worth.
   */
  dataLimit(p: Packet): number | undefined {
    switch (p.type) {
      case T.ControlPacket:
      case T.BulkPacket:
        return this.#requests.replyLimit(p.id);
      case T.InterruptPacket:
        return p.endpoint & 0x80 ? MAX_STREAMED_PACKET : this.#requests.replyLimit(p.id);
      case T.IsoPacket:
        return MAX_STREAMED_PACKET;
      default:
        return Number.POSITIVE_INFINITY;
    }
  }

  /** A packet from the host for this device (the connection handles hello, connect, disconnect). */
  handle(p: Packet): void {
    switch (p.type) {
      case T.InterfaceInfo:
        this.#table.setInterfaces(p.interfaces);
        break;
      case T.EpInfo:
        this.#table.setEndpoints(p.endpoints);
        break;
      case T.ConfigurationStatus:
      case T.AltSettingStatus:
      case T.ControlPacket:
      case T.BulkPacket:
        this.#requests.reply(p);
        break;
      case T.InterruptPacket:
        if (!(p.endpoint & 0x80)) this.#requests.reply(p);
        else if (this.#interrupts.has(p.endpoint)) this.#interrupts.get(p.endpoint)!.packet(p);
        else this.#unexpected(p.endpoint, 'interrupt');
        break;
      case T.IsoPacket:
        if (this.#isos.has(p.endpoint)) this.#isos.get(p.endpoint)!.packet(p);
        else this.#unexpected(p.endpoint, 'iso');
        break;
      case T.InterruptReceivingStatus:
        this.#interrupts.get(p.endpoint)?.status(p.status);
        break;
      case T.IsoStreamStatus:
        this.#isos.get(p.endpoint)?.status(p.status);
        break;
      case T.BulkStreamsStatus:
        this.#streams.status(p);
        break;
      case T.FilterFilter:
        this.#link.log.debug(`host filter: ${p.filter}`);
        break;
      default:
        this.#link.log.debug(`ignored packet type ${p.type} from the host`);
    }
  }

  /** The device went away (device_disconnect, connection closed, protocol error). */
  detach(reason: string): void {
    if (this.#gone) return;
    this.#gone = true;
    this.#stopStreams(undefined, TransferStatus.NoDevice, false);
    this.#requests.abandon(TransferStatus.NoDevice);
    this.#streams.abandon();
    this.#link.log.info(`${this.#name}: disconnected (${reason})`);
    this.emit('disconnect');
  }

  #validate(t: Transfer): string | undefined {
    if (t.length < 0) return `length ${t.length}`;
    if (!t.isIn && t.data.length < t.length) return `OUT data has ${t.data.length} bytes, length is ${t.length}`;
    if (t.type === 'control') {
      if (!t.setup) return 'control transfer without setup packet';
      if (t.endpointNumber !== 0) return 'control transfer on a non-zero endpoint';
      const out = (t.setup.bmRequestType & 0x80) === 0;
      if (out && t.data.length < t.setup.wLength) return `wLength ${t.setup.wLength} but ${t.data.length} data bytes`;
      return undefined;
    }
    const mismatch = this.#table.mismatch(t.endpoint, t.type);
    if (mismatch) return `ep ${hex2(t.endpoint)}: ${mismatch}`;
    if (t.type === 'isochronous') {
      const iso = t.isoPackets;
      if (!iso || iso.length === 0) return 'iso transfer without packets';
      if (iso.some((p) => p.offset < 0 || p.length < 0 || p.offset + p.length > t.length))
        return 'iso packet beyond the buffer';
      if (iso.some((p) => p.length > 0xffff)) return 'iso packet longer than 65535';
    } else if (t.isoPackets) return 'iso packets on a non-iso transfer';
    if (t.type === 'interrupt' && t.length > 0xffff) return `interrupt length ${t.length} > 65535`;
    if (t.streamId !== 0 && !this.streamsSupported) return 'stream id without bulk_streams';
    return undefined;
  }

  #control(t: Transfer, resolve: () => void): void {
    const route = routeControl(t.setup!);
    if (route.kind === 'local') {
      t.status = TransferStatus.Ok;
      t.actualLength = 0;
      resolve();
      return;
    }
    // As redirect.c: nothing may stream on endpoints whose configuration or alt setting changes.
    if (route.kind === 'set-configuration') this.#stopStreams(undefined, TransferStatus.Cancelled);
    if (route.kind === 'set-alt') this.#stopStreams(this.#table.addresses(route.interface), TransferStatus.Cancelled);
    this.#requests.start(t, resolve, route.kind === 'control' ? 'control' : 'state', route);
  }

  #unexpected(endpoint: number, kind: string): void {
    this.#link.log.debug(`${kind} packet for ep ${hex2(endpoint)}, which has no ${kind} stream: dropped`);
  }

  #interrupt(endpoint: number): InterruptReceiver {
    let r = this.#interrupts.get(endpoint);
    if (!r) {
      r = new InterruptReceiver(this.#link, endpoint);
      this.#interrupts.set(endpoint, r);
    }
    return r;
  }

  #iso(endpoint: number): IsoStream {
    let s = this.#isos.get(endpoint);
    if (!s) {
      const params = isoParams(this.speed, this.#table.get(endpoint).interval, (endpoint & 0x80) !== 0);
      s = new IsoStream(this.#link, endpoint, params);
      this.#isos.set(endpoint, s);
    }
    return s;
  }

  /** Stop interrupt receiving and iso streams (on some endpoints, or all). */
  #stopStreams(endpoints: number[] | undefined, status: TransferStatus, tell = true): void {
    const on = endpoints && new Set(endpoints.map(endpointIndex));
    for (const map of [this.#interrupts, this.#isos] as Map<number, InterruptReceiver | IsoStream>[]) {
      for (const [ep, s] of map) {
        if (on && !on.has(endpointIndex(ep))) continue;
        s.stop(status, tell);
        map.delete(ep);
      }
    }
  }

  async #controlIn(setup: SetupPacket): Promise<Buffer> {
    const t = new Transfer({ type: 'control', endpoint: 0x80, setup, length: setup.wLength });
    const timer = setTimeout(() => this.cancel(t), this.#opts.timeoutMs);
    await this.submit(t);
    clearTimeout(timer);
    if (t.status !== TransferStatus.Ok) {
      throw new DescriptorReadError(`request 0x${hex2(setup.bRequest)} wValue 0x${hex4(setup.wValue)}: ${t.status}`);
    }
    return t.data.subarray(0, t.actualLength);
  }
}
