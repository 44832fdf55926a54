import type { SetupPacket } from './setup.js';
import { TransferStatus } from './status.js';

export type TransferType = 'control' | 'isochronous' | 'bulk' | 'interrupt';

export const EP_DIR_IN = 0x80;

export interface IsoPacket {
  /** Offset of this packet in the transfer buffer. */
  offset: number;
  /** Bytes requested (IN) or to send (OUT). */
  length: number;
  actualLength: number;
  status: TransferStatus;
}

export interface TransferFlags {
  /** A short IN completion is an error (USB/IP URB_SHORT_NOT_OK). */
  shortNotOk?: boolean;
  /** Terminate a bulk OUT whose length is a multiple of wMaxPacketSize with a zero-length packet. */
  zeroPacket?: boolean;
}

export interface TransferInit {
  type: TransferType;
  /** Endpoint address with direction bit 0x80 for IN. Control transfers: 0x00, or 0x80 if the data stage is IN. */
  endpoint: number;
  setup?: SetupPacket;
  /** IN: bytes requested. OUT: defaults to data.length. */
  length?: number;
  /** OUT payload. Owned by the transfer until it completes; devices must copy what they keep longer. */
  data?: Buffer;
  flags?: TransferFlags;
  /** Bulk stream id (USB 3 streams), 0 when unused. */
  streamId?: number;
  /** Polling interval as the requester gave it (protocol units); informational. */
  interval?: number;
  isoPackets?: IsoPacket[];
}

/**
 * One USB transfer, the single currency of usbwire. Every protocol decodes into it and encodes
 * from it; every device consumes it. A device completes it by setting `status`, `actualLength`
 * and, for IN, `data` (which may be a buffer the device owns: no copy into a preallocated one),
 * then resolving the promise returned by `submit`.
 *
 * Isochronous IN: `data` spans the whole transfer; each packet's bytes sit at its `offset`.
 */
export class Transfer {
  readonly type: TransferType;
  readonly endpoint: number;
  readonly setup: SetupPacket | undefined;
  readonly length: number;
  readonly flags: TransferFlags;
  readonly streamId: number;
  readonly interval: number;
  readonly isoPackets: IsoPacket[] | undefined;
  data: Buffer;
  status: TransferStatus = TransferStatus.Ok;
  actualLength = 0;
  /** Free slot for the submitter (e.g. a protocol sequence number). */
  tag: unknown;

  constructor(init: TransferInit) {
    this.type = init.type;
    this.endpoint = init.endpoint;
    this.setup = init.setup;
    this.data = init.data ?? EMPTY;
    this.length = init.length ?? this.data.length;
    this.flags = init.flags ?? NO_FLAGS;
    this.streamId = init.streamId ?? 0;
    this.interval = init.interval ?? 0;
    this.isoPackets = init.isoPackets;
  }

  get isIn(): boolean {
    return (this.endpoint & EP_DIR_IN) !== 0;
  }

  get endpointNumber(): number {
    return this.endpoint & 0x0f;
  }

  /** Complete an IN transfer with `data` (truncated to the requested length: babble if longer). */
  completeIn(data: Buffer, status: TransferStatus = TransferStatus.Ok): void {
    if (data.length > this.length) {
      this.data = data.subarray(0, this.length);
      this.actualLength = this.length;
      this.status = TransferStatus.Babble;
      return;
    }
    this.data = data;
    this.actualLength = data.length;
    this.status =
      status === TransferStatus.Ok && this.flags.shortNotOk && data.length < this.length
        ? TransferStatus.ShortPacket
        : status;
  }

  /** Complete with an error and no data. */
  fail(status: TransferStatus): void {
    this.status = status;
    this.actualLength = 0;
    if (this.isIn) this.data = EMPTY;
  }

  describe(): string {
    const dir = this.isIn ? 'IN' : 'OUT';
    return `${this.type} ep${this.endpointNumber} ${dir} len=${this.length}`;
  }
}

const EMPTY = Buffer.alloc(0);
const NO_FLAGS: TransferFlags = Object.freeze({});
