import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { encodePacket } from '../../protocol/usbredir/codec.js';
import { Cap, PacketType as T } from '../../protocol/usbredir/constants.js';
import { UsbredirProtocolError } from '../../protocol/usbredir/errors.js';
import { capsFrom, Negotiation } from '../../protocol/usbredir/negotiation.js';
import type { Packet } from '../../protocol/usbredir/packets.js';
import { UsbredirParser } from '../../protocol/usbredir/parser.js';
import { PduWriter } from '../../transport/pdu-writer.js';
import type { PeerIdentity } from '../../transport/peer.js';
import type { UsbDevice } from '../../usb/device.js';
import { hasStreams } from '../../usb/streams.js';
import { createLogger, type Logger } from '../../util/log.js';
import { type TransferTrace, traceChunk, tracing } from '../../util/trace.js';
import { usbwireVersion } from '../../util/version.js';
import { type ConnectionLimits, DEFAULT_MAX_TRANSFER_LENGTH, resolveLimits } from '../limits.js';
import { ReadThrottle } from '../read-throttle.js';
import { BulkStreams } from './bulk-streams.js';
import { ConfigurationRequests } from './configuration.js';
import type { HostContext } from './context.js';
import { DataRequests } from './data-requests.js';
import { DeviceLifecycle } from './device-lifecycle.js';
import { dispatchRequest, type RequestHandlers } from './dispatch.js';
import { describePacket } from './format.js';
import { GuestDevice } from './guest-device.js';
import { InFlightTransfers } from './in-flight.js';
import { PendingRequests, packetBytes } from './pending.js';
import { quiesceAndReset } from './quiesce.js';
import type { SessionContext } from './session-context.js';
import { EndpointStreams } from './streams.js';

/** Hello data is the capability words (usbredir has 2); real peers send 4 or 8 bytes. */
const MAX_HELLO_DATA = 1024;

export interface UsbredirHostSessionOptions extends ConnectionLimits {
  /** Largest transfer a guest may ask for, data sent or requested (default 32 MiB). */
  maxTransferLength?: number;
  device: UsbDevice;
  /** Who is on the other end, for logs ("127.0.0.1:41234"). */
  peer: string;
  /** Who the transport proved the guest to be (default: just the address in `peer`). */
  identity?: PeerIdentity;
  /** Hello version string; default "usbwire <package version>". */
  version?: string;
  logger?: Logger;
  /** Advertise bulk_streams; default: whether the device implements streams (UsbDevice.allocStreams). */
  bulkStreams?: boolean;
  /** How long teardown waits for the device to finish cancelled transfers. */
  drainTimeoutMs?: number;
  /** How long to wait for device_disconnect_ack before closing after a disconnect. */
  ackTimeoutMs?: number;
  /**
   * Take the device for this guest, called once its hello is in (so a connection that never
   * says hello holds nothing). False: the device is busy and the connection is closed.
   */
  claim?: () => boolean;
  /**
   * For a device that may come back (a remote one): after it went away (device_disconnect sent),
   * wait for its successor and offer it on this connection with a new device_connect, instead of
   * closing. Resolves undefined when `signal` aborts (the connection closed meanwhile).
   */
  nextDevice?: (previous: UsbDevice, signal: AbortSignal) => Promise<UsbDevice | undefined>;
}

export interface UsbredirHostSessionEvents {
  /** The device is free for others (guest rejected it, or the session ended). Emitted once. */
  release: [];
  /** The connection is closed and the device is quiet. */
  close: [];
}

/**
 * usbredir usb-host side for one connection: exports `device` to a usbredir guest (QEMU's
 * usb-redir, usbredirtestclient). Mirrors usbredirhost: hello first, interface_info + ep_info +
 * device_connect once the guest's hello is in, then requests in arrival order.
 */
export class UsbredirHostSession extends EventEmitter<UsbredirHostSessionEvents> {
  #device: UsbDevice;
  readonly peer: string;
  readonly identity: PeerIdentity;
  readonly log: Logger;
  readonly #socket: Duplex;
  readonly #neg: Negotiation;
  readonly #parser: UsbredirParser;
  readonly #writer: PduWriter;
  readonly #throttle: ReadThrottle;
  readonly #claim: () => boolean;
  readonly #handshakeTimeoutMs: number;
  #handshakeTimer: NodeJS.Timeout | undefined;
  /** The device is ours: the guest said hello and the claim succeeded. */
  #claimed = false;
  #host: HostContext;
  #handlers: RequestHandlers;
  #lifecycle: DeviceLifecycle;
  #data: DataRequests;
  readonly #drainTimeoutMs: number;
  readonly #nextDevice: UsbredirHostSessionOptions['nextDevice'];
  /** Aborts the wait for a device that went away to come back. */
  readonly #stopWaiting = new AbortController();
  readonly #version: string;
  readonly #ackTimeoutMs: number;
  #helloSeen = false;
  #closing = false;
  #closed = false;
  #released = false;
  /** Requests are handled one after the other; data transfers only wait for their submission. */
  #queue: Promise<void> = Promise.resolve();
  readonly #done: Promise<void>;
  #resolveDone!: () => void;

  constructor(socket: Duplex, opts: UsbredirHostSessionOptions) {
    super();
    this.#socket = socket;
    this.#device = opts.device;
    this.peer = opts.peer;
    this.identity = opts.identity ?? { kind: 'address', address: opts.peer, encrypted: false };
    this.log = opts.logger ?? createLogger(`usbredir ${opts.peer}`);
    this.#version = opts.version ?? `usbwire ${usbwireVersion()}`;
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
    if (opts.bulkStreams ?? hasStreams(opts.device)) caps.push(Cap.BulkStreams);
    this.#neg = new Negotiation('host', capsFrom(caps));
    const maxTransfer = opts.maxTransferLength ?? DEFAULT_MAX_TRANSFER_LENGTH;
    this.#parser = new UsbredirParser(
      this.#neg,
      (p) => this.#received(p),
      (p, dataLength) => {
        // Refused at the header, before its data is buffered: one connection, one bounded transfer.
        // A hello carries a few capability words: no need to buffer more before the peer is known.
        if (p.type === T.Hello && dataLength > MAX_HELLO_DATA) {
          throw new UsbredirProtocolError('packet-too-long', `hello with ${dataLength} bytes of data`, p.type);
        }
        const asked = Math.max('length' in p && typeof p.length === 'number' ? p.length : 0, dataLength);
        if (asked > maxTransfer) {
          throw new UsbredirProtocolError(
            'transfer-too-long',
            `transfer of ${asked} bytes > limit ${maxTransfer}`,
            p.type,
          );
        }
      },
    );
    this.#throttle = new ReadThrottle(socket, this.#parser, () => this.#parser.buffered, opts, this.log);
    this.#writer = new PduWriter(socket, (congested) => this.#throttle.writerCongested(congested));
    this.#claim = opts.claim ?? (() => true);
    this.#handshakeTimeoutMs = resolveLimits(opts).handshakeTimeoutMs;
    this.#drainTimeoutMs = opts.drainTimeoutMs ?? 5000;
    this.#nextDevice = opts.nextDevice;
    [this.#host, this.#lifecycle, this.#data, this.#handlers] = this.#bind(opts.device);
    this.#done = new Promise((resolve) => {
      this.#resolveDone = resolve;
    });
  }

  /** The device this connection offers (a remote one is replaced when it comes back). */
  get device(): UsbDevice {
    return this.#device;
  }

  /** Everything that belongs to one device on this connection. */
  #bind(device: UsbDevice): [HostContext, DeviceLifecycle, DataRequests, RequestHandlers] {
    this.#device = device;
    const host = this.#hostContext(this.#drainTimeoutMs);
    const lifecycle = new DeviceLifecycle(host, {
      socket: this.#socket,
      neg: this.#neg,
      ackTimeoutMs: this.#ackTimeoutMs,
      ending: () => this.#closing || this.#closed,
      run: (work) => this.#run(work),
      gone: () => this.#deviceGone(),
      release: () => this.#release(),
    });
    const data = new DataRequests(host);
    const handlers = { host, data, configuration: new ConfigurationRequests(host), lifecycle };
    return [host, lifecycle, data, handlers];
  }

  /** The device went away and the guest was told: close, or wait for it to come back. */
  async #deviceGone(): Promise<void> {
    const previous = this.#device;
    if (!this.#nextDevice || this.#closing || this.#closed) return this.close('device gone');
    await this.#host.transfers.drain();
    this.log.info(`${previous.name} went away; the connection stays open for its return`);
    const next = await this.#nextDevice(previous, this.#stopWaiting.signal);
    if (!next || this.#closing || this.#closed) return;
    const filter = this.#lifecycle.filter;
    this.#lifecycle.unwatchDevice();
    [this.#host, this.#lifecycle, this.#data, this.#handlers] = this.#bind(next);
    this.#lifecycle.filter = filter;
    this.#lifecycle.watchDevice();
    await this.#run(() => this.#lifecycle.attach());
  }

  /** Resolves once the connection is closed and the device quiet (reset, claim releasable). */
  get done(): Promise<void> {
    return this.#done;
  }

  get attached(): boolean {
    return this.#host.guest.attached;
  }

  start(): void {
    const socket = this.#socket as Duplex & { setNoDelay?: (on: boolean) => void };
    socket.setNoDelay?.(true);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (err) => this.log.info(`connection error: ${err.message}`));
    socket.on('close', () => void this.#teardown());
    this.#handshakeTimer = setTimeout(() => {
      this.log.warn(`no hello within ${this.#handshakeTimeoutMs} ms, closing`);
      this.#socket.destroy();
    }, this.#handshakeTimeoutMs);
    this.#send({ type: T.Hello, id: 0n, version: this.#version, caps: [...this.#neg.ourCaps] });
  }

  /** Detach the device from the guest (device_disconnect), then close the connection. */
  async close(reason = 'shutting down'): Promise<void> {
    if (!this.#closing && !this.#closed) {
      this.#closing = true;
      this.log.info(`closing: ${reason}`);
      await this.#run(async () => {
        if (this.#host.guest.attached) await this.#lifecycle.detach(true);
      });
      this.#socket.end();
      // A peer that never closes its side must not keep us waiting forever.
      setTimeout(() => this.#socket.destroy(), this.#ackTimeoutMs).unref();
    }
    await this.#done;
  }

  #hostContext(drainTimeoutMs: number): HostContext {
    const send = (p: Packet, trace?: TransferTrace) => this.#send(p, trace);
    const device = this.#device;
    const guest = new GuestDevice(device, this.log, send);
    const transfers = new InFlightTransfers(device, this.log, drainTimeoutMs);
    const ctx: SessionContext = {
      device,
      log: this.log,
      get attached() {
        return guest.attached;
      },
      send,
      endpoint: (address) => guest.endpoint(address),
      congested: () => this.#writer.congested,
      submit: (t) => transfers.submit(t),
      budget: this.#throttle,
    };
    const host: HostContext = {
      device,
      log: this.log,
      guest,
      pending: new PendingRequests(ctx),
      streams: new EndpointStreams(ctx),
      get bulkStreams() {
        return bulkStreams;
      },
      transfers,
      send,
    };
    const bulkStreams = new BulkStreams(host);
    return host;
  }

  #send(p: Packet, trace?: TransferTrace): void {
    if (this.#closed || this.#socket.destroyed || !this.#socket.writable) return;
    let parts: [Buffer, Buffer];
    try {
      parts = encodePacket(p, this.#neg);
    } catch (err) {
      this.log.error(`not sending ${describePacket(p)}: ${(err as Error).message}`);
      return;
    }
    this.#writer.write(parts[1].length > 0 ? parts : [parts[0]], trace);
  }

  #onData(chunk: Buffer): void {
    if (this.#closed) return;
    if (tracing) traceChunk(this.#parser.buffered === 0);
    try {
      this.#parser.push(chunk);
      this.#throttle.update();
    } catch (err) {
      if (err instanceof UsbredirProtocolError) {
        this.#protocolError(err.message);
        return;
      }
      // A bug of ours closes this connection, not the server with every other guest on it.
      this.log.error(`closing after internal error: ${(err as Error)?.stack ?? String(err)}`);
      this.#socket.destroy();
    }
  }

  #protocolError(message: string): void {
    if (this.#closed || this.#socket.destroyed) return;
    this.log.warn(`protocol error, closing connection: ${message}`);
    this.#socket.destroy();
  }

  #received(p: Packet): void {
    if (this.#socket.destroyed) return;
    if (tracing && p.type === T.BulkPacket) this.#data.trace(p);
    if (p.type === T.Hello) {
      this.#hello(p.version, p.caps);
      return;
    }
    if (!this.#neg.helloReceived) {
      this.#protocolError(`${describePacket(p)} before hello`);
      return;
    }
    // The ack is awaited by a queued step (the detach), so it must not wait in the queue itself.
    if (p.type === T.DeviceDisconnectAck) {
      this.#lifecycle.disconnectAck();
      return;
    }
    // Counted while queued (a step such as set_configuration can wait for the device).
    const bytes = packetBytes(p);
    this.#throttle.acquire(bytes);
    void this.#run(() => this.#dispatch(p)).finally(() => this.#throttle.release(bytes));
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
    clearTimeout(this.#handshakeTimer);
    if (!this.#claim()) {
      this.#socket.destroy();
      return;
    }
    this.#claimed = true;
    this.#lifecycle.watchDevice();
    const hex = (caps[0] ?? 0).toString(16);
    this.log.info(`guest "${version}" caps 0x${hex}, ${this.#neg.layout.headerSize === 16 ? 64 : 32}-bit ids`);
    // Let a filter_filter sent right behind the hello (QEMU does) be seen before connecting.
    setImmediate(() => void this.#run(() => this.#lifecycle.attach()));
  }

  async #dispatch(p: Packet): Promise<void> {
    if (this.#closed) return;
    return dispatchRequest(this.#handlers, p);
  }

  #release(): void {
    if (this.#released) return;
    this.#released = true;
    this.emit('release');
  }

  async #teardown(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stopWaiting.abort();
    this.#throttle.stop();
    clearTimeout(this.#handshakeTimer);
    if (!this.#claimed) {
      // Nothing of the device was touched: no reset, no release of someone else's claim.
      this.log.debug('connection closed before the device was claimed');
      this.emit('close');
      this.#resolveDone();
      return;
    }
    const wasReleased = this.#lifecycle.connectionClosed();
    // Let a queued step that is waiting on the device finish before we reset it.
    this.#host.streams.stopAll(false);
    await this.#host.pending.abandonAll();
    await this.#host.transfers.drain();
    if (!wasReleased) await quiesceAndReset(this.#host);
    this.log.info('connection closed');
    this.#release();
    this.emit('close');
    this.#resolveDone();
  }
}
