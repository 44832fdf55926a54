import { PacketType as T } from '../../protocol/usbredir/constants.js';
import type {
  AltSettingStatusPacket,
  BulkPacket,
  ConfigurationStatusPacket,
  ControlPacket,
  InterruptPacket,
} from '../../protocol/usbredir/packets.js';
import type { ConfigurationTracker } from '../../usb/device-state.js';
import type { TransferStatus } from '../../usb/status.js';
import type { Transfer } from '../../usb/transfer.js';
import { hex2 } from '../../util/hex.js';
import { BulkJob } from './bulk.js';
import type { EndpointTable } from './endpoints.js';
import type { DeviceLink } from './link.js';
import {
  type ControlRoute,
  completeControl,
  completeStateRequest,
  controlRequestPacket,
  replyStatus,
} from './standard-requests.js';

export type RequestKind = 'control' | 'state' | 'bulk' | 'interrupt';

export type ReplyPacket =
  | ControlPacket
  | BulkPacket
  | InterruptPacket
  | ConfigurationStatusPacket
  | AltSettingStatusPacket;

interface Pending {
  id: bigint;
  kind: RequestKind;
  transfer: Transfer;
  resolve: () => void;
  route?: ControlRoute;
  bulk?: BulkJob;
  cancelAsked: boolean;
  cancelTimer?: NodeJS.Timeout;
}

/**
 * Transfers sent to the host as requests with an id (control, set/get configuration and alt
 * setting, bulk, interrupt OUT), each completed exactly once by the reply with its id. A reply
 * for an id that is not pending, or of the wrong kind, is a protocol violation.
 */
export class PendingRequests {
  readonly #link: DeviceLink;
  readonly #table: EndpointTable;
  readonly #tracker: ConfigurationTracker;
  readonly #timeoutMs: number;
  readonly #byId = new Map<bigint, Pending>();
  readonly #byTransfer = new Map<Transfer, Pending>();
  #nextId = 1n;

  constructor(link: DeviceLink, table: EndpointTable, tracker: ConfigurationTracker, timeoutMs: number) {
    this.#link = link;
    this.#table = table;
    this.#tracker = tracker;
    this.#timeoutMs = timeoutMs;
  }

  get size(): number {
    return this.#byTransfer.size;
  }

  start(t: Transfer, resolve: () => void, kind: RequestKind, route?: ControlRoute): void {
    const p: Pending = { id: this.#allocId(), kind, transfer: t, resolve, cancelAsked: false };
    if (route) p.route = route;
    if (kind === 'bulk') p.bulk = new BulkJob(t, this.#table.get(t.endpoint).maxPacketSize, this.#link.neg);
    this.#byId.set(p.id, p);
    this.#byTransfer.set(t, p);
    this.#send(p);
  }

  /**
   * cancel_data_packet for a pending transfer (false if it is not one of ours). The host answers
   * with the cancelled packet or the real completion; one that does not answer closes the connection.
   */
  cancel(t: Transfer): boolean {
    const p = this.#byTransfer.get(t);
    if (!p) return false;
    if (p.cancelAsked) return true;
    p.cancelAsked = true;
    // State requests (set_configuration...) cannot be cancelled in usbredir: they only get a deadline.
    if (p.kind !== 'state') this.#link.send({ type: T.CancelDataPacket, id: p.id });
    p.cancelTimer = setTimeout(
      () => this.#link.fail(`no reply to cancelled ${t.describe()} (id ${p.id}) within ${this.#timeoutMs} ms`),
      this.#timeoutMs,
    );
    return true;
  }

  cancelAll(): void {
    for (const t of [...this.#byTransfer.keys()]) this.cancel(t);
  }

  /** The device is gone: everything pending ends with `status`. */
  abandon(status: TransferStatus): void {
    const pending = [...this.#byTransfer.values()];
    this.#byId.clear();
    this.#byTransfer.clear();
    for (const p of pending) {
      clearTimeout(p.cancelTimer);
      p.transfer.fail(status);
      p.resolve();
    }
  }

  /** Most data a reply with this id may carry; undefined when no such request is pending. */
  replyLimit(id: bigint): number | undefined {
    const p = this.#byId.get(id);
    if (!p) return undefined;
    if (p.bulk) return p.bulk.replyLimit;
    return p.transfer.isIn ? p.transfer.length : 0;
  }

  reply(r: ReplyPacket): void {
    switch (r.type) {
      case T.ControlPacket:
        this.#controlReply(r);
        break;
      case T.BulkPacket:
        this.#bulkReply(r);
        break;
      case T.InterruptPacket:
        this.#interruptOutReply(r);
        break;
      default:
        this.#stateReply(r);
    }
  }

  #send(p: Pending): void {
    const t = p.transfer;
    if (p.bulk) this.#link.send(p.bulk.nextPacket(p.id));
    else if (p.kind === 'interrupt') {
      const data = t.data.subarray(0, t.length);
      this.#link.send({
        type: T.InterruptPacket,
        id: p.id,
        endpoint: t.endpoint,
        status: 0,
        length: data.length,
        data,
      });
    } else this.#link.send(controlRequestPacket(p.route!, p.id, t)!);
  }

  #allocId(): bigint {
    const max = this.#link.neg.layout.headerSize === 16 ? 0xffffffffffffffffn : 0xffffffffn;
    let id = this.#nextId;
    while (id === 0n || id > max || this.#byId.has(id)) id = id >= max ? 1n : id + 1n;
    this.#nextId = id + 1n;
    return id;
  }

  /** The pending request a reply is for; a reply for an id we never sent (or of the wrong kind) is fatal. */
  #take(id: bigint, kind: RequestKind, what: string): Pending | undefined {
    const p = this.#byId.get(id);
    if (!p || p.kind !== kind) {
      this.#link.fail(`${what} for id ${id}, which is not a pending ${kind} request`);
      return undefined;
    }
    return p;
  }

  #finish(p: Pending): void {
    this.#byId.delete(p.id);
    this.#byTransfer.delete(p.transfer);
    clearTimeout(p.cancelTimer);
    p.resolve();
  }

  #controlReply(r: ControlPacket): void {
    const p = this.#take(r.id, 'control', 'control_packet');
    if (!p) return;
    completeControl(p.transfer, r, replyStatus(r.status, p.cancelAsked));
    this.#finish(p);
  }

  #stateReply(r: ConfigurationStatusPacket | AltSettingStatusPacket): void {
    const what = r.type === T.ConfigurationStatus ? 'configuration_status' : 'alt_setting_status';
    const p = this.#take(r.id, 'state', what);
    if (!p) return;
    const route = p.route!;
    const forConfig = route.kind === 'set-configuration' || route.kind === 'get-configuration';
    if (forConfig !== (r.type === T.ConfigurationStatus)) {
      this.#link.fail(`${what} answers a ${route.kind} request (id ${r.id})`);
      return;
    }
    const value = r.type === T.ConfigurationStatus ? r.configuration : r.alt;
    completeStateRequest(p.transfer, route, replyStatus(r.status, false), value, this.#tracker);
    this.#finish(p);
  }

  #bulkReply(r: BulkPacket): void {
    const p = this.#take(r.id, 'bulk', 'bulk_packet');
    if (!p) return;
    if (r.endpoint !== p.transfer.endpoint) {
      this.#link.fail(`bulk_packet id ${r.id} for ep ${hex2(r.endpoint)}, sent on ep ${hex2(p.transfer.endpoint)}`);
      return;
    }
    const job = p.bulk!;
    if (job.reply(r, replyStatus(r.status, p.cancelAsked), p.cancelAsked)) {
      this.#byId.delete(p.id);
      p.id = this.#allocId();
      this.#byId.set(p.id, p);
      this.#send(p);
      return;
    }
    job.finish();
    this.#finish(p);
  }

  #interruptOutReply(r: InterruptPacket): void {
    const p = this.#take(r.id, 'interrupt', 'interrupt_packet');
    if (!p) return;
    p.transfer.status = replyStatus(r.status, p.cancelAsked);
    p.transfer.actualLength = Math.min(r.length, p.transfer.length);
    this.#finish(p);
  }
}
