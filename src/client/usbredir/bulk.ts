import { Cap, MAX_BULK_TRANSFER_SIZE, PacketType as T } from '../../protocol/usbredir/constants.js';
import type { Negotiation } from '../../protocol/usbredir/negotiation.js';
import type { BulkPacket } from '../../protocol/usbredir/packets.js';
import { TransferStatus } from '../../usb/status.js';
import type { Transfer } from '../../usb/transfer.js';

const EMPTY = Buffer.alloc(0);

/**
 * One bulk transfer as a sequence of bulk_packets. Usually one; split when it is longer than
 * the host takes (65535 bytes without 32bits_bulk_length, 128 MiB with it) and rejoined, each
 * piece a multiple of wMaxPacketSize so that a short piece still means the end of the transfer.
 * zeroPacket: an OUT of a multiple of wMaxPacketSize is followed by a zero-length bulk_packet.
 */
export class BulkJob {
  readonly transfer: Transfer;
  readonly #maxPiece: number;
  readonly #zlp: boolean;
  #done = 0;
  #requested = 0;
  #zlpSent = false;
  readonly #pieces: Buffer[] = [];

  constructor(t: Transfer, maxPacketSize: number, neg: Negotiation) {
    this.transfer = t;
    const limit = neg.both(Cap.BulkLength32Bits) ? MAX_BULK_TRANSFER_SIZE : 0xffff;
    const unit = maxPacketSize > 0 ? maxPacketSize : 1024;
    this.#maxPiece = Math.max(unit, limit - (limit % unit));
    this.#zlp = !t.isIn && !!t.flags.zeroPacket && t.length > 0 && maxPacketSize > 0 && t.length % maxPacketSize === 0;
  }

  /** The next bulk_packet to send (without its id). */
  nextPacket(id: bigint): BulkPacket {
    const t = this.transfer;
    const len = this.#done < t.length ? Math.min(t.length - this.#done, this.#maxPiece) : 0;
    this.#requested = len;
    const data = t.isIn ? EMPTY : t.data.subarray(this.#done, this.#done + len);
    return { type: T.BulkPacket, id, endpoint: t.endpoint, status: 0, length: len, streamId: t.streamId, data };
  }

  /** Most data the reply to the last packet may carry. */
  get replyLimit(): number {
    return this.transfer.isIn ? this.#requested : 0;
  }

  /** Take the host's reply to the last packet; true when another packet must follow. */
  reply(r: BulkPacket, status: TransferStatus, stop: boolean): boolean {
    const t = this.transfer;
    let got: number;
    if (t.isIn) {
      const data = r.data.length > this.#requested ? r.data.subarray(0, this.#requested) : r.data;
      if (data.length < r.data.length) status = TransferStatus.Babble;
      this.#pieces.push(data);
      got = data.length;
    } else {
      got = Math.min(r.length, this.#requested);
    }
    this.#done += got;
    this.status = status;
    if (status !== TransferStatus.Ok) return false;
    const more = this.#done < t.length ? !t.isIn || got === this.#requested : this.#zlp && !this.#zlpSent;
    if (!more) return false;
    // Cancelled between two pieces: what was done stays done, the rest is not sent.
    if (stop) {
      this.status = TransferStatus.Cancelled;
      return false;
    }
    if (this.#done >= t.length) this.#zlpSent = true;
    return true;
  }

  status: TransferStatus = TransferStatus.Ok;

  /** Complete the transfer with what the packets brought. */
  finish(): void {
    const t = this.transfer;
    if (t.isIn) {
      const data = this.#pieces.length === 1 ? this.#pieces[0]! : Buffer.concat(this.#pieces);
      t.completeIn(data, this.status);
      return;
    }
    t.status = this.status;
    t.actualLength = this.#done;
  }
}
