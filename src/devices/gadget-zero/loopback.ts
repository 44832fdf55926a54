import type { ControlResult, FunctionHost, InterfaceSpec, UsbFunction } from '../../usb/function.js';
import { bulkMaxPacket, isSuperSpeed, type UsbSpeed } from '../../usb/speed.js';
import { TransferStatus } from '../../usb/status.js';
import type { Transfer } from '../../usb/transfer.js';
import { GZERO_BULK_BUFLEN } from './source-sink.js';

export const LB_BULK_IN = 0x81;
export const LB_BULK_OUT = 0x01;
/** GZERO_QLEN: requests the loopback keeps queued on each endpoint. */
export const GZERO_QLEN = 32;

export interface LoopbackOptions {
  qlen?: number;
  buflen?: number;
}

/** An OUT transfer being read into the loopback's buffers (it may need several). */
interface Reading {
  t: Transfer;
  offset: number;
}

/**
 * g_zero's loopback function (f_loopback.c): what the host writes OUT comes back IN, one
 * buflen-sized request at a time. The device holds at most qlen requests of data: when they
 * are all full it stops reading OUT (the host's OUT transfers wait: NAK), so nothing is lost.
 * An IN transfer returns one request's data (less if the host asked for less; the rest
 * follows in the next IN transfer).
 */
export class LoopbackFunction implements UsbFunction {
  readonly #qlen: number;
  readonly #buflen: number;
  #host!: FunctionHost;
  #filled: Buffer[] = [];
  #reading: Reading | undefined;

  constructor(opts: LoopbackOptions = {}) {
    this.#qlen = Math.max(1, opts.qlen ?? GZERO_QLEN);
    this.#buflen = Math.max(1, opts.buflen ?? GZERO_BULK_BUFLEN);
  }

  interfaces(speed: UsbSpeed): InterfaceSpec[] {
    const superSpeed = isSuperSpeed(speed);
    const mps = bulkMaxPacket(speed);
    const companion = superSpeed ? { companion: { maxBurst: 0, attributes: 0 } } : {};
    const source = { address: LB_BULK_IN, type: 'bulk' as const, maxPacketSize: mps, interval: 0, ...companion };
    const sink = { address: LB_BULK_OUT, type: 'bulk' as const, maxPacketSize: mps, interval: 0, ...companion };
    const endpoints = speed === 'full' || speed === 'low' ? [sink, source] : [source, sink];
    return [
      {
        number: 0,
        alternates: [
          {
            alternate: 0,
            interfaceClass: 0xff,
            interfaceSubClass: 0,
            interfaceProtocol: 0,
            name: 'loop input to output',
            endpoints,
          },
        ],
      },
    ];
  }

  bind(host: FunctionHost): void {
    this.#host = host;
  }

  control(): ControlResult | undefined {
    return undefined;
  }

  transferWaiting(address: number): void {
    if (address === LB_BULK_OUT || address === LB_BULK_IN) this.#pump();
  }

  setConfigured(): void {
    this.#drop();
  }

  setAlternate(): void {
    this.#drop();
  }

  reset(): void {
    this.#drop();
  }

  async close(): Promise<void> {
    this.#drop();
  }

  /** Bytes held, waiting to go back IN. */
  get buffered(): number {
    return this.#filled.reduce((n, b) => n + b.length, 0);
  }

  #drop(): void {
    this.#filled = [];
    this.#reading = undefined;
  }

  /** Move data until neither side can progress: OUT into free requests, full requests back IN. */
  #pump(): void {
    for (let moved = true; moved; ) moved = this.#readOut() + this.#writeIn() > 0;
  }

  /** Fill free requests from OUT transfers; each transfer completes once all its data is in. */
  #readOut(): number {
    let moved = 0;
    while (this.#filled.length < this.#qlen) {
      if (this.#reading && this.#reading.t.status !== TransferStatus.Ok) this.#reading = undefined; // cancelled
      if (!this.#reading) {
        const t = this.#host.take(LB_BULK_OUT);
        if (!t) break;
        this.#reading = { t, offset: 0 };
      }
      const r = this.#reading;
      const length = Math.min(r.t.length, r.t.data.length);
      const n = Math.min(this.#buflen, length - r.offset);
      this.#filled.push(Buffer.from(r.t.data.subarray(r.offset, r.offset + n)));
      r.offset += n;
      moved++;
      if (r.offset >= length) {
        r.t.status = TransferStatus.Ok;
        r.t.actualLength = length;
        this.#reading = undefined;
        this.#host.complete(r.t);
      }
    }
    return moved;
  }

  /** Send full requests back IN, oldest first. */
  #writeIn(): number {
    let moved = 0;
    while (this.#filled.length > 0) {
      const t = this.#host.take(LB_BULK_IN);
      if (!t) break;
      const chunk = this.#filled[0]!;
      if (chunk.length > t.length) {
        this.#filled[0] = chunk.subarray(t.length);
        t.completeIn(chunk.subarray(0, t.length));
      } else {
        this.#filled.shift();
        t.completeIn(chunk);
      }
      this.#host.complete(t);
      moved++;
    }
    return moved;
  }
}
