import { TransferStatus } from '../../../usb/status.js';
import type { Transfer } from '../../../usb/transfer.js';
import { CSW_SIGNATURE, CSW_SIZE, encodeCsw } from '../bot-wire.js';

/**
 * A Bulk-Only command answered without the device: its data-in, then its CSW, handed to the
 * host's IN transfers exactly as BotFunction does (as many transfers as the host posts, a
 * zero-length packet when the data ends short on a transfer boundary, residue in the CSW).
 */
export class LocalReply {
  readonly #data: Buffer;
  #sent = 0;
  #zlpOwed = false;
  #dataDone: boolean;

  constructor(
    readonly tag: number,
    /** dCBWDataTransferLength. */
    readonly hostLength: number,
    data: Buffer,
    /** bCSWStatus. */
    readonly status: number,
  ) {
    this.#data = data.length > hostLength ? data.subarray(0, hostLength) : data;
    this.#dataDone = hostLength === 0;
  }

  /** Completes one IN transfer (without resolving it); true when it carried the CSW. */
  serve(t: Transfer): boolean {
    if (!this.#dataDone) {
      this.#sendData(t);
      return false;
    }
    if (t.length < CSW_SIZE) {
      t.fail(TransferStatus.Babble);
      return false;
    }
    t.completeIn(encodeCsw(this.tag, this.hostLength - this.#sent, this.status));
    return true;
  }

  #sendData(t: Transfer): void {
    if (this.#zlpOwed) {
      t.completeIn(EMPTY);
      this.#dataDone = true;
      return;
    }
    const n = Math.min(t.length, this.#data.length - this.#sent);
    t.completeIn(this.#data.subarray(this.#sent, this.#sent + n));
    this.#sent += n;
    if (this.#sent < this.#data.length) return;
    if (n === t.length && this.#sent < this.hostLength) this.#zlpOwed = true;
    else this.#dataDone = true;
  }
}

/** The CSW of `tag` if this completed IN transfer carries one: its status and residue. */
export function cswOf(t: Transfer, tag: number): { status: number; residue: number } | undefined {
  if (t.status !== TransferStatus.Ok || t.actualLength !== CSW_SIZE) return undefined;
  const b = t.data;
  if (b.length < CSW_SIZE || b.readUInt32LE(0) !== CSW_SIGNATURE || b.readUInt32LE(4) !== tag) return undefined;
  return { status: b[12]!, residue: b.readUInt32LE(8) };
}

const EMPTY = Buffer.alloc(0);
