import { Status, PacketType as T } from '../../protocol/usbredir/constants.js';
import type { IsoPacket } from '../../protocol/usbredir/packets.js';
import { isoIntervalMs, type UsbSpeed } from '../../usb/speed.js';
import { TransferStatus } from '../../usb/status.js';
import type { Transfer } from '../../usb/transfer.js';
import { hex2 } from '../../util/hex.js';
import type { DeviceLink, Parked } from './link.js';
import { PacketQueue } from './packet-queue.js';
import { replyStatus } from './standard-requests.js';

/** Buffered stream time QEMU found necessary ("circa 60 ms"). */
export const ISO_TARGET_MS = 60;
/** Hard cap on buffered iso IN packets per endpoint, whatever the interval. */
export const ISO_BUFFER_LIMIT = 4096;

export interface IsoParams {
  periodMs: number;
  /** Packets that make ISO_TARGET_MS. */
  target: number;
  pktsPerUrb: number;
  noUrbs: number;
}

/** start_iso_stream parameters, computed as redirect.c does (about 100 host completions a second). */
export function isoParams(speed: UsbSpeed, bInterval: number, isIn: boolean): IsoParams {
  const periodMs = isoIntervalMs(speed, bInterval);
  const pktsPerSec = 1000 / periodMs;
  const target = Math.max(1, Math.floor((pktsPerSec * ISO_TARGET_MS) / 1000));
  const pktsPerUrb = Math.min(32, Math.max(1, Math.floor(pktsPerSec / 100)));
  // OUT: the host fills half its transfers before starting; the other half is overflow room.
  const urbs = Math.ceil(target / pktsPerUrb) * (isIn ? 1 : 2);
  return { periodMs, target, pktsPerUrb, noUrbs: Math.min(16, Math.max(1, urbs)) };
}

interface Waiting extends Parked {
  deadline: number;
  /** OUT: completes the transfer at stream pace. */
  timer?: NodeJS.Timeout;
}

/**
 * One isochronous endpoint over an iso stream, with QEMU's jitter buffer: IN packets the host
 * pushes are queued and handed out only once ISO_TARGET_MS of them are in (refilled after an
 * underrun); an iso transfer of N packets takes N queued packets, and one whose service time
 * has passed takes what there is (missing packets: length 0). OUT packets go straight to the
 * host, which buffers half its transfers before starting; transfers complete at stream pace.
 */
export class IsoStream {
  readonly endpoint: number;
  readonly #link: DeviceLink;
  readonly #params: IsoParams;
  #started = false;
  /** Status of an unsolicited iso_stream_status, reported with the next transfer. */
  #error = 0;
  #prefilled = false;
  #dropping = false;
  readonly #buffer = new PacketQueue();
  readonly #waiting: Waiting[] = [];
  #timer: NodeJS.Timeout | undefined;
  /** When the host will have played everything sent (OUT) or asked for (IN) so far. */
  #clock = 0;
  readonly #outPending = new Set<Waiting>();
  #longest = 0;

  constructor(link: DeviceLink, endpoint: number, params: IsoParams) {
    this.#link = link;
    this.endpoint = endpoint;
    this.#params = params;
  }

  get isIn(): boolean {
    return (this.endpoint & 0x80) !== 0;
  }

  get buffered(): number {
    return this.#buffer.length;
  }

  /** Transfers submitted and not completed yet. */
  get waiting(): number {
    return this.#waiting.length + this.#outPending.size;
  }

  submit(p: Parked): void {
    if (!this.#started && this.#error === 0) this.#start();
    if (this.isIn) this.#submitIn(p);
    else this.#submitOut(p);
  }

  packet(p: IsoPacket): void {
    if (!this.#started || !this.isIn) {
      this.#link.log.debug(`iso packet on ep ${hex2(p.endpoint)} without a running IN stream, dropped`);
      return;
    }
    const t = this.#params.target;
    const high = Math.min(ISO_BUFFER_LIMIT, 2 * Math.max(t, this.#longestWaiting()));
    if (!this.#dropping && this.#buffer.length >= high) {
      this.#link.log.debug(`iso ep ${hex2(this.endpoint)}: buffer overflow, dropping back to ${t} packets`);
      this.#dropping = true;
    }
    if (this.#dropping) {
      if (this.#buffer.length > t) return;
      this.#dropping = false;
    }
    this.#buffer.push({ status: p.status, data: p.data });
    if (!this.#prefilled && this.#buffer.length >= t) this.#prefilled = true;
    this.#pump();
  }

  status(code: number): void {
    if (!this.#started) return;
    this.#error = code;
    if (code === Status.Stall) {
      this.#link.log.debug(`iso stream on ep ${hex2(this.endpoint)} stopped by the host`);
      this.#started = false;
    }
    if (code !== Status.Success && this.#waiting.length > 0) {
      this.#fill(this.#waiting.shift()!, this.#buffer.length);
      if (!this.#started && this.#waiting.length > 0) this.#start();
      this.#schedule();
    }
  }

  cancel(t: Transfer, status: TransferStatus): boolean {
    for (const list of [this.#waiting, [...this.#outPending]]) {
      const w = list.find((x) => x.transfer === t);
      if (!w) continue;
      this.#drop(w);
      t.fail(status);
      w.resolve();
      this.#schedule();
      return true;
    }
    return false;
  }

  /** Stop the stream (alt setting or configuration change, reset, disconnect). */
  stop(status: TransferStatus, tell: boolean): void {
    if (this.#started && tell) this.#link.send({ type: T.StopIsoStream, id: 0n, endpoint: this.endpoint });
    this.#started = false;
    this.#error = 0;
    this.#prefilled = false;
    this.#dropping = false;
    this.#buffer.clear();
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const w of [...this.#waiting.splice(0), ...this.#outPending]) {
      clearTimeout(w.timer);
      w.transfer.fail(status);
      w.resolve();
    }
    this.#outPending.clear();
  }

  #start(): void {
    const { pktsPerUrb, noUrbs } = this.#params;
    this.#link.send({ type: T.StartIsoStream, id: 0n, endpoint: this.endpoint, pktsPerUrb, noUrbs });
    this.#started = true;
    this.#prefilled = false;
    this.#dropping = false;
    this.#clock = 0;
  }

  #takeError(): TransferStatus {
    const code = this.#error;
    this.#error = 0;
    return code === Status.Success ? TransferStatus.Ok : TransferStatus.IoError;
  }

  #submitIn(p: Parked): void {
    // Transfers queued behind each other are served one after the other, as on a bus.
    this.#clock = Math.max(this.#clock, performance.now()) + p.transfer.isoPackets!.length * this.#params.periodMs;
    this.#waiting.push({ ...p, deadline: this.#clock + ISO_TARGET_MS });
    this.#longest = Math.max(this.#longest, p.transfer.isoPackets!.length);
    this.#pump();
  }

  /** Packets of the longest transfer waiting since the queue was last empty (keeps the buffer cap above it). */
  #longestWaiting(): number {
    if (this.#waiting.length === 0) this.#longest = 0;
    return this.#longest;
  }

  #pump(): void {
    while (this.#waiting.length > 0) {
      const w = this.#waiting[0]!;
      const n = w.transfer.isoPackets!.length;
      if (!this.#prefilled || this.#buffer.length < n) break;
      this.#waiting.shift();
      this.#fill(w, n);
    }
    this.#schedule();
  }

  /** Wake up when the oldest waiting transfer's service time has passed. */
  #schedule(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const first = this.#waiting[0];
    if (!first) return;
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        const w = this.#waiting.shift();
        if (!w) return;
        // Underrun: hand out what there is and fill the buffer up again, as QEMU does.
        this.#prefilled = false;
        this.#fill(w, this.#buffer.length);
        this.#pump();
      },
      Math.max(0, first.deadline - performance.now()),
    );
  }

  /** Complete an IN transfer from up to `available` queued packets; packets without one stay empty. */
  #fill(w: Waiting, available: number): void {
    const t = w.transfer;
    const out = Buffer.alloc(t.length);
    let total = 0;
    const packets = t.isoPackets!;
    for (let i = 0; i < packets.length; i++) {
      const pkt = packets[i]!;
      const r = i < available ? this.#buffer.shift() : undefined;
      if (!r) {
        pkt.actualLength = 0;
        pkt.status = TransferStatus.Ok;
        continue;
      }
      const len = Math.min(r.data.length, pkt.length);
      r.data.copy(out, pkt.offset, 0, len);
      pkt.actualLength = len;
      pkt.status = len < r.data.length ? TransferStatus.Babble : replyStatus(r.status, false);
      total += len;
    }
    t.data = out;
    t.actualLength = total;
    t.status = this.#takeError();
    w.resolve();
  }

  #submitOut(p: Parked): void {
    const t = p.transfer;
    const status = this.#takeError();
    if (this.#started) {
      for (const pkt of t.isoPackets!) {
        const data = t.data.subarray(pkt.offset, pkt.offset + pkt.length);
        this.#link.send({ type: T.IsoPacket, id: 0n, endpoint: this.endpoint, status: 0, length: data.length, data });
      }
    }
    let total = 0;
    for (const pkt of t.isoPackets!) {
      pkt.actualLength = status === TransferStatus.Ok ? pkt.length : 0;
      pkt.status = status;
      total += pkt.actualLength;
    }
    t.actualLength = total;
    t.status = status;
    // Pace completions at the stream rate, ISO_TARGET_MS ahead of what the host has played.
    const now = performance.now();
    this.#clock = Math.max(this.#clock, now) + t.isoPackets!.length * this.#params.periodMs;
    const delay = this.#clock - now - ISO_TARGET_MS;
    if (delay <= 0) {
      p.resolve();
      return;
    }
    const w: Waiting = { ...p, deadline: this.#clock };
    this.#outPending.add(w);
    w.timer = setTimeout(() => {
      this.#outPending.delete(w);
      p.resolve();
    }, delay);
  }

  #drop(w: Waiting): void {
    const i = this.#waiting.indexOf(w);
    if (i >= 0) this.#waiting.splice(i, 1);
    if (this.#outPending.delete(w)) clearTimeout(w.timer);
  }
}
