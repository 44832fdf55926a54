import { Cap, HEADER_SIZE_32, HEADER_SIZE_64 } from './constants.js';

export type Role = 'host' | 'guest';

export function hasCap(caps: readonly number[], cap: number): boolean {
  return (((caps[cap >> 5] ?? 0) >>> (cap & 31)) & 1) === 1;
}

export function capsFrom(list: readonly number[]): number[] {
  const words = [0];
  for (const cap of list) words[cap >> 5] = ((words[cap >> 5] ?? 0) | (1 << (cap & 31))) >>> 0;
  return words;
}

/** bulk_streams without ep_info_max_packet_size is invalid; the C parser drops it. */
function sanitize(caps: readonly number[]): number[] {
  const out = caps.map((w) => w >>> 0);
  if (out.length === 0) out.push(0);
  if (hasCap(out, Cap.BulkStreams) && !hasCap(out, Cap.EpInfoMaxPacketSize)) {
    out[0] = (out[0]! & ~(1 << Cap.BulkStreams)) >>> 0;
  }
  return out;
}

/** Struct sizes that depend on capabilities both sides announced. */
export interface Layout {
  headerSize: 12 | 16;
  deviceConnectSize: 8 | 10;
  epInfoSize: 96 | 160 | 288;
  bulkHeaderSize: 8 | 10;
}

export const LAYOUT_BEFORE_HELLO: Layout = Object.freeze({
  headerSize: HEADER_SIZE_32,
  deviceConnectSize: 8,
  epInfoSize: 96,
  bulkHeaderSize: 8,
});

/**
 * One side's view of a connection: its role, its caps and, once the peer's hello is parsed,
 * the peer's caps. Shared by the parser and the encoder so both switch layouts at the same time.
 */
export class Negotiation {
  readonly role: Role;
  readonly ourCaps: readonly number[];
  #peerCaps: number[] | undefined;
  #layout: Layout = LAYOUT_BEFORE_HELLO;

  constructor(role: Role, ourCaps: readonly number[]) {
    this.role = role;
    this.ourCaps = sanitize(ourCaps);
  }

  get peerCaps(): readonly number[] | undefined {
    return this.#peerCaps;
  }

  get helloReceived(): boolean {
    return this.#peerCaps !== undefined;
  }

  get layout(): Layout {
    return this.#layout;
  }

  /** Record the peer's hello caps. Returns false (and changes nothing) for a second hello. */
  setPeerCaps(caps: readonly number[]): boolean {
    if (this.#peerCaps) return false;
    this.#peerCaps = sanitize(caps);
    const both = (cap: number) => this.weHave(cap) && this.peerHas(cap);
    this.#layout = Object.freeze({
      headerSize: both(Cap.Ids64Bits) ? HEADER_SIZE_64 : HEADER_SIZE_32,
      deviceConnectSize: both(Cap.ConnectDeviceVersion) ? 10 : 8,
      epInfoSize: both(Cap.BulkStreams) ? 288 : both(Cap.EpInfoMaxPacketSize) ? 160 : 96,
      bulkHeaderSize: both(Cap.BulkLength32Bits) ? 10 : 8,
    });
    return true;
  }

  weHave(cap: number): boolean {
    return hasCap(this.ourCaps, cap);
  }

  peerHas(cap: number): boolean {
    return this.#peerCaps !== undefined && hasCap(this.#peerCaps, cap);
  }

  /** Caps that change a struct or enable a packet type in use on this connection. */
  both(cap: number): boolean {
    return this.weHave(cap) && this.peerHas(cap);
  }
}
