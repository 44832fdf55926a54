// A stand-in for the libusb binding: transfers are recorded when submitted and completed by the
// test (or by `autoComplete`), the way libusb would from libusb_handle_events.
import { LibusbDevice } from '../../src/devices/libusb/libusb-device.js';
import { type Libusb, type Pointer, TRANSFER, XferStatus } from '../../src/devices/libusb/libusb-ffi.js';

export interface FakeSubmitted {
  pointer: Pointer;
  header: Buffer;
  buffer: Buffer;
  endpoint: number;
  type: number;
  length: number;
}

export class FakeLibusb implements Partial<Libusb> {
  readonly calls: string[] = [];
  readonly submitted: FakeSubmitted[] = [];
  readonly #memory = new Map<Pointer, Buffer>();
  /** Node Buffers handed over by address (not counted in `live`: the GC owns them). */
  readonly #buffers = new Map<Pointer, Buffer>();
  #next = 0x1000n;
  #callback: ((p: Pointer) => void) | undefined;
  driverActive = new Set<number>();
  /** Answer a transfer right away (returns true) instead of leaving it pending. */
  autoComplete: (s: FakeSubmitted) => boolean = () => false;

  #alloc(b: Buffer): Pointer {
    const p = this.#next;
    this.#next += 0x1000n;
    this.#memory.set(p, b);
    return p;
  }

  get live(): number {
    return this.#memory.size;
  }

  /** Complete a submitted transfer as libusb would: status, lengths, then the callback. */
  complete(s: FakeSubmitted, status: number = XferStatus.Completed, actual = 0, data?: Buffer): void {
    s.header.writeInt32LE(status, TRANSFER.status);
    s.header.writeInt32LE(actual, TRANSFER.actualLength);
    if (data) data.copy(s.buffer, s.type === 0 ? 8 : 0);
    this.#callback?.(s.pointer);
  }

  record(call: string, effect?: () => void): number {
    this.calls.push(call);
    effect?.();
    return 0;
  }

  asLibusb(): Libusb {
    return this as unknown as Libusb;
  }

  init = (): Pointer => 1n;
  exit = (): void => {
    this.calls.push('exit');
  };
  close = (): void => {
    this.calls.push('close');
  };
  pollFds = () => [];
  onPollFdChange = () => () => {};
  watchFd = () => ({ close() {} });
  handleEventsNow = () => 0;
  getConfiguration = () => 1;
  setConfiguration = (_h: Pointer, v: number) => this.record(`setConfiguration ${v}`);
  claimInterface = (_h: Pointer, i: number) => this.record(`claim ${i}`);
  releaseInterface = (_h: Pointer, i: number) => this.record(`release ${i}`);
  setAltSetting = (_h: Pointer, i: number, a: number) => this.record(`setAltSetting ${i} ${a}`);
  clearHalt = (_h: Pointer, ep: number) => this.record(`clearHalt ${ep.toString(16)}`);
  resetDevice = () => this.record('reset');
  kernelDriverActive = (_h: Pointer, i: number) => (this.driverActive.has(i) ? 1 : 0);
  detachKernelDriver = (_h: Pointer, i: number) => this.record(`detach ${i}`, () => this.driverActive.delete(i));
  attachKernelDriver = (_h: Pointer, i: number) => this.record(`attach ${i}`);
  registerTransferCallback = (fn: (p: Pointer) => void) => {
    this.#callback = fn;
    return { pointer: 0xcafen, unregister: () => {} };
  };
  allocBuffer = (length: number) => {
    const view = Buffer.alloc(length);
    return { pointer: this.#alloc(view), view };
  };
  freeBuffer = (p: Pointer) => {
    if (!this.#memory.delete(p)) throw new Error('double free of a buffer');
  };
  bufferAddress = (b: Buffer): Pointer => {
    const p = this.#next;
    this.#next += 0x1000n;
    this.#buffers.set(p, b);
    return p;
  };
  allocTransfer = (n: number) => this.#alloc(Buffer.alloc(TRANSFER.isoPackets + n * TRANSFER.isoPacketSize));
  viewTransfer = (t: Pointer) => {
    const b = this.#memory.get(t);
    if (!b) throw new Error('view of a freed transfer');
    return b;
  };
  freeTransfer = (t: Pointer) => {
    if (!this.#memory.delete(t)) throw new Error('double free of a transfer');
  };
  submitTransfer = (t: Pointer) => {
    const header = this.viewTransfer(t);
    const address = header.readBigUInt64LE(TRANSFER.buffer);
    const buffer = address === 0n ? Buffer.alloc(0) : (this.#buffers.get(address) ?? this.#memory.get(address));
    if (!buffer) throw new Error('transfer without a buffer');
    const s: FakeSubmitted = {
      pointer: t,
      header,
      buffer,
      endpoint: header[TRANSFER.endpoint]!,
      type: header[TRANSFER.type]!,
      length: header.readInt32LE(TRANSFER.length),
    };
    this.submitted.push(s);
    if (this.autoComplete(s)) return 0;
    return 0;
  };
  /** Streams libusb_alloc_streams grants (it may grant fewer than asked); negative: an error. */
  streamsGranted: (asked: number) => number = (asked) => asked;
  readonly streamIds = new Map<Pointer, number>();
  allocStreams = (_h: Pointer, n: number, eps: number[]) => {
    this.calls.push(`allocStreams ${n} ${eps.map((e) => e.toString(16)).join(',')}`);
    return this.streamsGranted(n);
  };
  freeStreams = (_h: Pointer, eps: number[]) => this.record(`freeStreams ${eps.map((e) => e.toString(16)).join(',')}`);
  setStreamId = (t: Pointer, id: number) => {
    this.streamIds.set(t, id);
  };
  cancelTransfer = (t: Pointer) => {
    if (!this.#memory.has(t)) throw new Error('cancel of a freed transfer (pitfall 1)');
    this.calls.push('cancel');
    return 0;
  };
}

/** A device descriptor (0525:a4a0, one configuration) for fake devices. */
export const FAKE_DEVICE_DESCRIPTOR = Buffer.from([18, 1, 0, 2, 0, 0, 0, 64, 0x25, 0x05, 0xa0, 0xa4, 0, 1, 0, 0, 0, 1]);

/**
 * A LibusbDevice opened on a fake whose kernel drivers hold `drivers` and whose descriptors are
 * FAKE_DEVICE_DESCRIPTOR and `config`; `setup` may change the fake first. The fake's records are
 * emptied after the open.
 */
export async function openFakeDevice(
  config: Buffer,
  drivers: number[],
  setup?: (lib: FakeLibusb) => void,
): Promise<{ lib: FakeLibusb; dev: LibusbDevice }> {
  const lib = new FakeLibusb();
  for (const i of drivers) lib.driverActive.add(i);
  setup?.(lib);
  lib.autoComplete = (s) => {
    if (!(s.type === 0 && s.buffer[0] === 0x80 && s.buffer[1] === 6)) return false;
    const data = (s.buffer[3] === 1 ? FAKE_DEVICE_DESCRIPTOR : config).subarray(0, s.buffer.readUInt16LE(6));
    setImmediate(() => lib.complete(s, XferStatus.Completed, data.length, data));
    return true;
  };
  const dev = new LibusbDevice(lib.asLibusb(), 1n, 2n, 'fake', 'high');
  await dev.init();
  lib.submitted.length = 0;
  lib.calls.length = 0;
  return { lib, dev };
}
