import { attachData, decodeTypeHeader } from './codec.js';
import { HEADER_SIZE_64, MAX_PACKET_SIZE, packetTypeName, PacketType as T } from './constants.js';
import { UsbredirProtocolError } from './errors.js';
import type { Negotiation } from './negotiation.js';
import type { Packet } from './packets.js';
import { checkTypeAndDirection, mayCarryData, typeHeaderSize, verifyTypeHeader } from './rules.js';

interface InProgress {
  type: number;
  id: bigint;
  typeHeaderSize: number;
  dataLength: number;
  /** Set once the type header is decoded and verified. */
  packet?: Packet;
}

/**
 * Streaming usbredir parser for one side (`neg.role`) of a connection. Received chunks are kept
 * as they are; a packet's data is a view into its chunk, copied only when it straddles chunks.
 * Every check that usbredirparser.c makes happens as soon as the bytes it needs are in, and
 * always before the data is gathered, so a bad header never causes a large allocation.
 *
 * After a UsbredirProtocolError the stream cannot be resynchronised reliably: the parser stays
 * failed and rethrows the error on every later push.
 */
export class UsbredirParser {
  readonly #neg: Negotiation;
  readonly #onPacket: (p: Packet) => void;
  readonly #chunks: Buffer[] = [];
  /** Read position in #chunks[0]. */
  #offset = 0;
  #available = 0;
  #current: InProgress | undefined;
  #failed: UsbredirProtocolError | undefined;
  readonly #scratch = Buffer.alloc(HEADER_SIZE_64);

  constructor(neg: Negotiation, onPacket: (p: Packet) => void) {
    this.#neg = neg;
    this.#onPacket = onPacket;
  }

  /** Bytes received but not yet consumed by a complete packet. */
  get buffered(): number {
    return this.#available;
  }

  push(chunk: Buffer): void {
    if (this.#failed) throw this.#failed;
    if (chunk.length > 0) {
      this.#chunks.push(chunk);
      this.#available += chunk.length;
    }
    try {
      while (this.#step()) {}
    } catch (err) {
      if (err instanceof UsbredirProtocolError) this.#failed = err;
      throw err;
    }
  }

  /** Parse as far as possible; false when more bytes are needed. */
  #step(): boolean {
    const neg = this.#neg;
    if (!this.#current) {
      const headerSize = neg.layout.headerSize;
      if (this.#available < headerSize) return false;
      const h = this.#take(headerSize, this.#scratch);
      const type = h.readUInt32LE(0);
      const length = h.readUInt32LE(4);
      const id = headerSize === 16 ? h.readBigUInt64LE(8) : BigInt(h.readUInt32LE(8));
      this.#current = this.#checkHeader(type, length, id);
    }
    const cur = this.#current;
    if (!cur.packet) {
      if (this.#available < cur.typeHeaderSize) return false;
      const th = this.#take(cur.typeHeaderSize);
      const packet = decodeTypeHeader(cur.type, cur.id, th, neg.layout);
      verifyTypeHeader(packet, cur.dataLength, neg, false);
      cur.packet = packet;
    }
    if (this.#available < cur.dataLength) return false;
    const packet = cur.packet;
    if (cur.dataLength > 0) attachData(packet, this.#take(cur.dataLength));
    this.#current = undefined;
    // The header size changes right after the first hello, before the next packet is read.
    if (packet.type === T.Hello) neg.setPeerCaps(packet.caps);
    this.#onPacket(packet);
    return true;
  }

  #checkHeader(type: number, length: number, id: bigint): InProgress {
    checkTypeAndDirection(type, this.#neg, false);
    const name = packetTypeName(type);
    if (length > MAX_PACKET_SIZE) {
      throw new UsbredirProtocolError('packet-too-long', `${name} length ${length} > ${MAX_PACKET_SIZE}`, type);
    }
    const thSize = typeHeaderSize(type, this.#neg.layout);
    if (length < thSize) {
      throw new UsbredirProtocolError('length-too-short', `${name} length ${length} < type header ${thSize}`, type);
    }
    if (length > thSize && !mayCarryData(type)) {
      throw new UsbredirProtocolError('unexpected-data', `${name} carries ${length - thSize} bytes of data`, type);
    }
    return { type, id, typeHeaderSize: thSize, dataLength: length - thSize };
  }

  /**
   * Consume n bytes: a view when they sit in the first chunk, else a copy (into `into` when
   * given and large enough).
   */
  #take(n: number, into?: Buffer): Buffer {
    this.#available -= n;
    const first = this.#chunks[0];
    if (n === 0) return Buffer.alloc(0);
    if (first && first.length - this.#offset >= n) {
      const view = first.subarray(this.#offset, this.#offset + n);
      this.#offset += n;
      if (this.#offset === first.length) this.#dropFirst();
      return view;
    }
    const out = into && into.length >= n ? into.subarray(0, n) : Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.#chunks[0]!;
      const count = Math.min(n - filled, chunk.length - this.#offset);
      chunk.copy(out, filled, this.#offset, this.#offset + count);
      filled += count;
      this.#offset += count;
      if (this.#offset === chunk.length) this.#dropFirst();
    }
    return out;
  }

  #dropFirst(): void {
    this.#chunks.shift();
    this.#offset = 0;
  }
}
