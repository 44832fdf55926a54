import { createRequire } from 'node:module';

/**
 * The only module that knows how libusb is reached: koffi (prebuilt FFI) onto the system's
 * libusb-1.0.so.0. Everything is loaded on first use, so usbwire runs without libusb installed;
 * replacing the binding means replacing this file. Pointers are bigints (koffi 3).
 */

export type Pointer = bigint;

export class LibusbUnavailableError extends Error {
  override name = 'LibusbUnavailableError';
}

export class LibusbError extends Error {
  override name = 'LibusbError';
  constructor(
    readonly call: string,
    readonly code: number,
  ) {
    super(`${call}: ${errorName(code)} (${code})`);
  }
}

export const LibusbErrorCode = {
  Io: -1,
  InvalidParam: -2,
  Access: -3,
  NoDevice: -4,
  NotFound: -5,
  Busy: -6,
  Timeout: -7,
  Overflow: -8,
  Pipe: -9,
  Interrupted: -10,
  NoMem: -11,
  NotSupported: -12,
} as const;

const ERROR_NAMES: Record<number, string> = {
  [-1]: 'LIBUSB_ERROR_IO',
  [-2]: 'LIBUSB_ERROR_INVALID_PARAM',
  [-3]: 'LIBUSB_ERROR_ACCESS (permission denied: run as root or add a udev rule)',
  [-4]: 'LIBUSB_ERROR_NO_DEVICE',
  [-5]: 'LIBUSB_ERROR_NOT_FOUND',
  [-6]: 'LIBUSB_ERROR_BUSY',
  [-7]: 'LIBUSB_ERROR_TIMEOUT',
  [-8]: 'LIBUSB_ERROR_OVERFLOW',
  [-9]: 'LIBUSB_ERROR_PIPE',
  [-10]: 'LIBUSB_ERROR_INTERRUPTED',
  [-11]: 'LIBUSB_ERROR_NO_MEM',
  [-12]: 'LIBUSB_ERROR_NOT_SUPPORTED',
};

function errorName(code: number): string {
  return ERROR_NAMES[code] ?? 'LIBUSB_ERROR_OTHER';
}

/** libusb_transfer_status */
export const XferStatus = {
  Completed: 0,
  Error: 1,
  TimedOut: 2,
  Cancelled: 3,
  Stall: 4,
  NoDevice: 5,
  Overflow: 6,
} as const;

/** libusb_transfer_type */
export const XferType = { control: 0, isochronous: 1, bulk: 2, interrupt: 3, bulkStream: 4 } as const;

/** struct libusb_transfer on LP64 (x86_64, aarch64). */
export const TRANSFER = {
  devHandle: 0,
  flags: 8,
  endpoint: 9,
  type: 10,
  timeout: 12,
  status: 16,
  length: 20,
  actualLength: 24,
  callback: 32,
  userData: 40,
  buffer: 48,
  numIsoPackets: 56,
  isoPackets: 60,
  /** struct libusb_iso_packet_descriptor: length, actual_length, status (3 × 32 bits). */
  isoPacketSize: 12,
} as const;

export const POLLIN = 0x1;
export const POLLOUT = 0x4;

export const INSTALL_HINT = 'install libusb-1.0-0 (Debian: apt install libusb-1.0-0)';

export interface PollFd {
  fd: number;
  events: number;
}

export interface Libusb {
  init(): Pointer;
  exit(ctx: Pointer): void;
  getDeviceList(ctx: Pointer): { list: Pointer; devices: Pointer[] };
  freeDeviceList(list: Pointer): void;
  busNumber(dev: Pointer): number;
  deviceAddress(dev: Pointer): number;
  portNumbers(dev: Pointer): number[];
  /** idVendor, idProduct from the cached device descriptor. */
  ids(dev: Pointer): { vendorId: number; productId: number };
  speed(dev: Pointer): number;
  open(dev: Pointer): Pointer;
  close(handle: Pointer): void;
  getConfiguration(handle: Pointer): number;
  setConfiguration(handle: Pointer, value: number): number;
  claimInterface(handle: Pointer, iface: number): number;
  releaseInterface(handle: Pointer, iface: number): number;
  setAltSetting(handle: Pointer, iface: number, alt: number): number;
  clearHalt(handle: Pointer, endpoint: number): number;
  resetDevice(handle: Pointer): number;
  kernelDriverActive(handle: Pointer, iface: number): number;
  detachKernelDriver(handle: Pointer, iface: number): number;
  attachKernelDriver(handle: Pointer, iface: number): number;
  allocTransfer(isoPackets: number): Pointer;
  freeTransfer(transfer: Pointer): void;
  submitTransfer(transfer: Pointer): number;
  cancelTransfer(transfer: Pointer): number;
  /** libusb_handle_events_timeout_completed with a zero timeout: never blocks. */
  handleEventsNow(ctx: Pointer): number;
  pollFds(ctx: Pointer): PollFd[];
  /** Install pollfd notifiers; returns a function that removes them. */
  onPollFdChange(ctx: Pointer, added: (fd: number, events: number) => void, removed: (fd: number) => void): () => void;
  /** Register the single transfer completion callback; returns its C pointer. */
  registerTransferCallback(fn: (transfer: Pointer) => void): { pointer: Pointer; unregister(): void };
  /** Memory outside the JS heap for transfer buffers, and a Buffer over it. */
  allocBuffer(length: number): { pointer: Pointer; view: Buffer };
  freeBuffer(pointer: Pointer): void;
  /**
   * The address of a Node Buffer's bytes, for libusb to read or fill asynchronously (zero copy).
   * The caller keeps the Buffer referenced until the transfer completes; its memory never moves.
   */
  bufferAddress(buffer: Buffer): Pointer;
  /** A Buffer over a libusb_transfer (header + iso packet descriptors). */
  viewTransfer(transfer: Pointer, isoPackets: number): Buffer;
  /** Watch a file descriptor on Node's event loop (libuv uv_poll, level-triggered). */
  watchFd(fd: number, events: number, ready: () => void): { close(): void };
  /** libusb_alloc_streams: how many streams were allocated (may be fewer than asked), or an error. */
  allocStreams(handle: Pointer, streams: number, endpoints: number[]): number;
  /** libusb_free_streams. */
  freeStreams(handle: Pointer, endpoints: number[]): number;
  /** libusb_transfer_set_stream_id: the id lives in libusb's private part of the transfer. */
  setStreamId(transfer: Pointer, streamId: number): void;
}

let cached: Libusb | undefined;
let loadError: Error | undefined;

/** The binding, loaded on first call. Throws LibusbUnavailableError saying what to install. */
export function libusb(): Libusb {
  if (cached) return cached;
  if (loadError) throw loadError;
  cached = load();
  return cached;
}

function unavailable(err: unknown): LibusbUnavailableError {
  loadError = new LibusbUnavailableError(
    `real USB devices need libusb-1.0: ${INSTALL_HINT} (${(err as Error).message})`,
  );
  return loadError;
}

// biome-ignore lint/suspicious/noExplicitAny: koffi's function objects are untyped
type Fn = (...args: any[]) => any;

function load(): Libusb {
  const require = createRequire(import.meta.url);
  let koffi: typeof import('koffi');
  try {
    koffi = require('koffi') as typeof import('koffi');
  } catch (err) {
    loadError = new LibusbUnavailableError(
      `real USB devices need the koffi FFI module (npm dependency 'koffi', prebuilt for ${process.platform}-${process.arch}): ${(err as Error).message}`,
    );
    throw loadError;
  }
  let lib: ReturnType<typeof koffi.load>;
  try {
    lib = koffi.load(process.env.USBWIRE_LIBUSB ?? 'libusb-1.0.so.0');
  } catch (err) {
    throw unavailable(err);
  }
  const f = (decl: string): Fn => lib.func(decl) as Fn;

  koffi.struct('usbwire_libusb_device_descriptor', {
    bLength: 'uint8_t',
    bDescriptorType: 'uint8_t',
    bcdUSB: 'uint16_t',
    bDeviceClass: 'uint8_t',
    bDeviceSubClass: 'uint8_t',
    bDeviceProtocol: 'uint8_t',
    bMaxPacketSize0: 'uint8_t',
    idVendor: 'uint16_t',
    idProduct: 'uint16_t',
    bcdDevice: 'uint16_t',
    iManufacturer: 'uint8_t',
    iProduct: 'uint8_t',
    iSerialNumber: 'uint8_t',
    bNumConfigurations: 'uint8_t',
  });
  const TransferCb = koffi.proto('void usbwire_libusb_transfer_cb(void *transfer)');
  const PollfdAdded = koffi.proto('void usbwire_libusb_pollfd_added(int fd, short events, void *user)');
  const PollfdRemoved = koffi.proto('void usbwire_libusb_pollfd_removed(int fd, void *user)');

  const init = f('int libusb_init(_Out_ void **ctx)');
  const exit = f('void libusb_exit(void *ctx)');
  const getDeviceList = f('intptr_t libusb_get_device_list(void *ctx, _Out_ void **list)');
  const freeDeviceList = f('void libusb_free_device_list(void *list, int unref)');
  const getBusNumber = f('uint8_t libusb_get_bus_number(void *dev)');
  const getDeviceAddress = f('uint8_t libusb_get_device_address(void *dev)');
  const getPortNumbers = f('int libusb_get_port_numbers(void *dev, _Out_ uint8_t *ports, int len)');
  const getDeviceDescriptor = f(
    'int libusb_get_device_descriptor(void *dev, _Out_ usbwire_libusb_device_descriptor *desc)',
  );
  const getDeviceSpeed = f('int libusb_get_device_speed(void *dev)');
  const open = f('int libusb_open(void *dev, _Out_ void **handle)');
  const close = f('void libusb_close(void *handle)');
  const getConfiguration = f('int libusb_get_configuration(void *handle, _Out_ int *config)');
  const setConfiguration = f('int libusb_set_configuration(void *handle, int config)');
  const claimInterface = f('int libusb_claim_interface(void *handle, int iface)');
  const releaseInterface = f('int libusb_release_interface(void *handle, int iface)');
  const setAltSetting = f('int libusb_set_interface_alt_setting(void *handle, int iface, int alt)');
  const clearHalt = f('int libusb_clear_halt(void *handle, uint8_t endpoint)');
  const resetDevice = f('int libusb_reset_device(void *handle)');
  const kernelDriverActive = f('int libusb_kernel_driver_active(void *handle, int iface)');
  const detachKernelDriver = f('int libusb_detach_kernel_driver(void *handle, int iface)');
  const attachKernelDriver = f('int libusb_attach_kernel_driver(void *handle, int iface)');
  const allocTransfer = f('void *libusb_alloc_transfer(int isoPackets)');
  const freeTransfer = f('void libusb_free_transfer(void *transfer)');
  const submitTransfer = f('int libusb_submit_transfer(void *transfer)');
  const cancelTransfer = f('int libusb_cancel_transfer(void *transfer)');
  // The zero timeval goes as a ready-made buffer: no JS object converted to a struct on each call.
  const handleEvents = f('int libusb_handle_events_timeout_completed(void *ctx, void *tv, int *completed)');
  const getPollfds = f('void *libusb_get_pollfds(void *ctx)');
  const freePollfds = f('void libusb_free_pollfds(void *fds)');
  const setPollfdNotifiers = f(
    'void libusb_set_pollfd_notifiers(void *ctx, usbwire_libusb_pollfd_added *added, usbwire_libusb_pollfd_removed *removed, void *user)',
  );

  // Streams came with libusb 1.0.19: an older library still serves everything else.
  const optional = (decl: string): Fn | undefined => {
    try {
      return f(decl);
    } catch {
      return undefined;
    }
  };
  const allocStreams = optional(
    'int libusb_alloc_streams(void *handle, uint32_t streams, const uint8_t *endpoints, int count)',
  );
  const freeStreams = optional('int libusb_free_streams(void *handle, const uint8_t *endpoints, int count)');
  const setStreamId = optional('void libusb_transfer_set_stream_id(void *transfer, uint32_t stream)');

  const check = (call: string, rc: number): number => {
    if (rc < 0) throw new LibusbError(call, rc);
    return rc;
  };
  const zero = Buffer.alloc(16); // struct timeval { 0, 0 }

  return {
    init() {
      const out: [Pointer | null] = [null];
      check('libusb_init', init(out));
      return out[0] as Pointer;
    },
    exit: (ctx) => exit(ctx),
    getDeviceList(ctx) {
      const out: [Pointer | null] = [null];
      const n = check('libusb_get_device_list', Number(getDeviceList(ctx, out)));
      const list = out[0] as Pointer;
      const devices: Pointer[] = [];
      for (let i = 0; i < n; i++) devices.push(BigInt(koffi.decode(list, i * 8, 'uint64_t')));
      return { list, devices };
    },
    freeDeviceList: (list) => freeDeviceList(list, 1),
    busNumber: (dev) => getBusNumber(dev),
    deviceAddress: (dev) => getDeviceAddress(dev),
    portNumbers(dev) {
      const ports = new Uint8Array(8);
      const n = check('libusb_get_port_numbers', getPortNumbers(dev, ports, ports.length));
      return Array.from(ports.subarray(0, n));
    },
    ids(dev) {
      const desc: { idVendor?: number; idProduct?: number } = {};
      check('libusb_get_device_descriptor', getDeviceDescriptor(dev, desc));
      return { vendorId: desc.idVendor ?? 0, productId: desc.idProduct ?? 0 };
    },
    speed: (dev) => getDeviceSpeed(dev),
    open(dev) {
      const out: [Pointer | null] = [null];
      check('libusb_open', open(dev, out));
      return out[0] as Pointer;
    },
    close: (h) => close(h),
    getConfiguration(h) {
      const out = [0];
      check('libusb_get_configuration', getConfiguration(h, out));
      return out[0] as number;
    },
    setConfiguration: (h, v) => setConfiguration(h, v),
    claimInterface: (h, i) => claimInterface(h, i),
    releaseInterface: (h, i) => releaseInterface(h, i),
    setAltSetting: (h, i, a) => setAltSetting(h, i, a),
    clearHalt: (h, ep) => clearHalt(h, ep),
    resetDevice: (h) => resetDevice(h),
    kernelDriverActive: (h, i) => kernelDriverActive(h, i),
    detachKernelDriver: (h, i) => detachKernelDriver(h, i),
    attachKernelDriver: (h, i) => attachKernelDriver(h, i),
    allocTransfer(n) {
      const t = allocTransfer(n) as Pointer | null;
      if (!t) throw new LibusbError('libusb_alloc_transfer', LibusbErrorCode.NoMem);
      return t;
    },
    freeTransfer: (t) => freeTransfer(t),
    submitTransfer: (t) => submitTransfer(t),
    cancelTransfer: (t) => cancelTransfer(t),
    handleEventsNow: (ctx) => handleEvents(ctx, zero, null),
    pollFds(ctx) {
      const list = getPollfds(ctx) as Pointer | null;
      if (!list) return [];
      const fds: PollFd[] = [];
      for (let i = 0; ; i++) {
        const p = BigInt(koffi.decode(list, i * 8, 'uint64_t'));
        if (p === 0n) break;
        fds.push({ fd: koffi.decode(p, 0, 'int32_t'), events: koffi.decode(p, 4, 'int16_t') });
      }
      freePollfds(list);
      return fds;
    },
    onPollFdChange(ctx, added, removed) {
      const a = koffi.register((fd: number, events: number) => added(fd, events), koffi.pointer(PollfdAdded));
      const r = koffi.register((fd: number) => removed(fd), koffi.pointer(PollfdRemoved));
      setPollfdNotifiers(ctx, a, r, null);
      return () => {
        setPollfdNotifiers(ctx, null, null, null);
        koffi.unregister(a);
        koffi.unregister(r);
      };
    },
    registerTransferCallback(fn) {
      const pointer = koffi.register((t: Pointer) => fn(t), koffi.pointer(TransferCb));
      return { pointer, unregister: () => koffi.unregister(pointer) };
    },
    allocBuffer(length) {
      const pointer = koffi.alloc('uint8_t', Math.max(length, 1)) as unknown as Pointer;
      return { pointer, view: Buffer.from(koffi.view(pointer, Math.max(length, 1)), 0, length) };
    },
    freeBuffer: (p) => koffi.free(p),
    bufferAddress: (b) => koffi.address(b),
    watchFd(fd, events, ready) {
      const opts = { readable: (events & POLLIN) !== 0, writable: (events & POLLOUT) !== 0 };
      const handle = koffi.node.poll(fd, opts, () => ready());
      return { close: () => handle.close() };
    },
    viewTransfer: (t, n) => Buffer.from(koffi.view(t, TRANSFER.isoPackets + n * TRANSFER.isoPacketSize)),
    allocStreams: (h, n, eps) =>
      allocStreams ? allocStreams(h, n, Uint8Array.from(eps), eps.length) : LibusbErrorCode.NotSupported,
    freeStreams: (h, eps) =>
      freeStreams ? freeStreams(h, Uint8Array.from(eps), eps.length) : LibusbErrorCode.NotSupported,
    setStreamId(t, id) {
      if (!setStreamId) throw new LibusbError('libusb_transfer_set_stream_id', LibusbErrorCode.NotSupported);
      setStreamId(t, id);
    },
  };
}
