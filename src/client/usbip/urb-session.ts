import { MAX_ISO_PACKETS, UrbFlag, USBIP_DIR_IN, USBIP_DIR_OUT } from '../../protocol/usbip/constants.js';
import { UsbipProtocolError } from '../../protocol/usbip/errors.js';
import type { RequestShape } from '../../protocol/usbip/parser.js';
import { errnoToStatus } from '../../protocol/usbip/status.js';
import { encodeCmdSubmit, encodeCmdUnlink, type RetSubmit, type RetUnlink } from '../../protocol/usbip/urb.js';
import type { PduWriter } from '../../transport/pdu-writer.js';
import { TransferStatus } from '../../usb/status.js';
import type { Transfer } from '../../usb/transfer.js';
import type { Logger } from '../../util/log.js';

/** Transfers sent and not yet answered, at most (the servers' default per-connection cap). */
export const MAX_TRANSFERS_IN_FLIGHT = 4096;
/** Sum of the lengths of those transfers, at most: bounds OUT payloads queued on the socket too. */
export const MAX_BYTES_IN_FLIGHT = 64 * 1024 * 1024;
/**
 * Seqnums completed here before the server's last word on them (RET_UNLINK first, or an unlink
 * that timed out), remembered so a late RET_SUBMIT is read and dropped instead of closing the
 * connection. Oldest forgotten first.
 */
const MAX_RETIRED = 1024;

export interface ClientUrbSessionOptions {
  devid: number;
  writer: PduWriter;
  log: Logger;
  /** Largest transfer length sent (the parser rejects longer replies with the same limit). */
  maxTransferLength: number;
  /** A CMD_UNLINK left unanswered this long completes its transfer here (Cancelled). */
  unlinkTimeoutMs: number;
  /** Every transfer completed by a RET_SUBMIT, before its submitter sees it. */
  onComplete: (t: Transfer) => void;
}

interface Pending {
  seqnum: number;
  transfer: Transfer;
  shape: RequestShape;
  resolve: () => void;
  /** Seqnum of our CMD_UNLINK for it, once cancel was asked. */
  unlinkSeqnum: number | undefined;
}

interface OpenUnlink {
  target: number;
  timer: NodeJS.Timeout;
}

/**
 * The URB phase of an imported device, client side (mirror of the server's urb-session.ts): each
 * transfer is a CMD_SUBMIT with its own seqnum, cancel is a CMD_UNLINK. The peer to match is the
 * kernel's usbip-host stub: an unlinked URB is answered by RET_UNLINK alone (-ECONNRESET, or the
 * URB's own status if it finished while being unlinked), or — when it had already finished — by
 * RET_SUBMIT plus RET_UNLINK(0), in either order (stub_tx sends its unlink queue after its submit
 * queue, so a URB finishing between the two runs goes out after the RET_UNLINK). Whichever reply
 * comes first completes the transfer; a RET_SUBMIT after it is read and dropped.
 */
export class ClientUrbSession {
  readonly #o: ClientUrbSessionOptions;
  readonly #pending = new Map<number, Pending>();
  readonly #byTransfer = new Map<Transfer, Pending>();
  readonly #unlinks = new Map<number, OpenUnlink>();
  readonly #retired = new Map<number, RequestShape | 'unlink'>();
  #bytesInFlight = 0;
  #nextSeqnum = 1;
  #closed = false;
  #unlinkTimeoutLogged = false;

  constructor(options: ClientUrbSessionOptions) {
    this.#o = options;
  }

  get inFlight(): number {
    return this.#pending.size;
  }

  /** For the parser: the shape of the request a RET_SUBMIT answers, undefined for a seqnum never sent. */
  lookup(seqnum: number): RequestShape | undefined {
    const shape = this.#pending.get(seqnum)?.shape ?? this.#retired.get(seqnum);
    return shape === 'unlink' ? undefined : shape;
  }

  /** `interval`: the CMD_SUBMIT interval, when the transfer's own is not what the server needs. */
  submit(t: Transfer, interval = t.interval): Promise<void> {
    if (this.#closed) {
      t.fail(TransferStatus.NoDevice);
      return Promise.resolve();
    }
    const invalid = this.#validate(t);
    if (invalid) {
      this.#o.log.debug(`${t.describe()} rejected: ${invalid}`);
      t.fail(TransferStatus.Invalid);
      return Promise.resolve();
    }
    if (this.#pending.size >= MAX_TRANSFERS_IN_FLIGHT || this.#bytesInFlight + t.length > MAX_BYTES_IN_FLIGHT) {
      this.#o.log.debug(`${t.describe()} refused: ${this.#pending.size} transfers in flight`);
      t.fail(TransferStatus.IoError);
      return Promise.resolve();
    }
    const seqnum = this.#allocSeqnum();
    const iso = t.isoPackets;
    let flags = t.isIn ? UrbFlag.DirIn : 0;
    if (t.flags.shortNotOk) flags |= UrbFlag.ShortNotOk;
    if (t.flags.zeroPacket) flags |= UrbFlag.ZeroPacket;
    if (iso) flags |= UrbFlag.IsoAsap;
    this.#o.writer.write(
      encodeCmdSubmit({
        seqnum,
        devid: this.#o.devid,
        direction: t.isIn ? USBIP_DIR_IN : USBIP_DIR_OUT,
        ep: t.endpointNumber,
        transferFlags: flags,
        transferBufferLength: t.length,
        startFrame: 0,
        numberOfPackets: iso ? iso.length : 0,
        interval,
        setup: t.setup,
        data: t.isIn ? undefined : t.data.subarray(0, t.length),
        isoPackets: iso?.map((p) => ({ offset: p.offset, length: p.length, actualLength: 0, status: 0 })),
      }),
    );
    this.#bytesInFlight += t.length;
    return new Promise((resolve) => {
      const shape = { in: t.isIn, length: t.length, isoPackets: iso ? iso.length : 0 };
      const p: Pending = { seqnum, transfer: t, shape, resolve, unlinkSeqnum: undefined };
      this.#pending.set(seqnum, p);
      this.#byTransfer.set(t, p);
    });
  }

  #validate(t: Transfer): string | undefined {
    if (!Number.isInteger(t.length) || t.length < 0 || t.length > this.#o.maxTransferLength) {
      return `length ${t.length} out of range`;
    }
    if (!t.isIn && t.data.length < t.length) return `OUT data has ${t.data.length} bytes, length is ${t.length}`;
    if (t.type === 'control' && !t.setup) return 'control transfer without setup packet';
    const iso = t.isoPackets;
    if (t.type === 'isochronous') {
      if (!iso || iso.length === 0 || iso.length > MAX_ISO_PACKETS) return `${iso?.length ?? 0} ISO packets`;
      if (iso.some((p) => p.offset < 0 || p.length < 0 || p.offset + p.length > t.length)) {
        return 'ISO packet beyond the buffer';
      }
    } else if (iso) return 'ISO packets on a non-isochronous transfer';
    return undefined;
  }

  cancel(t: Transfer): void {
    const p = this.#byTransfer.get(t);
    if (!p || p.unlinkSeqnum !== undefined || this.#closed) return;
    const unlinkSeqnum = this.#allocSeqnum();
    p.unlinkSeqnum = unlinkSeqnum;
    const timer = setTimeout(() => this.#unlinkTimedOut(unlinkSeqnum), this.#o.unlinkTimeoutMs);
    this.#unlinks.set(unlinkSeqnum, { target: p.seqnum, timer });
    this.#o.writer.write(
      encodeCmdUnlink({ seqnum: unlinkSeqnum, devid: this.#o.devid, direction: 0, ep: 0, unlinkSeqnum: p.seqnum }),
    );
  }

  /** Every outstanding transfer, for reset. */
  cancelAll(): void {
    for (const p of [...this.#pending.values()]) this.cancel(p.transfer);
  }

  /** Throws UsbipProtocolError for a reply that ends the connection. */
  handle(r: RetSubmit | RetUnlink): void {
    if (r.kind === 'ret-submit') this.#onRetSubmit(r);
    else this.#onRetUnlink(r);
  }

  #onRetSubmit(r: RetSubmit): void {
    const p = this.#pending.get(r.seqnum);
    if (!p) {
      // The parser only passes seqnums we know: this one was completed by its RET_UNLINK already.
      this.#retired.delete(r.seqnum);
      this.#o.log.debug(`RET_SUBMIT seqnum ${r.seqnum} after its RET_UNLINK, dropped`);
      return;
    }
    const t = p.transfer;
    t.status = errnoToStatus(r.status);
    t.actualLength = r.actualLength;
    if (t.isoPackets && r.isoPackets) this.#fillIso(t, r);
    else if (t.isIn) t.data = r.data;
    this.#o.onComplete(t);
    this.#finish(p);
  }

  /** Packet statuses and lengths; ISO IN data arrives packed and goes back to each packet's offset. */
  #fillIso(t: Transfer, r: RetSubmit): void {
    const mine = t.isoPackets!;
    const theirs = r.isoPackets!;
    const spread = t.isIn ? Buffer.alloc(t.length) : undefined;
    let packed = 0;
    for (let i = 0; i < mine.length; i++) {
      const m = mine[i]!;
      const actual = theirs[i]!.actualLength;
      if (actual > m.length) {
        throw new UsbipProtocolError(
          'bad-iso-descriptor',
          `RET_SUBMIT seqnum ${r.seqnum}: ISO packet ${i} actual_length ${actual} > requested ${m.length}`,
        );
      }
      m.actualLength = actual;
      m.status = errnoToStatus(theirs[i]!.status);
      if (spread) {
        r.data.copy(spread, m.offset, packed, packed + actual);
        packed += actual;
      }
    }
    if (spread) t.data = spread;
  }

  #onRetUnlink(r: RetUnlink): void {
    const open = this.#unlinks.get(r.seqnum);
    if (!open) {
      if (this.#retired.get(r.seqnum) === 'unlink') {
        this.#retired.delete(r.seqnum);
        return;
      }
      throw new UsbipProtocolError('unknown-seqnum', `RET_UNLINK for unknown seqnum ${r.seqnum}`);
    }
    clearTimeout(open.timer);
    this.#unlinks.delete(r.seqnum);
    const p = this.#pending.get(open.target);
    if (!p) return; // Its RET_SUBMIT came first and completed it.
    // 0: it finished anyway and the server dropped (or has yet to send) the result.
    p.transfer.fail(r.status === 0 ? TransferStatus.Cancelled : errnoToStatus(r.status));
    this.#retire(p.seqnum, p.shape);
    this.#finish(p);
  }

  #unlinkTimedOut(unlinkSeqnum: number): void {
    const open = this.#unlinks.get(unlinkSeqnum);
    if (!open) return;
    this.#unlinks.delete(unlinkSeqnum);
    this.#retire(unlinkSeqnum, 'unlink');
    const p = this.#pending.get(open.target);
    if (!p) return;
    if (!this.#unlinkTimeoutLogged) {
      this.#unlinkTimeoutLogged = true;
      this.#o.log.warn(
        `server left CMD_UNLINK of seqnum ${p.seqnum} unanswered for ${this.#o.unlinkTimeoutMs} ms: cancelled here (logged once)`,
      );
    }
    p.transfer.fail(TransferStatus.Cancelled);
    this.#retire(p.seqnum, p.shape);
    this.#finish(p);
  }

  #retire(seqnum: number, what: RequestShape | 'unlink'): void {
    if (this.#retired.size >= MAX_RETIRED) this.#retired.delete(this.#retired.keys().next().value!);
    this.#retired.set(seqnum, what);
  }

  #finish(p: Pending): void {
    this.#pending.delete(p.seqnum);
    this.#byTransfer.delete(p.transfer);
    this.#bytesInFlight -= p.transfer.length;
    p.resolve();
  }

  /** Connection gone: everything outstanding completes with `status`; later submits fail with NoDevice. */
  close(status: TransferStatus = TransferStatus.NoDevice): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const u of this.#unlinks.values()) clearTimeout(u.timer);
    this.#unlinks.clear();
    this.#retired.clear();
    const pending = [...this.#pending.values()];
    for (const p of pending) {
      p.transfer.fail(status);
      this.#finish(p);
    }
  }

  #allocSeqnum(): number {
    let s = this.#nextSeqnum;
    // Skip 0 and anything still meaningful after a 32-bit wrap.
    while (s === 0 || this.#pending.has(s) || this.#unlinks.has(s) || this.#retired.has(s)) s = (s + 1) >>> 0;
    this.#nextSeqnum = (s + 1) >>> 0;
    return s;
  }
}
