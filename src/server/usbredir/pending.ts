import { PacketType, Status } from '../../protocol/usbredir/constants.js';
import type { BulkPacket, ControlPacket, InterruptPacket, Packet } from '../../protocol/usbredir/packets.js';
import { statusToRedir } from '../../protocol/usbredir/status.js';
import type { Transfer } from '../../usb/transfer.js';
import { type TransferTrace, traceNow } from '../../util/trace.js';
import { cancelEach } from '../cancel-each.js';
import { EMPTY } from './format.js';
import type { SessionContext } from './session-context.js';

export type RequestPacket = ControlPacket | BulkPacket | InterruptPacket;

/** What a packet weighs in flight: the IN length it asks for, else the data it carries. */
export function packetBytes(p: Packet): number {
  if (!('data' in p)) return 0;
  const isIn = 'endpoint' in p && (p.endpoint & 0x80) !== 0;
  return isIn && 'length' in p ? p.length : p.data.length;
}

interface Pending {
  request: RequestPacket;
  /** Undefined for a request refused without reaching the device. */
  transfer: Transfer | undefined;
  /** Replied to (normally or as cancelled): nothing more may be sent for it. */
  answered: boolean;
  /** Bytes counted in flight: OUT payload or IN length. */
  bytes: number;
  trace: TransferTrace | undefined;
  /** Requests on the same endpoint and stream, oldest first: replies leave in this order. */
  lane: Lane;
  /** Set once the outcome is known; the reply waits for the older requests of its lane. */
  outcome: (() => void) | undefined;
}

/** A FIFO that drops answered (cancelled) entries lazily: every operation is O(1) amortized. */
class Lane {
  #items: Pending[] = [];
  #head = 0;

  constructor(readonly key: number) {}

  get empty(): boolean {
    return this.#head === this.#items.length;
  }

  push(entry: Pending): void {
    this.#items.push(entry);
  }

  /** The oldest entry still to answer, once its outcome is known. */
  nextReady(): Pending | undefined {
    while (this.#head < this.#items.length) {
      const head = this.#items[this.#head]!;
      if (!head.answered && !head.outcome) return undefined;
      this.#head++;
      if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
        this.#items = this.#items.slice(this.#head);
        this.#head = 0;
      }
      if (!head.answered) return head;
    }
    return undefined;
  }
}

/** One lane per endpoint and stream id (stream 0: no streams). */
function laneKey(r: RequestPacket, stream = 'streamId' in r ? r.streamId : 0): number {
  return r.endpoint + stream * 256;
}

/**
 * Guest requests that get exactly one reply each: control, bulk and interrupt OUT packets.
 * A cancel answers at once with status cancelled (as usbredirhost does) and the transfer's later
 * completion is dropped, so the guest sees one reply per id whichever side wins the race.
 * Replies on one endpoint (one stream of it) leave in request order, refusals included: QEMU
 * asserts that a packet completing on an endpoint without streams is the oldest queued there.
 */
export class PendingRequests {
  readonly #ctx: SessionContext;
  /**
   * Several entries per id only if the guest reuses a pending id; cancel takes the oldest. A Set
   * keeps insertion order and forgets in O(1), so even a guest using one id for everything
   * costs linear time.
   */
  readonly #byId = new Map<bigint, Set<Pending>>();
  readonly #lanes = new Map<number, Lane>();
  #warnedReuse = false;

  constructor(ctx: SessionContext) {
    this.#ctx = ctx;
  }

  get size(): number {
    let n = 0;
    for (const list of this.#byId.values()) n += list.size;
    return n;
  }

  /**
   * Submit `transfer` for `request` and reply when it completes. `beforeReply` runs first on
   * completion (to send fresh interface/ep info after a standard SET_CONFIGURATION, say).
   */
  submit(request: RequestPacket, transfer: Transfer, beforeReply?: (t: Transfer) => void, trace?: TransferTrace): void {
    const entry = this.#add(request, transfer, trace);
    if (trace) trace.submit = traceNow();
    void this.#ctx.submit(transfer).then(() => {
      if (trace) trace.done = traceNow();
      if (entry.answered) return;
      this.#settle(entry, () => {
        beforeReply?.(transfer);
        this.#reply(entry, statusToRedir(transfer.status), transfer.actualLength, transfer.data);
      });
    });
  }

  /**
   * Answer `request` with `status` without the device, behind the older requests of its lane
   * (`stream` replaces a stream id that is not in use on the endpoint).
   */
  refuse(request: RequestPacket, status: number, stream?: number): void {
    const entry = this.#add(request, undefined, undefined, stream);
    this.#settle(entry, () => this.#reply(entry, status, 0, EMPTY));
  }

  #add(request: RequestPacket, transfer: Transfer | undefined, trace: TransferTrace | undefined, stream?: number) {
    const key = laneKey(request, stream);
    let lane = this.#lanes.get(key);
    if (!lane) {
      lane = new Lane(key);
      this.#lanes.set(key, lane);
    }
    const bytes = packetBytes(request);
    const entry: Pending = { request, transfer, answered: false, bytes, trace, lane, outcome: undefined };
    lane.push(entry);
    const list = this.#byId.get(request.id);
    if (list) {
      // usbredirhost accepts this too (its cancel then picks the first non-cancelled match).
      if (!this.#warnedReuse) {
        this.#ctx.log.warn(`guest reused id ${request.id} while a packet with that id is pending (not logged again)`);
        this.#warnedReuse = true;
      }
      list.add(entry);
    } else {
      this.#byId.set(request.id, new Set([entry]));
    }
    this.#ctx.budget.acquire(bytes);
    return entry;
  }

  /** The outcome of `entry` is known: send it, and what waited behind it, once it is the oldest. */
  #settle(entry: Pending, send: () => void): void {
    entry.outcome = send;
    this.#drainLane(entry.lane);
  }

  #drainLane(lane: Lane): void {
    for (let head = lane.nextReady(); head; head = lane.nextReady()) {
      head.answered = true;
      this.#forget(head);
      head.outcome!();
    }
    if (lane.empty && this.#lanes.get(lane.key) === lane) this.#lanes.delete(lane.key);
  }

  /** cancel_data_packet: unknown or finished ids are ignored. */
  cancel(id: bigint): void {
    // Answered entries are forgotten at once: the first one is the oldest pending.
    const entry = this.#byId.get(id)?.values().next().value;
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
        if (entry.answered || (endpoints && !endpoints.has(entry.request.endpoint))) continue;
        this.#cancelEntry(entry);
      }
    }
  }

  /** Forget everything without replying (the connection is gone); the device still gets cancels. */
  async abandonAll(): Promise<void> {
    const entries: Pending[] = [];
    for (const list of this.#byId.values()) for (const entry of list) entries.push(entry);
    this.#byId.clear();
    this.#lanes.clear();
    const transfers: Transfer[] = [];
    for (const entry of entries) {
      entry.answered = true;
      this.#ctx.budget.release(entry.bytes);
      if (entry.transfer && !entry.outcome) transfers.push(entry.transfer);
    }
    await cancelEach(transfers, (t) => this.#ctx.device.cancel(t));
  }

  /** Answered cancelled at once (QEMU forgets a packet it cancels); the device finishes it later. */
  #cancelEntry(entry: Pending): void {
    entry.answered = true;
    this.#forget(entry);
    this.#reply(entry, Status.Cancelled, 0, EMPTY);
    if (entry.transfer && !entry.outcome) this.#ctx.device.cancel(entry.transfer);
    this.#drainLane(entry.lane);
  }

  #forget(entry: Pending): void {
    const list = this.#byId.get(entry.request.id);
    if (!list?.delete(entry)) return;
    this.#ctx.budget.release(entry.bytes);
    if (list.size === 0) this.#byId.delete(entry.request.id);
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
