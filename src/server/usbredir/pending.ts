import { PacketType, Status } from '../../protocol/usbredir/constants.js';
import type { BulkPacket, ControlPacket, InterruptPacket } from '../../protocol/usbredir/packets.js';
import { statusToRedir } from '../../protocol/usbredir/status.js';
import type { Transfer } from '../../usb/transfer.js';
import { type TransferTrace, traceNow } from '../../util/trace.js';
import type { SessionContext } from './context.js';
import { EMPTY } from './format.js';

export type RequestPacket = ControlPacket | BulkPacket | InterruptPacket;

interface Pending {
  request: RequestPacket;
  transfer: Transfer;
  /** Replied to (normally or as cancelled): nothing more may be sent for it. */
  answered: boolean;
  trace: TransferTrace | undefined;
}

/**
 * Guest requests that get exactly one reply each: control, bulk and interrupt OUT packets.
 * A cancel answers at once with status cancelled (as usbredirhost does) and the transfer's later
 * completion is dropped, so the guest sees one reply per id whichever side wins the race.
 */
export class PendingRequests {
  readonly #ctx: SessionContext;
  /** Several entries per id only if the guest reuses a pending id; cancel takes the oldest. */
  readonly #byId = new Map<bigint, Pending[]>();

  constructor(ctx: SessionContext) {
    this.#ctx = ctx;
  }

  get size(): number {
    let n = 0;
    for (const list of this.#byId.values()) n += list.length;
    return n;
  }

  /**
   * Submit `transfer` for `request` and reply when it completes. `beforeReply` runs first on
   * completion (to send fresh interface/ep info after a standard SET_CONFIGURATION, say).
   */
  submit(request: RequestPacket, transfer: Transfer, beforeReply?: (t: Transfer) => void, trace?: TransferTrace): void {
    const entry: Pending = { request, transfer, answered: false, trace };
    const list = this.#byId.get(request.id);
    if (list) {
      // usbredirhost accepts this too (its cancel then picks the first non-cancelled match).
      this.#ctx.log.warn(`guest reused id ${request.id} while a packet with that id is pending`);
      list.push(entry);
    } else {
      this.#byId.set(request.id, [entry]);
    }
    if (trace) trace.submit = traceNow();
    void this.#ctx.submit(transfer).then(() => {
      if (trace) trace.done = traceNow();
      this.#forget(entry);
      if (entry.answered) return;
      entry.answered = true;
      beforeReply?.(transfer);
      this.#reply(entry, statusToRedir(transfer.status), transfer.actualLength, transfer.data);
    });
  }

  /** cancel_data_packet: unknown or finished ids are ignored. */
  cancel(id: bigint): void {
    const entry = this.#byId.get(id)?.find((e) => !e.answered);
    if (!entry) {
      this.#ctx.log.debug(`cancel for id ${id}: not pending`);
      return;
    }
    this.#cancelEntry(entry);
  }

  /** Cancel everything pending (optionally only on some endpoint addresses), replying cancelled. */
  cancelAll(endpoints?: ReadonlySet<number>): void {
    for (const list of [...this.#byId.values()]) {
      for (const entry of [...list]) {
        if (entry.answered) continue;
        if (endpoints && !endpoints.has(entry.request.endpoint)) continue;
        this.#cancelEntry(entry);
      }
    }
  }

  /** Forget everything without replying (the connection is gone); the device still gets cancels. */
  abandonAll(): void {
    for (const list of this.#byId.values()) {
      for (const entry of list) {
        entry.answered = true;
        this.#ctx.device.cancel(entry.transfer);
      }
    }
    this.#byId.clear();
  }

  #cancelEntry(entry: Pending): void {
    entry.answered = true;
    this.#forget(entry);
    this.#reply(entry, Status.Cancelled, 0, EMPTY);
    this.#ctx.device.cancel(entry.transfer);
  }

  #forget(entry: Pending): void {
    const list = this.#byId.get(entry.request.id);
    if (!list) return;
    const at = list.indexOf(entry);
    if (at >= 0) list.splice(at, 1);
    if (list.length === 0) this.#byId.delete(entry.request.id);
  }

  #reply(entry: Pending, status: number, length: number, data: Buffer): void {
    const r = entry.request;
    const isIn = (r.endpoint & 0x80) !== 0;
    const replyData = isIn && length > 0 ? data.subarray(0, length) : EMPTY;
    const replyLength = isIn ? replyData.length : length;
    switch (r.type) {
      case PacketType.ControlPacket:
        this.#ctx.send({ ...r, status, length: replyLength, data: replyData });
        break;
      case PacketType.BulkPacket:
        this.#ctx.send({ ...r, status, length: replyLength, data: replyData }, entry.trace);
        break;
      case PacketType.InterruptPacket:
        this.#ctx.send({ ...r, status, length: replyLength, data: EMPTY });
        break;
    }
  }
}
