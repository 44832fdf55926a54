import { encodeSetup, SETUP_SIZE } from '../../usb/setup.js';
import { TransferStatus } from '../../usb/status.js';
import type { IsoPacket, Transfer } from '../../usb/transfer.js';
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

/** Transfer structs without iso packets kept for reuse, per binding: at most this many. */
const POOL_MAX = 64;

interface PooledStruct {
  pointer: Pointer;
  header: Buffer;
  /** What dev_handle and callback hold already (BigInt writes are not free). */
  handle: Pointer;
  callback: Pointer;
}

const pools = new WeakMap<Libusb, PooledStruct[]>();

/** Structs waiting in the reuse pool (not leaked, not in flight). */
export function pooledTransfers(lib: Libusb): number {
  return pools.get(lib)?.length ?? 0;
}

/** Free the pooled structs (none is in flight): a closing device leaves nothing allocated. */
export function releasePooledTransfers(lib: Libusb): void {
  for (const s of pools.get(lib)?.splice(0) ?? []) lib.freeTransfer(s.pointer);
}

function takeStruct(lib: Libusb, isoPackets: number): PooledStruct {
  if (isoPackets === 0) {
    const pooled = pools.get(lib)?.pop();
    if (pooled) return pooled;
  }
  const pointer = lib.allocTransfer(isoPackets);
  const header = lib.viewTransfer(pointer, isoPackets);
  header.writeBigUInt64LE(0n, TRANSFER.userData);
  return { pointer, header, handle: -1n, callback: -1n };
}

function giveStruct(lib: Libusb, s: PooledStruct, isoPackets: number): void {
  let pool = pools.get(lib);
  if (!pool) {
    pool = [];
    pools.set(lib, pool);
  }
  if (isoPackets === 0 && pool.length < POOL_MAX) pool.push(s);
  else lib.freeTransfer(s.pointer);
}

/** Small IN buffers are cut from a shared slab (a fresh ArrayBuffer per 4 KiB read costs more than the read's FFI calls). */
const SLAB_SIZE = 64 * 1024;
const SLAB_MAX_PIECE = 8 * 1024;
let slab = Buffer.alloc(0);
let slabUsed = 0;

function inBuffer(length: number): Buffer {
  if (length > SLAB_MAX_PIECE) return Buffer.allocUnsafe(length);
  if (slabUsed + length > slab.length) {
    slab = Buffer.allocUnsafeSlow(SLAB_SIZE);
    slabUsed = 0;
  }
  const piece = slab.subarray(slabUsed, slabUsed + length);
  // 8-byte aligned pieces, as malloc would give.
  slabUsed += (length + 7) & ~7;
  return piece;
}

/**
 * The bytes libusb reads or fills: a Node Buffer handed to libusb by address (kept referenced
 * here until completion; ArrayBuffer memory never moves). Bulk/interrupt OUT use the request's
 * own payload, a view into the socket's read buffer, so nothing is copied between the socket
 * and libusb; IN data is handed on as a view of the buffer the kernel filled.
 */
function transferBuffer(t: Transfer, iso: readonly IsoPacket[], length: number): Buffer {
  const control = t.type === 'control';
  if (!control && iso.length === 0) {
    if (t.isIn) return inBuffer(length);
    if (t.data.length >= length) return t.data.subarray(0, length);
    const padded = Buffer.alloc(length);
    t.data.copy(padded);
    return padded;
  }
  const buffer = Buffer.allocUnsafe(length);
  if (control) {
    if (!t.setup) throw new Error('control transfer without setup');
    encodeSetup(t.setup, buffer, 0);
    if (!t.isIn) buffer.fill(0, SETUP_SIZE + t.data.copy(buffer, SETUP_SIZE, 0, Math.min(t.length, t.data.length)));
  } else if (!t.isIn) {
    let at = 0;
    for (const p of iso) {
      buffer.fill(0, at + t.data.copy(buffer, at, p.offset, p.offset + p.length), at + p.length);
      at += p.length;
    }
  }
  return buffer;
}

/**
 * One usbwire Transfer as a libusb_transfer. The struct lives outside the JS heap (libusb and the
 * kernel write into it while JavaScript runs); non-iso structs are reused after completion
 * instead of freed. Isochronous packets are packed back to back as libusb wants them and unpacked
 * to their offsets.
 */
export class LibusbTransfer {
  readonly transfer: Transfer;
  readonly pointer: Pointer;
  readonly done: () => void;
  readonly #struct: PooledStruct;
  readonly #buffer: Buffer;
  readonly #isoPackets: number;
  #cancelled = false;
  #freed = false;

  private constructor(transfer: Transfer, struct: PooledStruct, buffer: Buffer, isoPackets: number, done: () => void) {
    this.transfer = transfer;
    this.pointer = struct.pointer;
    this.#struct = struct;
    this.#buffer = buffer;
    this.#isoPackets = isoPackets;
    this.done = done;
  }

  static create(lib: Libusb, handle: Pointer, callback: Pointer, t: Transfer, done: () => void): LibusbTransfer {
    const iso = t.type === 'isochronous' ? (t.isoPackets ?? []) : [];
    const control = t.type === 'control';
    let length = t.length;
    if (control) length += SETUP_SIZE;
    else if (iso.length > 0) length = iso.reduce((sum, p) => sum + p.length, 0);
    const buffer = transferBuffer(t, iso, length);
    const struct = takeStruct(lib, iso.length);
    const h = struct.header;
    if (struct.handle !== handle) {
      h.writeBigUInt64LE(handle, TRANSFER.devHandle);
      struct.handle = handle;
    }
    h[TRANSFER.flags] = t.flags.zeroPacket ? LIBUSB_TRANSFER_ADD_ZERO_PACKET : 0;
    h[TRANSFER.endpoint] = control ? 0 : t.endpoint;
    h[TRANSFER.type] = XferType[t.type];
    h.writeUInt32LE(0, TRANSFER.timeout);
    h.writeInt32LE(length, TRANSFER.length);
    if (struct.callback !== callback) {
      h.writeBigUInt64LE(callback, TRANSFER.callback);
      struct.callback = callback;
    }
    h.writeBigUInt64LE(length > 0 ? lib.bufferAddress(buffer) : 0n, TRANSFER.buffer);
    h.writeInt32LE(iso.length, TRANSFER.numIsoPackets);
    for (let i = 0; i < iso.length; i++) {
      h.writeUInt32LE(iso[i]!.length, TRANSFER.isoPackets + i * TRANSFER.isoPacketSize);
    }
    return new LibusbTransfer(t, struct, buffer, iso.length, done);
  }

  /** Cancel at most once, and never after completion (the struct is reused or freed then). */
  cancel(lib: Libusb): void {
    if (this.#cancelled || this.#freed) return;
    this.#cancelled = true;
    lib.cancelTransfer(this.pointer);
  }

  /** Copy the outcome into the Transfer and give the libusb struct back. */
  finish(lib: Libusb, deviceGone: boolean): void {
    const t = this.transfer;
    const h = this.#struct.header;
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
        if (t.isIn && p.offset < data.length) this.#buffer.copy(data, p.offset, at, at + p.actualLength);
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
        // The buffer is ours alone from now on: handed on without a copy.
        t.data = this.#buffer.subarray(start, start + actual);
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

  /** After completion or a failed submit: the struct goes back to the pool (or is freed). */
  free(lib: Libusb): void {
    if (this.#freed) return;
    this.#freed = true;
    giveStruct(lib, this.#struct, this.#isoPackets);
  }
}
