import { ByteQueue } from '../../util/byte-queue.js';
import { attachData, decodeTypeHeader } from './codec.js';
import { MAX_PACKET_SIZE, packetTypeName, PacketType as T } from './constants.js';
import { UsbredirProtocolError } from './errors.js';
import type { Negotiation } from './negotiation.js';
import type { Packet } from './packets.js';
import { checkTypeAndDirection, mayCarryData, typeHeaderSize, verifyTypeHeader } from './rules.js';

type Step = () => void;

/**
 * Called with each packet's header (data not attached yet) and its data length, before the data
 * is gathered: a receiver that knows what it asked for throws a UsbredirProtocolError here for a
 * reply it never asked for, so a lying peer cannot make it buffer up to MAX_PACKET_SIZE.
 */
export type HeaderCheck = (p: Packet, dataLength: number) => void;

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
  readonly #checkHeader: HeaderCheck | undefined;
  readonly #queue = new ByteQueue();
  #need: number;
  #step: Step;
  #held = false;
  #draining = false;
  #failed: UsbredirProtocolError | undefined;
  // The packet being read: header fields, then its decoded type header.
  #type = 0;
  #id = 0n;
  #typeHeaderSize = 0;
  #dataLength = 0;
  #packet: Packet | undefined;

  constructor(neg: Negotiation, onPacket: (p: Packet) => void, checkHeader?: HeaderCheck) {
    this.#neg = neg;
    this.#onPacket = onPacket;
    this.#checkHeader = checkHeader;
    this.#need = neg.layout.headerSize;
    this.#step = this.#header;
  }

  /** Bytes received but not yet consumed by a complete packet. */
  get buffered(): number {
    return this.#queue.length;
  }

  push(chunk: Buffer): void {
    if (this.#failed) throw this.#failed;
    this.#queue.push(chunk);
    this.#drain();
  }

  /** Stop emitting packets after the current one; bytes pushed meanwhile are kept (back-pressure). */
  holdPackets(): void {
    this.#held = true;
  }

  /** Emit what was held back, and go on as usual. */
  releasePackets(): void {
    if (!this.#held) return;
    this.#held = false;
    if (!this.#failed) this.#drain();
  }

  #drain(): void {
    if (this.#draining) return;
    this.#draining = true;
    try {
      while (!this.#held && this.#queue.length >= this.#need) this.#step();
    } catch (err) {
      if (err instanceof UsbredirProtocolError) this.#failed = err;
      throw err;
    } finally {
      this.#draining = false;
    }
  }

  #expect(need: number, step: Step): void {
    this.#need = need;
    this.#step = step;
  }

  #header = (): void => {
    const headerSize = this.#neg.layout.headerSize;
    const h = this.#queue.take(headerSize);
    const type = h.readUInt32LE(0);
    const length = h.readUInt32LE(4);
    this.#id = headerSize === 16 ? h.readBigUInt64LE(8) : BigInt(h.readUInt32LE(8));
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
    this.#type = type;
    this.#typeHeaderSize = thSize;
    this.#dataLength = length - thSize;
    this.#expect(thSize, this.#typeHeader);
  };

  #typeHeader = (): void => {
    const packet = decodeTypeHeader(this.#type, this.#id, this.#queue.take(this.#typeHeaderSize), this.#neg.layout);
    verifyTypeHeader(packet, this.#dataLength, this.#neg, false);
    this.#checkHeader?.(packet, this.#dataLength);
    this.#packet = packet;
    this.#expect(this.#dataLength, this.#data);
  };

  #data = (): void => {
    const packet = this.#packet!;
    this.#packet = undefined;
    if (this.#dataLength > 0) attachData(packet, this.#queue.take(this.#dataLength));
    // The header size changes right after the first hello, before the next packet is read.
    if (packet.type === T.Hello) this.#neg.setPeerCaps(packet.caps);
    this.#expect(this.#neg.layout.headerSize, this.#header);
    this.#onPacket(packet);
  };
}
