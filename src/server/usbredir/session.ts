import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { encodePacket } from '../../protocol/usbredir/codec.js';
import {
  Cap,
  EndpointKind,
  endpointAddress,
  endpointIndex,
  packetTypeName,
  Status,
  PacketType as T,
} from '../../protocol/usbredir/constants.js';
import { UsbredirProtocolError } from '../../protocol/usbredir/errors.js';
import { checkFilter, FilterParseError, type FilterRule, parseFilter } from '../../protocol/usbredir/filter.js';
import { capsFrom, Negotiation } from '../../protocol/usbredir/negotiation.js';
import type {
  BulkPacket,
  ControlPacket,
  EpInfoEntry,
  InterruptPacket,
  Packet,
  SetAltSettingPacket,
} from '../../protocol/usbredir/packets.js';
import { UsbredirParser } from '../../protocol/usbredir/parser.js';
import { statusToRedir } from '../../protocol/usbredir/status.js';
import type { UsbDevice } from '../../usb/device.js';
import { RequestType, type SetupPacket, StandardRequest } from '../../usb/setup.js';
import { TransferStatus } from '../../usb/status.js';
import { Transfer } from '../../usb/transfer.js';
import { createLogger, type Logger } from '../../util/log.js';
import { type TransferTrace, traceChunk, traceNow, traceRequest, tracing } from '../../util/trace.js';
import type { SessionContext } from './context.js';
import { describeDevice, filterInfo, type RedirDeviceView } from './device-info.js';
import { PendingRequests } from './pending.js';
import { EndpointStreams } from './streams.js';
import { usbwireVersion } from './version.js';

export interface UsbredirHostSessionOptions {
  device: UsbDevice;
  /** Who is on the other end, for logs ("127.0.0.1:41234"). */
  peer: string;
  /** Hello version string; default "usbwire <package version>". */
  version?: string;
  logger?: Logger;
  /** Advertise bulk_streams. Only for devices that implement streams (none do yet). */
  bulkStreams?: boolean;
  /** How long teardown waits for the device to finish cancelled transfers. */
  drainTimeoutMs?: number;
  /** How long to wait for device_disconnect_ack before closing after a disconnect. */
  ackTimeoutMs?: number;
}

export interface UsbredirHostSessionEvents {
  /** The device is free for others (guest rejected it, or the session ended). Emitted once. */
  release: [];
  /** The connection is closed and the device is quiet. */
  close: [];
}

/** Stream data is dropped beyond this much unsent output (usbredirhost: > 800 queued packets). */
const CONGESTION_BYTES = 8 * 1024 * 1024;

type DeviceState = 'pending' | 'attached' | 'detached' | 'released';

/**
 * usbredir usb-host side for one connection: exports `device` to a usbredir guest (QEMU's
 * usb-redir, usbredirtestclient). Mirrors usbredirhost: hello first, interface_info + ep_info +
 * device_connect once the guest's hello is in, then requests in arrival order.
 */
export class UsbredirHostSession extends EventEmitter<UsbredirHostSessionEvents> {
  readonly device: UsbDevice;
  readonly peer: string;
  readonly log: Logger;
  readonly #socket: Duplex;
  readonly #neg: Negotiation;
  readonly #parser: UsbredirParser;
  readonly #pending: PendingRequests;
  readonly #streams: EndpointStreams;
  readonly #inFlight = new Set<Promise<void>>();
  readonly #version: string;
  readonly #drainTimeoutMs: number;
  readonly #ackTimeoutMs: number;
  #view: RedirDeviceView | undefined;
  #deviceState: DeviceState = 'pending';
  #deviceGone = false;
  #closing = false;
  #closed = false;
  #released = false;
  #filter: FilterRule[] | undefined;
  #ackWaiter: (() => void) | undefined;
  /** Requests are handled one after the other; data transfers only wait for their submission. */
  #queue: Promise<void> = Promise.resolve();
  readonly #done: Promise<void>;
  #resolveDone!: () => void;
  readonly #onDeviceDisconnect = () => this.#deviceDisconnected();

  constructor(socket: Duplex, opts: UsbredirHostSessionOptions) {
    super();
    this.#socket = socket;
    this.device = opts.device;
    this.peer = opts.peer;
    this.log = opts.logger ?? createLogger(`usbredir ${opts.peer}`);
    this.#version = opts.version ?? `usbwire ${usbwireVersion()}`;
    this.#drainTimeoutMs = opts.drainTimeoutMs ?? 5000;
    this.#ackTimeoutMs = opts.ackTimeoutMs ?? 1000;
    const caps: number[] = [
      Cap.ConnectDeviceVersion,
      Cap.Filter,
      Cap.DeviceDisconnectAck,
      Cap.EpInfoMaxPacketSize,
      Cap.Ids64Bits,
      Cap.BulkLength32Bits,
      Cap.BulkReceiving,
    ];
    if (opts.bulkStreams) caps.push(Cap.BulkStreams);
    this.#neg = new Negotiation('host', capsFrom(caps));
    this.#parser = new UsbredirParser(this.#neg, (p) => this.#received(p));
    const ctx = this.#context();
    this.#pending = new PendingRequests(ctx);
    this.#streams = new EndpointStreams(ctx);
    this.#done = new Promise((resolve) => {
      this.#resolveDone = resolve;
    });
  }

  /** Resolves once the connection is closed and the device quiet (reset, claim releasable). */
  get done(): Promise<void> {
    return this.#done;
  }

  get attached(): boolean {
    return this.#deviceState === 'attached';
  }

  start(): void {
    const socket = this.#socket as Duplex & { setNoDelay?: (on: boolean) => void };
    socket.setNoDelay?.(true);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (err) => this.log.info(`connection error: ${err.message}`));
    socket.on('close', () => void this.#teardown());
    this.device.on('disconnect', this.#onDeviceDisconnect);
    this.#send({ type: T.Hello, id: 0n, version: this.#version, caps: [...this.#neg.ourCaps] });
  }

  /** Detach the device from the guest (device_disconnect), then close the connection. */
  async close(reason = 'shutting down'): Promise<void> {
    if (!this.#closing && !this.#closed) {
      this.#closing = true;
      this.log.info(`closing: ${reason}`);
      await this.#run(async () => {
        if (this.#deviceState === 'attached') await this.#detach(true);
      });
      this.#socket.end();
      // A peer that never closes its side must not keep us waiting forever.
      setTimeout(() => this.#socket.destroy(), this.#ackTimeoutMs).unref();
    }
    await this.#done;
  }

  #context(): SessionContext {
    const session = this;
    return {
      device: this.device,
      log: this.log,
      get attached() {
        return session.#deviceState === 'attached';
      },
      send: (p, trace) => this.#send(p, trace),
      endpoint: (address) => this.#endpointInfo(address),
      congested: () => this.#socket.writableLength > CONGESTION_BYTES,
      submit: (t) => this.#submit(t),
    };
  }

  #endpointInfo(address: number): EpInfoEntry {
    return this.#view?.endpoints[endpointIndex(address)] ?? NO_ENDPOINT;
  }

  #submit(t: Transfer): Promise<void> {
    const p = this.device.submit(t).catch((err: unknown) => {
      // The contract says submit never rejects; a device that does gets an io error, not a crash.
      this.log.error(`device rejected ${t.describe()}: ${String(err)}`);
      t.fail(TransferStatus.IoError);
    });
    this.#inFlight.add(p);
    void p.then(() => this.#inFlight.delete(p));
    return p;
  }

  #send(p: Packet, trace?: TransferTrace): void {
    if (this.#closed || this.#socket.destroyed || !this.#socket.writable) return;
    let parts: [Buffer, Buffer];
    try {
      parts = encodePacket(p, this.#neg);
    } catch (err) {
      this.log.error(`not sending ${describe(p)}: ${(err as Error).message}`);
      return;
    }
    const [head, data] = parts;
    if (trace) trace.write = trace.flushed = traceNow();
    const written = trace
      ? () => {
          trace.written = traceNow();
        }
      : undefined;
    this.#socket.cork();
    this.#socket.write(head, data.length > 0 ? undefined : written);
    if (data.length > 0) this.#socket.write(data, written);
    this.#socket.uncork();
  }

  #onData(chunk: Buffer): void {
    if (this.#closed) return;
    if (tracing) traceChunk(this.#parser.buffered === 0);
    try {
      this.#parser.push(chunk);
    } catch (err) {
      if (!(err instanceof UsbredirProtocolError)) throw err;
      this.#protocolError(err.message);
    }
  }

  #protocolError(message: string): void {
    if (this.#closed || this.#socket.destroyed) return;
    this.log.warn(`protocol error, closing connection: ${message}`);
    this.#socket.destroy();
  }

  #received(p: Packet): void {
    if (this.#socket.destroyed) return;
    if (tracing && p.type === T.BulkPacket) {
      this.#traces.set(p, traceRequest('usbredir', Number(p.id), p.endpoint, p.length));
    }
    if (p.type === T.Hello) {
      this.#hello(p.version, p.caps);
      return;
    }
    if (!this.#neg.helloReceived) {
      this.#protocolError(`${describe(p)} before hello`);
      return;
    }
    // The ack is awaited by a queued step (the detach), so it must not wait in the queue itself.
    if (p.type === T.DeviceDisconnectAck) {
      this.#disconnectAck();
      return;
    }
    void this.#run(() => this.#dispatch(p));
  }

  /** Queue work behind everything received before it. */
  #run(work: () => Promise<void> | void): Promise<void> {
    const next = this.#queue.then(work).catch((err: unknown) => {
      this.log.error(`internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      this.#socket.destroy();
    });
    this.#queue = next;
    return next;
  }

  #hello(version: string, caps: number[]): void {
    // The parser applied the first hello's caps already; Negotiation ignores later ones.
    if (this.#helloSeen) {
      this.log.warn('second hello from the guest ignored');
      return;
    }
    this.#helloSeen = true;
    const hex = (caps[0] ?? 0).toString(16);
    this.log.info(`guest "${version}" caps 0x${hex}, ${this.#neg.layout.headerSize === 16 ? 64 : 32}-bit ids`);
    // Let a filter_filter sent right behind the hello (QEMU does) be seen before connecting.
    setImmediate(() => void this.#run(() => this.#attach()));
  }
  #helloSeen = false;
  /** USBWIRE_TRACE only: bulk packets received, until submitted. */
  readonly #traces = new WeakMap<Packet, TransferTrace>();

  async #dispatch(p: Packet): Promise<void> {
    if (this.#closed) return;
    switch (p.type) {
      case T.ControlPacket:
        return this.#control(p);
      case T.BulkPacket:
        return this.#bulk(p);
      case T.InterruptPacket:
        return this.#interruptOut(p);
      case T.IsoPacket:
        return this.#streams.isoOut(p);
      case T.CancelDataPacket:
        return this.#pending.cancel(p.id);
      case T.SetConfiguration:
        return this.#setConfiguration(p.id, p.configuration);
      case T.GetConfiguration:
        return this.#getConfiguration(p.id);
      case T.SetAltSetting:
        return this.#setAltSetting(p);
      case T.GetAltSetting:
        return this.#getAltSetting(p.id, p.interface);
      case T.Reset:
        return this.#reset();
      case T.StartInterruptReceiving:
        return this.#streams.startInterrupt(p.id, p.endpoint);
      case T.StopInterruptReceiving:
        return this.#streams.stop('interrupt', p.id, p.endpoint);
      case T.StartIsoStream:
        return this.#streams.startIso(p);
      case T.StopIsoStream:
        return this.#streams.stop('iso', p.id, p.endpoint);
      case T.StartBulkReceiving:
        return this.#streams.startBulkReceiving(p);
      case T.StopBulkReceiving:
        return this.#streams.stop('bulk', p.id, p.endpoint, p.streamId);
      case T.AllocBulkStreams:
        this.log.warn('guest asked for bulk streams: not supported');
        return this.#send({
          type: T.BulkStreamsStatus,
          id: p.id,
          endpoints: p.endpoints,
          noStreams: p.noStreams,
          status: Status.IoError,
        });
      case T.FreeBulkStreams:
        return this.#send({
          type: T.BulkStreamsStatus,
          id: p.id,
          endpoints: p.endpoints,
          noStreams: 0,
          status: Status.IoError,
        });
      case T.FilterFilter:
        return this.#filterFilter(p.filter);
      case T.FilterReject:
        return this.#filterReject();
      default:
        // Everything else is host-to-guest only and stopped by the parser.
        this.log.warn(`unexpected ${describe(p)}`);
    }
  }

  // ---- device attach / detach ----

  #attach(): void {
    if (this.#deviceState !== 'pending' || this.#closing || this.#closed) return;
    let view: RedirDeviceView;
    try {
      view = describeDevice(this.device);
    } catch (err) {
      this.log.error(`cannot describe ${this.device.name}: ${(err as Error).message}`);
      this.#socket.destroy();
      return;
    }
    if (this.#filter) {
      const verdict = checkFilter(this.#filter, filterInfo(view));
      if (!verdict.allowed) {
        this.log.info(
          `${this.device.name} not offered: the guest's filter ${verdict.reason === 'denied' ? 'denies' : 'does not allow'} it`,
        );
        this.#deviceState = 'released';
        this.#release();
        return;
      }
    }
    this.#view = view;
    this.#sendDeviceInfo();
    const d = view.descriptor;
    this.#send({
      type: T.DeviceConnect,
      id: 0n,
      speed: view.speed,
      deviceClass: d.deviceClass,
      deviceSubclass: d.deviceSubClass,
      deviceProtocol: d.deviceProtocol,
      vendorId: d.vendorId,
      productId: d.productId,
      deviceVersionBcd: d.bcdDevice,
    });
    this.#deviceState = 'attached';
    const id = `${hex4(d.vendorId)}:${hex4(d.productId)}`;
    this.log.info(`${this.device.name} (${id}, ${this.device.speed} speed) attached to the guest`);
  }

  #sendDeviceInfo(): void {
    const view = this.#view;
    if (!view) return;
    this.#send({ type: T.InterfaceInfo, id: 0n, interfaces: view.interfaces });
    this.#send({ type: T.EpInfo, id: 0n, endpoints: view.endpoints });
  }

  /** Re-read the configuration after a change; false if the descriptors no longer parse. */
  #refreshView(): boolean {
    try {
      this.#view = describeDevice(this.device);
      return true;
    } catch (err) {
      this.log.error(`cannot describe ${this.device.name}: ${(err as Error).message}`);
      return false;
    }
  }

  /**
   * Take the device away from the guest: streams stopped, pending requests answered cancelled,
   * then (if `announce`) device_disconnect, waiting for the guest's ack when it has the cap.
   */
  async #detach(announce: boolean): Promise<void> {
    this.#streams.stopAll(false);
    this.#pending.cancelAll();
    this.#deviceState = 'detached';
    if (!announce) return;
    this.#send({ type: T.DeviceDisconnect, id: 0n });
    if (this.#neg.peerHas(Cap.DeviceDisconnectAck)) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.log.debug('no device_disconnect_ack in time');
          this.#ackWaiter = undefined;
          resolve();
        }, this.#ackTimeoutMs);
        this.#ackWaiter = () => {
          clearTimeout(timer);
          this.#ackWaiter = undefined;
          resolve();
        };
        this.#socket.once('close', () => this.#ackWaiter?.());
      });
    }
  }

  #deviceDisconnected(): void {
    if (this.#deviceGone) return;
    this.#deviceGone = true;
    this.log.info(`${this.device.name} disconnected`);
    void this.#run(async () => {
      if (this.#deviceState === 'attached') await this.#detach(true);
      this.#deviceState = 'released';
    }).then(() => this.close('device gone'));
  }

  #disconnectAck(): void {
    if (!this.#ackWaiter) {
      this.log.warn('device_disconnect_ack without a device_disconnect');
      return;
    }
    this.#ackWaiter();
  }

  #filterFilter(text: string): void {
    let rules: FilterRule[];
    try {
      rules = parseFilter(text);
    } catch (err) {
      if (!(err instanceof FilterParseError)) throw err;
      this.log.warn(`ignoring the guest's filter "${text}": ${err.message}`);
      return;
    }
    this.#filter = rules;
    this.log.debug(`guest filter: ${text}`);
    if (this.#deviceState === 'attached' && this.#view) {
      const verdict = checkFilter(rules, filterInfo(this.#view));
      if (!verdict.allowed)
        this.log.info('the attached device does not pass the guest filter; the guest will reject it');
    }
  }

  async #filterReject(): Promise<void> {
    if (this.#deviceState !== 'attached') return;
    this.log.info(`the guest rejected ${this.device.name}; releasing it`);
    await this.#detach(false);
    await this.#quiesceAndReset();
    this.#deviceState = 'released';
    this.#release();
  }

  #release(): void {
    if (this.#released) return;
    this.#released = true;
    this.emit('release');
  }

  // ---- configuration, alt settings, reset ----

  async #standardRequest(setup: SetupPacket): Promise<Transfer> {
    const isIn = (setup.bmRequestType & RequestType.DirIn) !== 0;
    const t = new Transfer({ type: 'control', endpoint: isIn ? 0x80 : 0x00, setup, length: setup.wLength });
    await this.#submit(t);
    return t;
  }

  /** Stop streams and cancel requests on some endpoints (all when undefined) and wait for them. */
  async #quiesce(endpoints?: ReadonlySet<number>): Promise<void> {
    this.#streams.stopAll(false, endpoints);
    this.#pending.cancelAll(endpoints);
    await this.#drain();
  }

  async #drain(): Promise<void> {
    if (this.#inFlight.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), this.#drainTimeoutMs);
    });
    const all = Promise.allSettled([...this.#inFlight]).then(() => true);
    const finished = await Promise.race([all, timeout]);
    clearTimeout(timer);
    if (!finished) this.log.warn(`${this.#inFlight.size} transfers still pending after cancel`);
  }

  async #setConfiguration(id: bigint, configuration: number): Promise<void> {
    let status: number = Status.Success;
    if (this.#deviceState !== 'attached') {
      status = Status.IoError;
    } else if (this.device.configuration !== configuration) {
      await this.#quiesce();
      const t = await this.#standardRequest({
        bmRequestType: RequestType.Standard | RequestType.Device,
        bRequest: StandardRequest.SetConfiguration,
        wValue: configuration,
        wIndex: 0,
        wLength: 0,
      });
      status = statusToRedir(t.status);
      if (t.status === TransferStatus.Ok && !this.#refreshView()) status = Status.IoError;
      if (t.status === TransferStatus.Ok) this.#sendDeviceInfo();
    }
    this.#send({ type: T.ConfigurationStatus, id, status, configuration: this.device.configuration });
  }

  async #getConfiguration(id: bigint): Promise<void> {
    if (this.#deviceState !== 'attached') {
      this.#send({ type: T.ConfigurationStatus, id, status: Status.IoError, configuration: this.device.configuration });
      return;
    }
    const t = await this.#standardRequest({
      bmRequestType: RequestType.DirIn | RequestType.Standard | RequestType.Device,
      bRequest: StandardRequest.GetConfiguration,
      wValue: 0,
      wIndex: 0,
      wLength: 1,
    });
    const ok = t.status === TransferStatus.Ok && t.actualLength >= 1;
    this.#send({
      type: T.ConfigurationStatus,
      id,
      status: ok ? Status.Success : statusToRedir(t.status === TransferStatus.Ok ? TransferStatus.IoError : t.status),
      configuration: ok ? t.data[0]! : this.device.configuration,
    });
  }

  #hasInterface(n: number): boolean {
    return this.#view?.configuration?.interfaces.some((i) => i.number === n) ?? false;
  }

  async #setAltSetting(p: SetAltSettingPacket): Promise<void> {
    const reply = (status: number, alt: number) =>
      this.#send({ type: T.AltSettingStatus, id: p.id, status, interface: p.interface, alt });
    if (this.#deviceState !== 'attached') {
      reply(Status.IoError, 0xff);
      return;
    }
    if (!this.#hasInterface(p.interface)) {
      reply(Status.Inval, 0xff);
      return;
    }
    const endpoints = new Set<number>();
    this.#view?.endpoints.forEach((e, i) => {
      if (e.interface === p.interface && e.type !== EndpointKind.Control && e.type !== EndpointKind.Invalid) {
        endpoints.add(endpointAddress(i));
      }
    });
    await this.#quiesce(endpoints);
    const t = await this.#standardRequest({
      bmRequestType: RequestType.Standard | RequestType.Interface,
      bRequest: StandardRequest.SetInterface,
      wValue: p.alt,
      wIndex: p.interface,
      wLength: 0,
    });
    let status = statusToRedir(t.status);
    if (t.status === TransferStatus.Ok) {
      if (!this.#refreshView()) status = Status.IoError;
      this.#sendDeviceInfo();
    }
    reply(status, this.device.alternateSetting(p.interface));
  }

  async #getAltSetting(id: bigint, iface: number): Promise<void> {
    const reply = (status: number, alt: number) =>
      this.#send({ type: T.AltSettingStatus, id, status, interface: iface, alt });
    if (this.#deviceState !== 'attached') {
      reply(Status.IoError, 0xff);
      return;
    }
    if (!this.#hasInterface(iface)) {
      reply(Status.Inval, 0xff);
      return;
    }
    const t = await this.#standardRequest({
      bmRequestType: RequestType.DirIn | RequestType.Standard | RequestType.Interface,
      bRequest: StandardRequest.GetInterface,
      wValue: 0,
      wIndex: iface,
      wLength: 1,
    });
    if (t.status === TransferStatus.Ok && t.actualLength >= 1) reply(Status.Success, t.data[0]!);
    else reply(t.status === TransferStatus.Ok ? Status.IoError : statusToRedir(t.status), 0xff);
  }

  async #reset(): Promise<void> {
    if (this.#deviceState !== 'attached') return;
    // Running streams are reported stalled so the guest restarts them after the reset.
    this.#streams.stopAll(true);
    this.#pending.cancelAll();
    await this.#drain();
    try {
      await this.device.reset();
    } catch (err) {
      this.log.error(`reset of ${this.device.name} failed: ${(err as Error).message}`);
    }
    this.#refreshView();
  }

  // ---- data packets ----

  #refuse(p: ControlPacket | BulkPacket | InterruptPacket, status: number, why?: string): void {
    if (why) this.log.warn(why);
    this.#send({ ...p, status, length: 0, data: EMPTY });
  }

  #control(p: ControlPacket): void {
    if (this.#deviceState !== 'attached') {
      this.#refuse(p, Status.IoError);
      return;
    }
    if (this.#endpointInfo(p.endpoint).type !== EndpointKind.Control) {
      this.#refuse(p, Status.Inval, `control packet on non-control ep ${hex2(p.endpoint)}`);
      return;
    }
    const isIn = (p.endpoint & 0x80) !== 0;
    const setup: SetupPacket = {
      bmRequestType: p.requestType,
      bRequest: p.request,
      wValue: p.value,
      wIndex: p.index,
      wLength: p.length,
    };
    const t = new Transfer({
      type: 'control',
      endpoint: p.endpoint & 0x80,
      setup,
      length: p.length,
      data: isIn ? undefined : p.data,
    });
    const changesLayout =
      (p.requestType === 0x00 && p.request === StandardRequest.SetConfiguration) ||
      (p.requestType === 0x01 && p.request === StandardRequest.SetInterface);
    this.#pending.submit(p, t, (done) => {
      // A guest that sends these raw still needs fresh info before the reply.
      if (changesLayout && done.status === TransferStatus.Ok && this.#refreshView()) this.#sendDeviceInfo();
    });
  }

  #bulk(p: BulkPacket): void {
    if (this.#deviceState !== 'attached') {
      this.#refuse(p, Status.IoError);
      return;
    }
    if (this.#endpointInfo(p.endpoint).type !== EndpointKind.Bulk) {
      this.#refuse(p, Status.Inval, `bulk packet on non-bulk ep ${hex2(p.endpoint)}`);
      return;
    }
    if (p.streamId !== 0) {
      this.#refuse(p, Status.Inval, 'bulk packet with a stream id: streams not supported');
      return;
    }
    const isIn = (p.endpoint & 0x80) !== 0;
    const t = new Transfer({ type: 'bulk', endpoint: p.endpoint, length: p.length, data: isIn ? undefined : p.data });
    this.#pending.submit(p, t, undefined, this.#traces.get(p));
  }

  #interruptOut(p: InterruptPacket): void {
    if (this.#deviceState !== 'attached') {
      this.#refuse(p, Status.IoError);
      return;
    }
    const ep = this.#endpointInfo(p.endpoint);
    if (ep.type !== EndpointKind.Interrupt) {
      this.#refuse(p, Status.Inval, `interrupt packet on non-interrupt ep ${hex2(p.endpoint)}`);
      return;
    }
    if (p.data.length > ep.maxPacketSize) {
      this.#refuse(p, Status.Inval, `interrupt OUT of ${p.data.length} bytes > max packet ${ep.maxPacketSize}`);
      return;
    }
    this.#pending.submit(p, new Transfer({ type: 'interrupt', endpoint: p.endpoint, data: p.data }));
  }

  // ---- teardown ----

  async #quiesceAndReset(): Promise<void> {
    await this.#quiesce();
    if (this.#deviceGone) return;
    try {
      await this.device.reset();
    } catch (err) {
      this.log.error(`reset of ${this.device.name} failed: ${(err as Error).message}`);
    }
  }

  async #teardown(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.device.off('disconnect', this.#onDeviceDisconnect);
    this.#ackWaiter?.();
    const wasReleased = this.#deviceState === 'released';
    this.#deviceState = 'released';
    // Let a queued step that is waiting on the device finish before we reset it.
    this.#streams.stopAll(false);
    this.#pending.abandonAll();
    await this.#drain();
    if (!wasReleased) await this.#quiesceAndReset();
    this.log.info('connection closed');
    this.#release();
    this.emit('close');
    this.#resolveDone();
  }
}

const EMPTY = Buffer.alloc(0);
const NO_ENDPOINT: EpInfoEntry = Object.freeze({
  type: EndpointKind.Invalid,
  interval: 0,
  interface: 0,
  maxPacketSize: 0,
  maxStreams: 0,
});

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0');
}

function hex4(n: number): string {
  return n.toString(16).padStart(4, '0');
}

function describe(p: Packet): string {
  return `${packetTypeName(p.type)} id ${p.id}`;
}
