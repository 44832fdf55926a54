import { encodeSetup, SETUP_SIZE } from '../../usb/setup.js';
import { TransferStatus } from '../../usb/status.js';
import type { Transfer } from '../../usb/transfer.js';
import { type Libusb, type Pointer, TRANSFER, XferStatus, XferType } from './libusb-ffi.js';

const LIBUSB_TRANSFER_ADD_ZERO_PACKET = 1 << 3;

const STATUS: Record<number, TransferStatus> = {
  [XferStatus.Completed]: TransferStatus.Ok,
  [XferStatus.Error]: TransferStatus.IoError,
  [XferStatus.TimedOut]: TransferStatus.Timeout,
  [XferStatus.Cancelled]: TransferStatus.Cancelled,
  [XferStatus.Stall]: TransferStatus.Stall,
  [XferStatus.NoDevice]: TransferStatus.NoDevice,
  [XferStatus.Overflow]: TransferStatus.Babble,
};

export function statusOf(code: number): TransferStatus {
  return STATUS[code] ?? TransferStatus.IoError;
}

/**
 * One usbwire Transfer as a libusb_transfer: the struct and its buffer live outside the JS heap
 * (libusb and the kernel write into them while JavaScript runs) and are freed on completion.
 * Isochronous packets are packed back to back as libusb wants them and unpacked to their offsets.
 */
export class LibusbTransfer {
  readonly transfer: Transfer;
  readonly pointer: Pointer;
  readonly done: () => void;
  readonly #header: Buffer;
  readonly #buffer: { pointer: Pointer; view: Buffer };
  #cancelled = false;
  #freed = false;

  private constructor(
    transfer: Transfer,
    pointer: Pointer,
    header: Buffer,
    buffer: { pointer: Pointer; view: Buffer },
    done: () => void,
  ) {
    this.transfer = transfer;
    this.pointer = pointer;
    this.#header = header;
    this.#buffer = buffer;
    this.done = done;
  }

  static create(lib: Libusb, handle: Pointer, callback: Pointer, t: Transfer, done: () => void): LibusbTransfer {
    const iso = t.type === 'isochronous' ? (t.isoPackets ?? []) : [];
    const control = t.type === 'control';
    const length = control
      ? SETUP_SIZE + t.length
      : iso.length > 0
        ? iso.reduce((sum, p) => sum + p.length, 0)
        : t.length;
    const buffer = lib.allocBuffer(length);
    let pointer: Pointer;
    try {
      pointer = lib.allocTransfer(iso.length);
    } catch (err) {
      lib.freeBuffer(buffer.pointer);
      throw err;
    }
    const h = lib.viewTransfer(pointer, iso.length);
    const view = buffer.view;
    if (control) {
      if (!t.setup) throw new Error('control transfer without setup');
      encodeSetup(t.setup, view, 0);
      if (!t.isIn) t.data.copy(view, SETUP_SIZE, 0, Math.min(t.length, t.data.length));
    } else if (!t.isIn) {
      if (iso.length > 0) {
        let at = 0;
        for (const p of iso) {
          t.data.copy(view, at, p.offset, p.offset + p.length);
          at += p.length;
        }
      } else {
        t.data.copy(view, 0, 0, Math.min(t.length, t.data.length));
      }
    }
    h.writeBigUInt64LE(handle, TRANSFER.devHandle);
    h[TRANSFER.flags] = t.flags.zeroPacket ? LIBUSB_TRANSFER_ADD_ZERO_PACKET : 0;
    h[TRANSFER.endpoint] = control ? 0 : t.endpoint;
    h[TRANSFER.type] = XferType[t.type];
    h.writeUInt32LE(0, TRANSFER.timeout);
    h.writeInt32LE(length, TRANSFER.length);
    h.writeBigUInt64LE(callback, TRANSFER.callback);
    h.writeBigUInt64LE(0n, TRANSFER.userData);
    h.writeBigUInt64LE(buffer.pointer, TRANSFER.buffer);
    h.writeInt32LE(iso.length, TRANSFER.numIsoPackets);
    iso.forEach((p, i) => {
      h.writeUInt32LE(p.length, TRANSFER.isoPackets + i * TRANSFER.isoPacketSize);
    });
    return new LibusbTransfer(t, pointer, h, buffer, done);
  }

  /** Cancel at most once, and never after completion (the struct is freed then). */
  cancel(lib: Libusb): void {
    if (this.#cancelled || this.#freed) return;
    this.#cancelled = true;
    lib.cancelTransfer(this.pointer);
  }

  /** Copy the outcome into the Transfer and free the libusb memory. */
  finish(lib: Libusb, deviceGone: boolean): void {
    const t = this.transfer;
    const h = this.#header;
    let status = statusOf(h.readInt32LE(TRANSFER.status));
    if (deviceGone && status !== TransferStatus.Ok) status = TransferStatus.NoDevice;
    const iso = t.type === 'isochronous' ? t.isoPackets : undefined;
    if (iso) {
      // libusb leaves actual_length at 0 for iso: the sum of the packets is the transfer's.
      const data = t.isIn ? Buffer.alloc(t.length) : t.data;
      let at = 0;
      let total = 0;
      iso.forEach((p, i) => {
        const base = TRANSFER.isoPackets + i * TRANSFER.isoPacketSize;
        p.actualLength = h.readUInt32LE(base + 4);
        p.status = statusOf(h.readInt32LE(base + 8));
        if (t.isIn && p.offset < data.length) this.#buffer.view.copy(data, p.offset, at, at + p.actualLength);
        total += p.actualLength;
        at += p.length;
      });
      t.data = data;
      t.status = status;
      t.actualLength = total;
    } else {
      const actual = h.readInt32LE(TRANSFER.actualLength);
      const start = t.type === 'control' ? SETUP_SIZE : 0;
      if (t.isIn) {
        t.data = Buffer.from(this.#buffer.view.subarray(start, start + actual));
        t.actualLength = actual;
        // Short-not-ok is ours: libusb would turn a short read into a generic error.
        t.status =
          status === TransferStatus.Ok && t.flags.shortNotOk && actual < t.length ? TransferStatus.ShortPacket : status;
      } else {
        t.actualLength = actual;
        t.status = status;
      }
    }
    this.free(lib);
  }

  free(lib: Libusb): void {
    if (this.#freed) return;
    this.#freed = true;
    lib.freeTransfer(this.pointer);
    lib.freeBuffer(this.#buffer.pointer);
  }
}
