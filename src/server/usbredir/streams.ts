import { EndpointKind, PacketType, Status } from '../../protocol/usbredir/constants.js';
import type {
  EpInfoEntry,
  IsoPacket,
  StartBulkReceivingPacket,
  StartIsoStreamPacket,
} from '../../protocol/usbredir/packets.js';
import { statusToRedir } from '../../protocol/usbredir/status.js';
import { TransferStatus } from '../../usb/status.js';
import { Transfer, type IsoPacket as UsbIsoPacket } from '../../usb/transfer.js';
import { hex2 } from '../../util/hex.js';
import { EMPTY } from './format.js';
import type { SessionContext } from './session-context.js';

/** usbredirhost limits. */
export const INTERRUPT_TRANSFER_COUNT = 5;
export const MAX_TRANSFER_COUNT = 16;
export const MAX_PACKETS_PER_TRANSFER = 32;

type StreamKind = 'interrupt' | 'iso' | 'bulk';

interface Stream {
  kind: StreamKind;
  endpoint: number;
  /** bulk receiving only. */
  streamId: number;
  /** Bytes per transfer (interrupt, bulk) or per iso packet. */
  size: number;
  pktsPerUrb: number;
  transferCount: number;
  inFlight: Set<Transfer>;
  stopped: boolean;
  /** Host-side id of the next packet pushed to the guest. */
  nextId: bigint;
  warnedDrop: boolean;
  /** Iso OUT: packets waiting for a transfer, whether the stream is running, packets to drop. */
  outQueue: Buffer[];
  outStarted: boolean;
  dropCount: number;
}

/**
 * Host-driven streams: interrupt receiving, isochronous streams (IN and OUT) and buffered bulk
 * receiving. The host keeps transfers in flight on the device and pushes what completes.
 */
export class EndpointStreams {
  readonly #ctx: SessionContext;
  readonly #streams = new Map<number, Stream>();

  constructor(ctx: SessionContext) {
    this.#ctx = ctx;
  }

  get activeEndpoints(): number[] {
    return [...this.#streams.keys()];
  }

  startInterrupt(id: bigint, endpoint: number): void {
    const ep = this.#ctx.endpoint(endpoint);
    const ok = this.#usable(ep, EndpointKind.Interrupt);
    if (!this.#mayStart(id, 'interrupt', endpoint, ok, 0)) return;
    const s = this.#create('interrupt', endpoint, ep.maxPacketSize, 1, INTERRUPT_TRANSFER_COUNT, 0);
    for (let i = 0; i < s.transferCount; i++) this.#submitIn(s);
    this.#status('interrupt', id, endpoint, Status.Success, 0);
  }

  startBulkReceiving(p: StartBulkReceivingPacket): void {
    const ep = this.#ctx.endpoint(p.endpoint);
    const ok =
      this.#usable(ep, EndpointKind.Bulk) &&
      p.streamId === 0 && // no bulk streams support
      p.bytesPerTransfer > 0 &&
      p.bytesPerTransfer % ep.maxPacketSize === 0 &&
      p.noTransfers >= 1 &&
      p.noTransfers <= MAX_TRANSFER_COUNT;
    if (!this.#mayStart(p.id, 'bulk', p.endpoint, ok, p.streamId)) return;
    const s = this.#create('bulk', p.endpoint, p.bytesPerTransfer, 1, p.noTransfers, p.streamId);
    for (let i = 0; i < s.transferCount; i++) this.#submitIn(s);
    this.#status('bulk', p.id, p.endpoint, Status.Success, p.streamId);
  }

  startIso(p: StartIsoStreamPacket): void {
    const ep = this.#ctx.endpoint(p.endpoint);
    const ok =
      this.#usable(ep, EndpointKind.Iso) &&
      p.pktsPerUrb >= 1 &&
      p.pktsPerUrb <= MAX_PACKETS_PER_TRANSFER &&
      p.noUrbs >= 1 &&
      p.noUrbs <= MAX_TRANSFER_COUNT;
    if (!this.#mayStart(p.id, 'iso', p.endpoint, ok, 0)) return;
    const s = this.#create('iso', p.endpoint, ep.maxPacketSize, p.pktsPerUrb, p.noUrbs, 0);
    if (p.endpoint & 0x80) for (let i = 0; i < s.transferCount; i++) this.#submitIn(s);
    this.#status('iso', p.id, p.endpoint, Status.Success, 0);
  }

  /** The device is attached and `ep` is a usable endpoint of `kind`. */
  #usable(ep: EpInfoEntry, kind: number): boolean {
    return this.#ctx.attached && ep.type === kind && ep.maxPacketSize > 0;
  }

  /** stop_* request: always answered with success, like usbredirhost. */
  stop(kind: StreamKind, id: bigint, endpoint: number, streamId = 0): void {
    this.#end(endpoint);
    this.#status(kind, id, endpoint, Status.Success, streamId);
  }

  /** Stop every stream (on some endpoints only, if given); `notify` tells the guest with stall. */
  stopAll(notify: boolean, endpoints?: ReadonlySet<number>): void {
    for (const s of [...this.#streams.values()]) {
      if (endpoints && !endpoints.has(s.endpoint)) continue;
      this.#end(s.endpoint);
      if (notify) this.#status(s.kind, 0n, s.endpoint, Status.Stall, s.streamId);
    }
  }

  /** An iso_packet from the guest for an OUT stream. */
  isoOut(p: IsoPacket): void {
    const s = this.#streams.get(p.endpoint);
    const ep = this.#ctx.endpoint(p.endpoint);
    let error: number | undefined;
    if (!this.#ctx.attached) error = Status.IoError;
    else if (ep.type !== EndpointKind.Iso || !s || s.kind !== 'iso') error = Status.Inval;
    else if (p.data.length > ep.maxPacketSize) error = Status.Inval;
    if (error !== undefined || !s) {
      this.#ctx.log.debug(`iso packet on ep ${hex2(p.endpoint)} refused`);
      this.#status('iso', p.id, p.endpoint, error ?? Status.Inval, 0);
      return;
    }
    if (s.dropCount > 0) {
      s.dropCount--;
      return;
    }
    const capacity = s.pktsPerUrb * s.transferCount;
    if (s.outQueue.length + s.inFlight.size * s.pktsPerUrb >= capacity) {
      // Overflow: drop enough to get back to the target fill, as usbredirhost does.
      this.#ctx.log.debug(`iso OUT queue overflow on ep ${hex2(p.endpoint)}, dropping`);
      s.dropCount = Math.floor(capacity / 2);
      return;
    }
    s.outQueue.push(p.data);
    this.#pumpIsoOut(s);
  }

  #mayStart(id: bigint, kind: StreamKind, endpoint: number, ok: boolean, streamId: number): boolean {
    if (!ok) {
      this.#ctx.log.warn(`refusing to start ${kind} stream on ep ${hex2(endpoint)}: invalid parameters or endpoint`);
      this.#status(kind, id, endpoint, Status.Stall, streamId);
      return false;
    }
    if (this.#streams.has(endpoint)) {
      this.#ctx.log.warn(`${kind} stream on ep ${hex2(endpoint)} already started`);
      this.#status(kind, id, endpoint, Status.Inval, streamId);
      return false;
    }
    return true;
  }

  #create(kind: StreamKind, endpoint: number, size: number, pkts: number, count: number, streamId: number): Stream {
    const s: Stream = {
      kind,
      endpoint,
      streamId,
      size,
      pktsPerUrb: pkts,
      transferCount: count,
      inFlight: new Set(),
      stopped: false,
      nextId: 0n,
      warnedDrop: false,
      outQueue: [],
      outStarted: false,
      dropCount: 0,
    };
    this.#streams.set(endpoint, s);
    return s;
  }

  #end(endpoint: number): void {
    const s = this.#streams.get(endpoint);
    if (!s) return;
    this.#streams.delete(endpoint);
    s.stopped = true;
    s.outQueue = [];
    for (const t of s.inFlight) this.#ctx.device.cancel(t);
  }

  #submitIn(s: Stream): void {
    let t: Transfer;
    if (s.kind === 'iso') {
      const isoPackets: UsbIsoPacket[] = [];
      for (let i = 0; i < s.pktsPerUrb; i++) {
        isoPackets.push({ offset: i * s.size, length: s.size, actualLength: 0, status: TransferStatus.Ok });
      }
      t = new Transfer({ type: 'isochronous', endpoint: s.endpoint, length: s.size * s.pktsPerUrb, isoPackets });
    } else {
      t = new Transfer({ type: s.kind, endpoint: s.endpoint, length: s.size });
    }
    s.inFlight.add(t);
    void this.#ctx.submit(t).then(() => {
      s.inFlight.delete(t);
      if (!s.stopped) this.#completeIn(s, t);
    });
  }

  #completeIn(s: Stream, t: Transfer): void {
    switch (t.status) {
      case TransferStatus.Ok:
        if (s.kind === 'iso') this.#pushIsoPackets(s, t);
        else this.#pushData(s, Status.Success, t.data.subarray(0, t.actualLength));
        break;
      case TransferStatus.NoDevice:
        // The device's disconnect event detaches it; nothing to resubmit to.
        this.#end(s.endpoint);
        return;
      case TransferStatus.Stall:
      case TransferStatus.Cancelled:
        // Stream stopped for a reason other than a stop request: tell the guest so it can recover.
        this.#ctx.log.debug(`${s.kind} stream on ep ${hex2(s.endpoint)} ended: ${t.status}`);
        this.#end(s.endpoint);
        this.#status(s.kind, s.nextId, s.endpoint, Status.Stall, s.streamId);
        return;
      default:
        this.#ctx.log.debug(`${s.kind} stream on ep ${hex2(s.endpoint)}: transfer error ${t.status}`);
        this.#pushData(s, statusToRedir(t.status), EMPTY);
    }
    // Resubmit on the next turn: a device that completes at once would otherwise keep this loop
    // in microtasks and starve the socket.
    setImmediate(() => {
      if (!s.stopped) this.#submitIn(s);
    });
  }

  #pushIsoPackets(s: Stream, t: Transfer): void {
    for (const pkt of t.isoPackets ?? []) {
      const ok = pkt.status === TransferStatus.Ok;
      const data = ok ? t.data.subarray(pkt.offset, pkt.offset + pkt.actualLength) : EMPTY;
      this.#pushData(s, statusToRedir(pkt.status), data);
    }
  }

  #pushData(s: Stream, status: number, data: Buffer): void {
    const id = s.nextId++;
    if (this.#ctx.congested()) {
      if (!s.warnedDrop) {
        this.#ctx.log.warn(`connection too slow for the ${s.kind} stream on ep ${hex2(s.endpoint)}: dropping packets`);
        s.warnedDrop = true;
      }
      return;
    }
    const length = data.length;
    switch (s.kind) {
      case 'interrupt':
        this.#ctx.send({ type: PacketType.InterruptPacket, id, endpoint: s.endpoint, status, length, data });
        break;
      case 'iso':
        this.#ctx.send({ type: PacketType.IsoPacket, id, endpoint: s.endpoint, status, length, data });
        break;
      case 'bulk':
        this.#ctx.send({
          type: PacketType.BufferedBulkPacket,
          id,
          streamId: s.streamId,
          endpoint: s.endpoint,
          status,
          length,
          data,
        });
        break;
    }
  }

  /** Iso OUT: start once half the buffer is filled, then keep up to transferCount transfers going. */
  #pumpIsoOut(s: Stream): void {
    if (!s.outStarted && s.outQueue.length >= Math.max(1, Math.floor((s.pktsPerUrb * s.transferCount) / 2))) {
      s.outStarted = true;
    }
    while (s.outStarted && s.inFlight.size < s.transferCount && s.outQueue.length >= s.pktsPerUrb) {
      const packets = s.outQueue.splice(0, s.pktsPerUrb);
      const isoPackets: UsbIsoPacket[] = [];
      let offset = 0;
      for (const d of packets) {
        isoPackets.push({ offset, length: d.length, actualLength: 0, status: TransferStatus.Ok });
        offset += d.length;
      }
      const t = new Transfer({
        type: 'isochronous',
        endpoint: s.endpoint,
        data: Buffer.concat(packets, offset),
        isoPackets,
      });
      s.inFlight.add(t);
      void this.#ctx.submit(t).then(() => {
        s.inFlight.delete(t);
        if (s.stopped) return;
        this.#completeIsoOut(s, t);
      });
    }
  }

  #completeIsoOut(s: Stream, t: Transfer): void {
    const failed =
      t.status !== TransferStatus.Ok ? t.status : t.isoPackets?.find((p) => p.status !== TransferStatus.Ok)?.status;
    if (failed === TransferStatus.NoDevice) {
      this.#end(s.endpoint);
      return;
    }
    if (failed === TransferStatus.Stall || failed === TransferStatus.Cancelled) {
      this.#end(s.endpoint);
      this.#status('iso', 0n, s.endpoint, Status.Stall, 0);
      return;
    }
    // OUT errors cannot be reported per packet: one unsolicited stream status per transfer.
    if (failed !== undefined) this.#status('iso', 0n, s.endpoint, statusToRedir(failed), 0);
    if (s.inFlight.size === 0 && s.outQueue.length < s.pktsPerUrb) s.outStarted = false; // underflow: refill first
    this.#pumpIsoOut(s);
  }

  #status(kind: StreamKind, id: bigint, endpoint: number, status: number, streamId: number): void {
    switch (kind) {
      case 'interrupt':
        this.#ctx.send({ type: PacketType.InterruptReceivingStatus, id, endpoint, status });
        break;
      case 'iso':
        this.#ctx.send({ type: PacketType.IsoStreamStatus, id, endpoint, status });
        break;
      case 'bulk':
        this.#ctx.send({ type: PacketType.BulkReceivingStatus, id, streamId, endpoint, status });
        break;
    }
  }
}
