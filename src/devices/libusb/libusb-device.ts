import { EventEmitter } from 'node:events';
import { activeEndpoints, type ParsedConfiguration, parseConfiguration } from '../../usb/descriptors.js';
import type { DeviceDescriptors, UsbDevice, UsbDeviceEvents } from '../../usb/device.js';
import { ConfigurationTracker, isSetConfiguration, isSetInterface, readDescriptors } from '../../usb/device-state.js';
import { Feature, RequestType, type SetupPacket, StandardRequest } from '../../usb/setup.js';
import type { UsbSpeed } from '../../usb/speed.js';
import { TransferStatus } from '../../usb/status.js';
import { maxStreamsOf } from '../../usb/streams.js';
import { Transfer } from '../../usb/transfer.js';
import { hex2, hex4 } from '../../util/hex.js';
import { createLogger, type Logger } from '../../util/log.js';
import { LibusbEventPump } from './libusb-events.js';
import { type Libusb, LibusbError, LibusbErrorCode, libusb, type Pointer, TRANSFER, XferType } from './libusb-ffi.js';
import { LibusbTransfer, releasePooledTransfers } from './libusb-transfer.js';

/** Which device to open: a port (bus number + port path, e.g. 1-1.4) or the first VID:PID match. */
export type LibusbSelector = { busNumber: number; portNumbers: number[] } | { vendorId: number; productId: number };

/** CLEAR_FEATURE(ENDPOINT_HALT) on EP0 goes to the device: libusb_clear_halt(0) is NOT_FOUND. */
function isClearHalt(s: SetupPacket): boolean {
  return (
    s.bmRequestType === RequestType.Endpoint &&
    s.bRequest === StandardRequest.ClearFeature &&
    s.wValue === Feature.EndpointHalt &&
    (s.wIndex & 0x0f) !== 0
  );
}

function isIntercepted(s: SetupPacket): boolean {
  return isSetConfiguration(s) || isSetInterface(s) || isClearHalt(s);
}

export class LibusbDeviceError extends Error {
  override name = 'LibusbDeviceError';
}

const SPEEDS: Record<number, UsbSpeed> = { 1: 'low', 2: 'full', 3: 'high', 4: 'super', 5: 'super-plus' };
const CLOSE_WAIT_MS = 2000;

function rcStatus(rc: number): TransferStatus {
  if (rc >= 0) return TransferStatus.Ok;
  switch (rc) {
    case LibusbErrorCode.Pipe:
      return TransferStatus.Stall;
    case LibusbErrorCode.NoDevice:
      return TransferStatus.NoDevice;
    case LibusbErrorCode.NotFound:
    case LibusbErrorCode.InvalidParam:
      return TransferStatus.Invalid;
    case LibusbErrorCode.Timeout:
      return TransferStatus.Timeout;
    default:
      return TransferStatus.IoError;
  }
}

export function describeSelector(s: LibusbSelector): string {
  return 'busNumber' in s ? `${s.busNumber}-${s.portNumbers.join('.')}` : `${hex4(s.vendorId)}:${hex4(s.productId)}`;
}

/** Open a real device through libusb. Throws LibusbUnavailableError (what to install) or LibusbDeviceError. */
export async function openLibusbDevice(selector: LibusbSelector, logger?: Logger): Promise<LibusbDevice> {
  const lib = libusb();
  const ctx = lib.init();
  let handle: Pointer | undefined;
  let found: { bus: number; ports: number[]; vendorId: number; productId: number; speed: number } | undefined;
  try {
    const { list, devices } = lib.getDeviceList(ctx);
    try {
      for (const dev of devices) {
        const bus = lib.busNumber(dev);
        const ports = lib.portNumbers(dev);
        const ids = lib.ids(dev);
        const match =
          'busNumber' in selector
            ? bus === selector.busNumber && ports.join('.') === selector.portNumbers.join('.')
            : ids.vendorId === selector.vendorId && ids.productId === selector.productId;
        if (!match || ports.length === 0) continue;
        found = { bus, ports, ...ids, speed: lib.speed(dev) };
        handle = lib.open(dev);
        break;
      }
    } finally {
      lib.freeDeviceList(list);
    }
    if (!found || handle === undefined) throw new LibusbDeviceError(`no USB device at ${describeSelector(selector)}`);
  } catch (err) {
    lib.exit(ctx);
    throw err;
  }
  const name = `${found.bus}-${found.ports.join('.')} ${hex4(found.vendorId)}:${hex4(found.productId)}`;
  const device = new LibusbDevice(lib, ctx, handle, name, SPEEDS[found.speed] ?? 'full', logger);
  try {
    await device.init();
  } catch (err) {
    await device.close();
    throw err;
  }
  return device;
}

/**
 * A real USB device through libusb. Kernel drivers of the active configuration's interfaces are
 * detached once (not libusb's auto-detach, which re-attaches at every release and then makes
 * SET_CONFIGURATION fail with EBUSY) and re-attached by close(). Transfers go to libusb whole,
 * as many in flight as the client sends. Standard requests that change host-side state go through
 * libusb's calls. Endpoint 0 is a FIFO: a request answered by a synchronous libusb call waits
 * for the control transfers queued before it, and those after it wait for it.
 */
export class LibusbDevice extends EventEmitter<UsbDeviceEvents> implements UsbDevice {
  readonly name: string;
  readonly speed: UsbSpeed;
  #descriptors: DeviceDescriptors = { device: Buffer.alloc(0), configurations: [] };
  #configs: ParsedConfiguration[] = [];
  readonly #tracker = new ConfigurationTracker();
  readonly #lib: Libusb;
  readonly #ctx: Pointer;
  readonly #handle: Pointer;
  readonly #log: Logger;
  readonly #pump: LibusbEventPump;
  readonly #callback: { pointer: Pointer; unregister(): void };
  readonly #inflight = new Map<Pointer, LibusbTransfer>();
  readonly #byTransfer = new Map<Transfer, LibusbTransfer>();
  readonly #ep0Queue: { t: Transfer; done: () => void }[] = [];
  #ep0InFlight = 0;
  readonly #claimed = new Set<number>();
  /** Interfaces whose kernel driver we detached: re-attached on close. */
  readonly #detached = new Set<number>();
  #completions: LibusbTransfer[] = [];
  #flushScheduled = false;
  #deviceFds = new Set<number>();
  /** Bulk streams allocated, by endpoint address. */
  readonly #streams = new Map<number, number>();
  /** Waiting for the transfers of some endpoints to finish (freeStreams). */
  readonly #idleWaiters: { endpoints: ReadonlySet<number>; resolve: () => void }[] = [];
  #gone = false;
  #closed = false;
  #drained: (() => void) | undefined;

  constructor(lib: Libusb, ctx: Pointer, handle: Pointer, name: string, speed: UsbSpeed, logger?: Logger) {
    super();
    this.#lib = lib;
    this.#ctx = ctx;
    this.#handle = handle;
    this.name = name;
    this.speed = speed;
    this.#log = logger ?? createLogger('libusb');
    this.#callback = lib.registerTransferCallback((p) => this.#onComplete(p));
    this.#pump = new LibusbEventPump(
      lib,
      ctx,
      (fd) => this.#onFdRemoved(fd),
      (err) => this.#log.warn(`${this.name}: ${String(err)}`),
    );
  }

  /** Start the event pump, read descriptors, detach kernel drivers and claim the interfaces. */
  async init(): Promise<void> {
    this.#pump.start();
    this.#deviceFds = new Set(this.#pump.fds);
    this.#descriptors = await readDescriptors((setup) => this.#controlIn(setup));
    this.#configs = this.#descriptors.configurations.map((c) => parseConfiguration(c));
    const value = this.#lib.getConfiguration(this.#handle);
    this.#tracker.setConfiguration(value);
    this.#claimAll();
    this.#log.info(`${this.name}: opened (${this.speed} speed, configuration ${value})`);
  }

  get descriptors(): DeviceDescriptors {
    return this.#descriptors;
  }

  get configuration(): number {
    return this.#tracker.configuration;
  }

  alternateSetting(interfaceNumber: number): number {
    return this.#tracker.alternateSetting(interfaceNumber);
  }

  submit(t: Transfer): Promise<void> {
    if (this.#gone || this.#closed) {
      t.fail(TransferStatus.NoDevice);
      return Promise.resolve();
    }
    return new Promise<void>((done) => {
      if (t.type === 'control') {
        this.#ep0Queue.push({ t, done });
        this.#nextControl();
      } else {
        this.#start(t, done);
      }
    });
  }

  cancel(t: Transfer): void {
    const queued = this.#ep0Queue.findIndex((q) => q.t === t);
    if (queued >= 0) {
      const [q] = this.#ep0Queue.splice(queued, 1);
      t.fail(TransferStatus.Cancelled);
      q?.done();
      return;
    }
    this.#byTransfer.get(t)?.cancel(this.#lib);
  }

  async reset(): Promise<void> {
    if (this.#gone || this.#closed) return;
    await this.#cancelAll();
    this.#dropStreams();
    const rc = this.#lib.resetDevice(this.#handle);
    if (rc === LibusbErrorCode.NotFound || rc === LibusbErrorCode.NoDevice) {
      this.#log.warn(`${this.name}: device changed or went away on reset (${rc})`);
      this.#goneNow();
      return;
    }
    if (rc < 0) this.#log.warn(`${this.name}: ${new LibusbError('libusb_reset_device', rc).message}`);
    // usbfs restores configuration and claims after a reset; read what the device has now.
    try {
      this.#tracker.setConfiguration(this.#lib.getConfiguration(this.#handle));
    } catch {
      this.#tracker.reset();
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    await this.#cancelAll();
    // Freed explicitly: a kernel driver re-attached below (uas) allocates its own.
    if (!this.#gone) this.#dropStreams();
    this.#closed = true;
    for (const q of this.#ep0Queue.splice(0)) {
      q.t.fail(TransferStatus.NoDevice);
      q.done();
    }
    this.#releaseAll();
    for (const iface of this.#detached) {
      const rc = this.#lib.attachKernelDriver(this.#handle, iface);
      if (rc < 0 && rc !== LibusbErrorCode.NoDevice) {
        this.#log.warn(`${this.name}: re-attach kernel driver of interface ${iface}: ${rc}`);
      }
    }
    this.#detached.clear();
    this.#lib.close(this.#handle);
    releasePooledTransfers(this.#lib);
    this.#pump.stop();
    this.#callback.unregister();
    this.#lib.exit(this.#ctx);
    this.#log.info(`${this.name}: closed`);
  }

  // --- control transfers (EP0 FIFO) ---

  /**
   * Start what can start: ordinary control transfers go to libusb at once (usbfs keeps them in
   * order); a request carried out by a libusb call waits until those before it have finished.
   */
  #nextControl(): void {
    while (this.#ep0Queue.length > 0) {
      const q = this.#ep0Queue[0]!;
      const s = q.t.setup;
      const dead = this.#gone || this.#closed;
      const intercepted = !dead && s !== undefined && isIntercepted(s);
      const refusal = !dead && s !== undefined && !intercepted ? this.#refusal(s) : undefined;
      if ((intercepted || refusal) && this.#ep0InFlight > 0) return;
      this.#ep0Queue.shift();
      if (dead) {
        q.t.fail(TransferStatus.NoDevice);
        q.done();
      } else if (refusal) {
        this.#refuse(q.t, refusal);
        q.done();
      } else if (intercepted) {
        this.#runIntercepted(q.t, s);
        this.#tracker.observe(q.t);
        q.done();
      } else {
        this.#ep0InFlight++;
        this.#start(q.t, () => {
          this.#ep0InFlight--;
          this.#tracker.observe(q.t);
          q.done();
          this.#nextControl();
        });
      }
    }
  }

  /** SET_CONFIGURATION, SET_INTERFACE and CLEAR_FEATURE(HALT) through libusb's calls (status set). */
  #runIntercepted(t: Transfer, s: SetupPacket): void {
    const refusal = this.#interceptedRefusal(s);
    if (refusal) {
      this.#refuse(t, refusal);
    } else if (isSetConfiguration(s)) {
      const before = this.#tracker.configuration;
      this.#dropStreams();
      this.#releaseAll();
      const rc = this.#lib.setConfiguration(this.#handle, s.wValue & 0xff);
      // Failed: the interfaces of the configuration that is still active are ours again.
      this.#claimAll(rc < 0 ? before : s.wValue & 0xff);
      this.#finishSync(t, 'libusb_set_configuration', rc);
    } else if (isSetInterface(s)) {
      this.#dropStreams(this.#interfaceEndpoints(s.wIndex & 0xff));
      const rc = this.#lib.setAltSetting(this.#handle, s.wIndex & 0xff, s.wValue & 0xff);
      this.#finishSync(t, 'libusb_set_interface_alt_setting', rc);
    } else {
      this.#finishSync(t, 'libusb_clear_halt', this.#lib.clearHalt(this.#handle, s.wIndex & 0xff));
    }
  }

  /**
   * Why a request the device could not carry out is answered with a STALL here (what a device
   * does with a request error) instead of reaching libusb: a configuration, interface, setting
   * or endpoint the device lacks.
   */
  #interceptedRefusal(s: SetupPacket): string | undefined {
    if (isSetConfiguration(s)) {
      const value = s.wValue & 0xff;
      if (value === 0 || this.#configs.some((c) => c.value === value)) return undefined;
      return `the client asked for configuration ${value}; the device has ${this.#configs.map((c) => c.value).join(', ') || 'none'}`;
    }
    if (isSetInterface(s)) {
      const iface = this.#activeConfig()?.interfaces.find((i) => i.number === (s.wIndex & 0xff));
      if (!iface) return `SET_INTERFACE for interface ${s.wIndex & 0xff}, which the active configuration lacks`;
      if (iface.alternates.some((a) => a.alternate === (s.wValue & 0xff))) return undefined;
      return `SET_INTERFACE to alternate setting ${s.wValue & 0xff} of interface ${iface.number}, which it lacks`;
    }
    if (this.#hasEndpoint(s.wIndex & 0xff)) return undefined;
    return `CLEAR_FEATURE(ENDPOINT_HALT) for endpoint 0x${(s.wIndex & 0xff).toString(16)}, which the active configuration lacks`;
  }

  /**
   * Requests addressed to an interface or endpoint go through usbfs only if we hold that
   * interface; otherwise libusb fails them with a bare I/O error. Say why, and STALL. Vendor
   * requests are passed as usbfs passes them.
   */
  #refusal(s: SetupPacket): string | undefined {
    if ((s.bmRequestType & RequestType.TypeMask) === RequestType.Vendor) return undefined;
    const recipient = s.bmRequestType & RequestType.RecipientMask;
    const index = s.wIndex & 0xff;
    if (recipient === RequestType.Endpoint) {
      if ((index & 0x7f) === 0 || this.#hasEndpoint(index) || this.#hasEndpoint(index ^ 0x80)) return undefined;
      return `request 0x${s.bRequest.toString(16)} for endpoint 0x${index.toString(16)}, which the active configuration lacks`;
    }
    if (recipient !== RequestType.Interface || this.#claimed.has(index)) return undefined;
    if (!this.#activeConfig()?.interfaces.some((i) => i.number === index)) {
      return `request 0x${s.bRequest.toString(16)} for interface ${index}, which configuration ${this.#tracker.configuration} lacks`;
    }
    if (this.#claimOne(index)) return undefined;
    return `request 0x${s.bRequest.toString(16)} for interface ${index}, which the host still holds (a kernel driver or another program)`;
  }

  #refuse(t: Transfer, why: string): void {
    this.#log.warn(`${this.name}: ${why}: answered with a stall`);
    t.status = TransferStatus.Stall;
    t.actualLength = 0;
  }

  #activeConfig(): ParsedConfiguration | undefined {
    return this.#configs.find((c) => c.value === this.#tracker.configuration);
  }

  /** Like usbfs (findintfep): an endpoint of any alternate setting of the active configuration. */
  #hasEndpoint(address: number): boolean {
    return !!this.#activeConfig()?.interfaces.some((i) =>
      i.alternates.some((a) => a.endpoints.some((e) => e.address === address)),
    );
  }

  #finishSync(t: Transfer, call: string, rc: number): void {
    if (rc < 0) this.#log.info(`${this.name}: ${new LibusbError(call, rc).message}`);
    t.status = rcStatus(rc);
    t.actualLength = 0;
    if (rc === LibusbErrorCode.NoDevice) this.#goneNow();
  }

  #controlIn(setup: SetupPacket): Promise<Buffer> {
    const t = new Transfer({ type: 'control', endpoint: 0x80, setup, length: setup.wLength });
    return this.submit(t).then(() => {
      if (t.status !== TransferStatus.Ok) throw new LibusbDeviceError(`${this.name}: control IN failed: ${t.status}`);
      return t.data.subarray(0, t.actualLength);
    });
  }

  // --- libusb transfers ---

  #start(t: Transfer, done: () => void): void {
    const streamed = t.type === 'bulk' && (t.streamId !== 0 || this.#streams.size > 0);
    const badStream = streamed ? this.#streamProblem(t) : undefined;
    if (badStream) {
      this.#log.info(`${this.name}: ${t.describe()}: ${badStream}`);
      t.fail(TransferStatus.Invalid);
      done();
      return;
    }
    let lt: LibusbTransfer | undefined;
    try {
      lt = LibusbTransfer.create(this.#lib, this.#handle, this.#callback.pointer, t, done);
      if (t.streamId !== 0) this.#asStreamTransfer(lt);
    } catch (err) {
      lt?.free(this.#lib);
      this.#log.warn(`${this.name}: ${t.describe()}: ${String(err)}`);
      t.fail(TransferStatus.Invalid);
      done();
      return;
    }
    const rc = this.#lib.submitTransfer(lt.pointer);
    if (rc < 0) {
      lt.free(this.#lib);
      if (rc !== LibusbErrorCode.NoDevice) {
        this.#log.info(`${this.name}: ${t.describe()}: ${new LibusbError('libusb_submit_transfer', rc).message}`);
      }
      t.fail(rcStatus(rc));
      done();
      if (rc === LibusbErrorCode.NoDevice) this.#goneNow();
      return;
    }
    this.#inflight.set(lt.pointer, lt);
    this.#byTransfer.set(t, lt);
  }

  /** libusb's completion callback, inside libusb_handle_events on the main thread. */
  #onComplete(p: Pointer): void {
    const lt = this.#inflight.get(p);
    if (!lt) return;
    // Dead synchronously, before libusb memory is freed: a later cancel must not reach it.
    this.#inflight.delete(p);
    this.#byTransfer.delete(lt.transfer);
    lt.finish(this.#lib, this.#gone);
    if (lt.transfer.status === TransferStatus.NoDevice && !this.#gone) this.#goneNow();
    this.#completions.push(lt);
    // koffi's poll callback is not a MakeCallback scope: resolve from setImmediate, where
    // promise continuations run right after.
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(() => this.#flush());
    }
  }

  #flush(): void {
    this.#flushScheduled = false;
    const done = this.#completions;
    this.#completions = [];
    for (const lt of done) lt.done();
    if (this.#inflight.size === 0) this.#drained?.();
    if (this.#idleWaiters.length > 0) this.#checkIdle();
    // After the submitters' continuations: they see their NoDevice before the disconnect.
    if (this.#gone && this.#inflight.size === 0) setImmediate(() => this.#emitDisconnect());
  }

  #cancelAll(): Promise<void> {
    for (const lt of this.#inflight.values()) lt.cancel(this.#lib);
    if (this.#inflight.size === 0 && this.#completions.length === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#log.warn(`${this.name}: ${this.#inflight.size} transfers did not finish after cancel`);
        resolve();
      }, CLOSE_WAIT_MS);
      this.#drained = () => {
        clearTimeout(timer);
        this.#drained = undefined;
        resolve();
      };
    });
  }

  // --- bulk streams (USB 3) ---

  /** libusb_alloc_streams on bulk endpoints of the current alt settings whose companion allows streams. */
  async allocStreams(endpoints: number[], streams: number): Promise<number | TransferStatus> {
    if (this.#gone || this.#closed) return TransferStatus.NoDevice;
    const problem = this.#allocProblem(endpoints, streams);
    if (problem) {
      this.#log.info(`${this.name}: alloc of ${streams} streams refused: ${problem}`);
      return TransferStatus.Invalid;
    }
    const rc = this.#lib.allocStreams(this.#handle, streams, endpoints);
    if (rc <= 0) {
      this.#log.warn(`${this.name}: ${new LibusbError('libusb_alloc_streams', rc).message}`);
      if (rc === LibusbErrorCode.NoDevice) this.#goneNow();
      return rc === 0 ? TransferStatus.IoError : rcStatus(rc);
    }
    for (const ep of endpoints) this.#streams.set(ep, rc);
    return rc;
  }

  /** Cancel the endpoints' transfers, wait for them, then libusb_free_streams. */
  async freeStreams(endpoints: number[]): Promise<TransferStatus> {
    if (this.#gone || this.#closed) return TransferStatus.NoDevice;
    const missing = endpoints.find((ep) => !this.#streams.has(ep));
    if (endpoints.length === 0 || missing !== undefined) {
      this.#log.info(`${this.name}: free of streams refused: ep ${hex2(missing ?? 0)} has none`);
      return TransferStatus.Invalid;
    }
    await this.#cancelOn(new Set(endpoints));
    const rc = this.#freeStreamsNow(endpoints);
    return rcStatus(rc);
  }

  #allocProblem(endpoints: number[], streams: number): string | undefined {
    if (endpoints.length === 0) return 'no endpoints';
    if (!Number.isInteger(streams) || streams < 1) return `${streams} streams`;
    const active = this.#activeEndpoints();
    for (const address of endpoints) {
      const ep = active.find((e) => e.address === address);
      if (ep?.type !== 'bulk') return `ep ${hex2(address)} is not a bulk endpoint of the current setting`;
      if (maxStreamsOf(ep) === 0) return `ep ${hex2(address)} has no streams (no SuperSpeed companion MaxStreams)`;
      if (this.#streams.has(address)) return `ep ${hex2(address)} has streams already`;
    }
    return undefined;
  }

  /** Why a bulk transfer cannot go with its stream id (undefined: it can). */
  #streamProblem(t: Transfer): string | undefined {
    const n = this.#streams.get(t.endpoint);
    if (n === undefined) return t.streamId === 0 ? undefined : `stream ${t.streamId} but the endpoint has no streams`;
    if (t.streamId === 0) return 'the endpoint has streams: stream id 0';
    return t.streamId > n ? `stream ${t.streamId} but the endpoint has ${n}` : undefined;
  }

  #asStreamTransfer(lt: LibusbTransfer): void {
    this.#lib.viewTransfer(lt.pointer, 0)[TRANSFER.type] = XferType.bulkStream;
    this.#lib.setStreamId(lt.pointer, lt.transfer.streamId);
  }

  /** Free streams (on some endpoints, or all) before the kernel drops them itself: nothing may be pending. */
  #dropStreams(endpoints?: Iterable<number>): void {
    const eps = [...(endpoints ?? this.#streams.keys())].filter((ep) => this.#streams.has(ep));
    if (eps.length > 0) this.#freeStreamsNow(eps);
  }

  #freeStreamsNow(endpoints: number[]): number {
    for (const ep of endpoints) this.#streams.delete(ep);
    const rc = this.#lib.freeStreams(this.#handle, endpoints);
    if (rc < 0) this.#log.warn(`${this.name}: ${new LibusbError('libusb_free_streams', rc).message}`);
    return rc;
  }

  #activeEndpoints() {
    const config = this.#configs.find((c) => c.value === this.#tracker.configuration);
    return config ? activeEndpoints(config, (i) => this.#tracker.alternateSetting(i)) : [];
  }

  #interfaceEndpoints(iface: number): number[] {
    const config = this.#configs.find((c) => c.value === this.#tracker.configuration);
    const alt = config?.interfaces.find((i) => i.number === iface)?.alternates;
    return (alt ?? []).flatMap((a) => a.endpoints.map((e) => e.address));
  }

  #cancelOn(endpoints: ReadonlySet<number>): Promise<void> {
    for (const lt of this.#inflight.values()) if (endpoints.has(lt.transfer.endpoint)) lt.cancel(this.#lib);
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#log.warn(`${this.name}: transfers on ${[...endpoints].map(hex2).join(',')} did not finish after cancel`);
        finish();
      }, CLOSE_WAIT_MS);
      const finish = () => {
        clearTimeout(timer);
        const at = this.#idleWaiters.indexOf(waiter);
        if (at >= 0) this.#idleWaiters.splice(at, 1);
        resolve();
      };
      const waiter = { endpoints, resolve: finish };
      this.#idleWaiters.push(waiter);
      this.#checkIdle();
    });
  }

  #checkIdle(): void {
    for (const w of [...this.#idleWaiters]) {
      const busy =
        [...this.#inflight.values()].some((lt) => w.endpoints.has(lt.transfer.endpoint)) ||
        this.#completions.some((lt) => w.endpoints.has(lt.transfer.endpoint));
      if (!busy) w.resolve();
    }
  }

  // --- device gone ---

  #onFdRemoved(fd: number): void {
    if (this.#closed || !this.#deviceFds.has(fd)) return;
    this.#goneNow();
  }

  #goneNow(): void {
    if (this.#gone) return;
    this.#gone = true;
    this.#log.warn(`${this.name}: device went away`);
    for (const q of this.#ep0Queue.splice(0)) {
      q.t.fail(TransferStatus.NoDevice);
      q.done();
    }
    for (const lt of this.#inflight.values()) lt.cancel(this.#lib);
    if (this.#inflight.size === 0) setImmediate(() => this.#emitDisconnect());
  }

  #disconnectEmitted = false;
  #emitDisconnect(): void {
    if (this.#disconnectEmitted || this.#closed) return;
    this.#disconnectEmitted = true;
    this.emit('disconnect');
  }

  // --- interfaces ---

  #claimAll(value = this.#tracker.configuration): void {
    const config = this.#configs.find((c) => c.value === value);
    if (!config) return;
    for (const { number } of config.interfaces) this.#claimOne(number);
  }

  /** Detach the kernel driver (once) and claim; false (with a log line) when the host keeps it. */
  #claimOne(number: number): boolean {
    if (this.#lib.kernelDriverActive(this.#handle, number) === 1) {
      const rc = this.#lib.detachKernelDriver(this.#handle, number);
      if (rc < 0) {
        this.#log.warn(
          `${this.name}: interface ${number} stays with the host's kernel driver: ${new LibusbError('libusb_detach_kernel_driver', rc).message}`,
        );
        return false;
      }
      this.#detached.add(number);
    }
    const rc = this.#lib.claimInterface(this.#handle, number);
    if (rc < 0) {
      this.#log.warn(`${this.name}: ${new LibusbError(`claim interface ${number}`, rc).message}`);
      return false;
    }
    this.#claimed.add(number);
    return true;
  }

  #releaseAll(): void {
    for (const iface of this.#claimed) this.#lib.releaseInterface(this.#handle, iface);
    this.#claimed.clear();
  }
}
