import {
  EndpointKind,
  endpointAddress,
  MAX_ENDPOINTS,
  Status,
  PacketType as T,
} from '../../protocol/usbredir/constants.js';
import type {
  AllocBulkStreamsPacket,
  BulkPacket,
  FreeBulkStreamsPacket,
  Packet,
} from '../../protocol/usbredir/packets.js';
import { statusToRedir } from '../../protocol/usbredir/status.js';
import type { UsbDevice } from '../../usb/device.js';
import { TransferStatus } from '../../usb/status.js';
import { hasStreams } from '../../usb/streams.js';
import { hex2 } from '../../util/hex.js';
import type { Logger } from '../../util/log.js';
import type { GuestDevice } from './guest-device.js';
import type { PendingRequests } from './pending.js';
import type { EndpointStreams } from './streams.js';

/** What BulkStreams needs from its session (the HostContext, which holds it). */
export interface BulkStreamsHost {
  readonly device: UsbDevice;
  readonly log: Logger;
  readonly guest: GuestDevice;
  readonly pending: PendingRequests;
  readonly streams: EndpointStreams;
  send(packet: Packet): void;
}

/**
 * alloc_bulk_streams / free_bulk_streams (each answered by one bulk_streams_status, as
 * usbredirhost does) and the stream ids bulk packets may use. QEMU rejects the device on any
 * failed status, so a request is checked against ep_info first and only a full grant succeeds.
 */
export class BulkStreams {
  readonly #host: BulkStreamsHost;
  /** Streams allocated, by endpoint address. */
  readonly #allocated = new Map<number, number>();

  constructor(host: BulkStreamsHost) {
    this.#host = host;
  }

  async alloc(p: AllocBulkStreamsPacket): Promise<void> {
    const reply = (status: number) =>
      this.#host.send({ type: T.BulkStreamsStatus, id: p.id, endpoints: p.endpoints, noStreams: p.noStreams, status });
    const { device, log } = this.#host;
    const endpoints = addressesOf(p.endpoints);
    const refused = this.#refusal(endpoints, p.noStreams);
    if (refused || !hasStreams(device)) {
      log.warn(`alloc_bulk_streams ${p.noStreams} on ${describe(endpoints)} refused: ${refused?.[1]}`);
      return reply(refused?.[0] ?? Status.IoError);
    }
    // The kernel refuses a second allocation: the guest's view (no streams there) wins.
    const stale = endpoints.filter((ep) => this.#allocated.has(ep));
    if (stale.length > 0) await this.#release(stale);
    const granted = await device.allocStreams(endpoints, p.noStreams);
    if (typeof granted !== 'number') {
      log.warn(`alloc of ${p.noStreams} bulk streams on ${describe(endpoints)} failed: ${granted}`);
      return reply(statusToRedir(granted));
    }
    if (granted < p.noStreams) {
      // The protocol has no partial grant: give back what we got, the guest sees a failure.
      log.warn(`asked ${p.noStreams} bulk streams on ${describe(endpoints)}, the device granted ${granted}`);
      await device.freeStreams(endpoints);
      return reply(Status.IoError);
    }
    for (const ep of endpoints) this.#allocated.set(ep, p.noStreams);
    log.info(`${p.noStreams} bulk streams on ${describe(endpoints)}`);
    reply(Status.Success);
  }

  /**
   * Endpoints without streams (never allocated, or dropped by a reset) are freed already: that
   * is a success, since QEMU rejects the device on any failed status.
   */
  async free(p: FreeBulkStreamsPacket): Promise<void> {
    const reply = (status: number) =>
      this.#host.send({ type: T.BulkStreamsStatus, id: p.id, endpoints: p.endpoints, noStreams: 0, status });
    const endpoints = addressesOf(p.endpoints);
    const refused = this.#refusal(endpoints, undefined);
    if (refused) {
      this.#host.log.warn(`free_bulk_streams on ${describe(endpoints)} refused: ${refused[1]}`);
      return reply(refused[0]);
    }
    const allocated = endpoints.filter((ep) => this.#allocated.has(ep));
    reply(statusToRedir(await this.#release(allocated)));
  }

  /** Cancel what is pending on the endpoints (answered cancelled), then free their streams. */
  async #release(endpoints: number[]): Promise<TransferStatus> {
    const { device, log, streams, pending } = this.#host;
    if (endpoints.length === 0 || !hasStreams(device)) return TransferStatus.Ok;
    const set = new Set(endpoints);
    streams.stopAll(false, set);
    pending.cancelAll(set);
    for (const ep of endpoints) this.#allocated.delete(ep);
    const status = await device.freeStreams(endpoints);
    if (status !== TransferStatus.Ok) log.warn(`free of bulk streams on ${describe(endpoints)}: ${status}`);
    else log.info(`bulk streams on ${describe(endpoints)} freed`);
    return status;
  }

  /** The endpoint has streams allocated. */
  has(endpoint: number): boolean {
    return this.#allocated.has(endpoint);
  }

  /** Why a bulk packet's stream id cannot be used (undefined: it can). */
  check(p: BulkPacket): string | undefined {
    const n = this.#allocated.get(p.endpoint) ?? 0;
    if (p.streamId === 0) return n > 0 ? `ep ${hex2(p.endpoint)} has streams: stream id 0` : undefined;
    if (n === 0) return `stream id ${p.streamId} on ep ${hex2(p.endpoint)}, which has no streams allocated`;
    return p.streamId > n ? `stream id ${p.streamId} on ep ${hex2(p.endpoint)}, which has ${n} streams` : undefined;
  }

  /** The device dropped its streams (reset, SET_CONFIGURATION, SET_INTERFACE): on these endpoints, or all. */
  forget(endpoints?: Iterable<number>): void {
    if (!endpoints) this.#allocated.clear();
    else for (const ep of endpoints) this.#allocated.delete(ep);
  }

  /** [status, reason] when the request cannot go to the device; `streams` undefined for a free. */
  #refusal(endpoints: number[], streams: number | undefined): [number, string] | undefined {
    const { guest, device } = this.#host;
    if (!guest.attached) return [Status.IoError, 'no device attached'];
    if (!hasStreams(device)) return [Status.IoError, `${device.name} does not do bulk streams`];
    if (endpoints.length === 0) return [Status.Inval, 'no endpoints'];
    if (streams !== undefined && streams < 1) return [Status.Inval, `${streams} streams`];
    for (const ep of endpoints) {
      const info = guest.endpoint(ep);
      if (info.type !== EndpointKind.Bulk) return [Status.Inval, `ep ${hex2(ep)} is not a bulk endpoint`];
      if (info.maxStreams === 0)
        return [Status.Inval, `ep ${hex2(ep)} has no streams (not a SuperSpeed bulk endpoint)`];
      if (streams !== undefined && streams > info.maxStreams) {
        return [Status.Inval, `ep ${hex2(ep)} has at most ${info.maxStreams} streams`];
      }
    }
    return undefined;
  }
}

function addressesOf(mask: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < MAX_ENDPOINTS; i++) if (mask & (1 << i)) out.push(endpointAddress(i));
  return out;
}

function describe(endpoints: number[]): string {
  return endpoints.length === 0 ? 'no endpoints' : `ep ${endpoints.map(hex2).join(',')}`;
}
