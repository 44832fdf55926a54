import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { DEFAULT_MAX_TRANSFER_LENGTH, OpStatus } from '../../protocol/usbip/constants.js';
import { UsbipProtocolError } from '../../protocol/usbip/errors.js';
import { encodeReqImport, type UsbipDeviceInfo } from '../../protocol/usbip/op.js';
import { type OpRepImport, type UsbipPacket, UsbipParser } from '../../protocol/usbip/parser.js';
import { speedFromLinux } from '../../protocol/usbip/status.js';
import type { ConnectSecurity } from '../../transport/credentials.js';
import { PduWriter } from '../../transport/pdu-writer.js';
import { connectSecure } from '../../transport/secure.js';
import { activeEndpoints, type ParsedConfiguration, parseConfiguration } from '../../usb/descriptors.js';
import type { DeviceDescriptors, UsbDevice, UsbDeviceEvents } from '../../usb/device.js';
import { ConfigurationTracker, readConfigurationValue, readDescriptors } from '../../usb/device-state.js';
import { RequestType, type SetupPacket, StandardRequest } from '../../usb/setup.js';
import type { UsbSpeed } from '../../usb/speed.js';
import { TransferStatus } from '../../usb/status.js';
import { Transfer } from '../../usb/transfer.js';
import { hex4 } from '../../util/hex.js';
import { formatHostPort, type HostPort } from '../../util/host-port.js';
import { createLogger, type Logger } from '../../util/log.js';
import { linuxInterval } from './interval.js';
import { ClientUrbSession } from './urb-session.js';

export interface RemoteDeviceOptions {
  /** Connect, import reply + descriptor read, and CMD_UNLINK answer timeout (default 10 s). */
  timeoutMs?: number;
  /** Largest transfer accepted in either direction (default: the codec's 32 MiB). */
  maxTransferLength?: number;
  logger?: Logger;
  /** Aborts an import in progress (the connection is closed, the import rejects). */
  signal?: AbortSignal;
  /** TLS to the server (usbip+tls://); plain TCP without. */
  security?: ConnectSecurity | undefined;
}

/** Why an import failed, in one line (refused, busy, unreachable, bad reply, timeout). */
export class UsbipImportError extends Error {
  override name = 'UsbipImportError';
}

const OP_STATUS_TEXT: Record<number, string> = {
  [OpStatus.NotAvailable]: 'not available',
  [OpStatus.DevBusy]: 'device busy (imported by someone else)',
  [OpStatus.DevError]: 'device error',
  [OpStatus.NoDev]: 'no such device',
  [OpStatus.Error]: 'error',
};

/** Port reset as vhci-hcd sends it; usbip-host (stub_rx.c) and usbwire's server reset the device on it. */
const PORT_RESET: SetupPacket = Object.freeze({
  bmRequestType: 0x23,
  bRequest: StandardRequest.SetFeature,
  wValue: 4,
  wIndex: 0,
  wLength: 0,
});

type CloseLevel = 'info' | 'warn';

/**
 * A device imported from a USB/IP server (the kernel's usbipd, usbwire, ...), usable like any
 * local UsbDevice. This is the op phase, the mirror of the server's connection.ts: one
 * OP_REQ_IMPORT on a fresh connection, then the URB phase (urb-session.ts) for as long as the
 * connection lives. Descriptors are read over EP0 before the device is handed out; configuration
 * and alternate settings follow the SET_CONFIGURATION / SET_INTERFACE requests that succeed (the
 * server's stub carries them out). The connection closing for any reason is a disconnect:
 * pending transfers finish with NoDevice, then `disconnect` is emitted once.
 */
export class RemoteUsbipDevice extends EventEmitter<UsbDeviceEvents> implements UsbDevice {
  readonly busid: string;
  readonly #where: string;
  #name: string;
  #speed: UsbSpeed = 'full';
  #descriptors: DeviceDescriptors = { device: Buffer.alloc(0), configurations: [] };
  #configurations: ParsedConfiguration[] = [];
  #tracker = new ConfigurationTracker();
  readonly #socket: Socket;
  readonly #writer: PduWriter;
  readonly #parser: UsbipParser;
  readonly #timeoutMs: number;
  readonly #maxTransferLength: number;
  readonly #log: Logger;
  #session: ClientUrbSession | undefined;
  #info: UsbipDeviceInfo | undefined;
  #importReply: ((p: OpRepImport) => void) | undefined;
  /** Handed out: descriptors read. Only a ready device emits `disconnect`. */
  #ready = false;
  #closed = false;
  #closeReason: { why: string; level: CloseLevel } | undefined;
  readonly #closedPromise: Promise<void>;

  /** Connect, OP_REQ_IMPORT, read the descriptors. Rejects with a UsbipImportError saying why. */
  static async import(address: HostPort, busid: string, options: RemoteDeviceOptions = {}): Promise<RemoteUsbipDevice> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    const where = formatHostPort(address);
    const socket = await abortable(connectSecure(address, options.security, timeoutMs), options.signal).catch(
      (err: Error) => {
        throw new UsbipImportError(err.message);
      },
    );
    if (!socket) throw new UsbipImportError(`import of ${busid} from ${where}: aborted`);
    const device = new RemoteUsbipDevice(socket, address, busid, options);
    await device.#attach(options.signal);
    return device;
  }

  private constructor(socket: Socket, address: HostPort, busid: string, options: RemoteDeviceOptions) {
    super();
    this.#socket = socket;
    this.busid = busid;
    this.#where = formatHostPort(address);
    this.#name = `usbip://${this.#where}/${busid}`;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#maxTransferLength = options.maxTransferLength ?? DEFAULT_MAX_TRANSFER_LENGTH;
    this.#log = options.logger ?? createLogger('usbip-client');
    // Never stop reading the server because our own requests queue up: it may be waiting for us
    // to read its replies. What we queue is bounded by the session's in-flight caps.
    this.#writer = new PduWriter(socket, () => {});
    this.#parser = new UsbipParser(
      {
        role: 'client',
        maxTransferLength: this.#maxTransferLength,
        lookupRequest: (s) => this.#session?.lookup(s),
      },
      (p) => this.#onPacket(p),
    );
    socket.on('data', (chunk: Buffer) => {
      try {
        this.#parser.push(chunk);
      } catch (err) {
        this.#fail(describeError(err), 'warn');
      }
    });
    socket.on('end', () => {
      try {
        this.#parser.end();
        this.#fail('server closed the connection', 'warn');
      } catch (err) {
        this.#fail(`server closed the connection: ${describeError(err)}`, 'warn');
      }
    });
    socket.on('error', (err) => this.#fail(`connection error: ${err.message}`, 'warn'));
    this.#closedPromise = new Promise((resolve) => socket.once('close', () => resolve(this.#teardown())));
  }

  get name(): string {
    return this.#name;
  }
  get speed(): UsbSpeed {
    return this.#speed;
  }
  get descriptors(): DeviceDescriptors {
    return this.#descriptors;
  }
  get configuration(): number {
    return this.#tracker.configuration;
  }
  /** The usbip_usb_device the server sent with the import reply. */
  get info(): UsbipDeviceInfo | undefined {
    return this.#info;
  }
  get inFlight(): number {
    return this.#session?.inFlight ?? 0;
  }
  /** False once the connection is gone. */
  get connected(): boolean {
    return !this.#closed;
  }

  alternateSetting(interfaceNumber: number): number {
    return this.#tracker.alternateSetting(interfaceNumber);
  }

  /** OP_REQ_IMPORT, then descriptors, configuration and alternate settings over EP0. */
  async #attach(signal: AbortSignal | undefined): Promise<void> {
    let stage = 'import reply';
    const deadline = setTimeout(() => this.#fail(`no ${stage} within ${this.#timeoutMs} ms`, 'warn'), this.#timeoutMs);
    const abort = () => this.#fail('import aborted', 'info');
    signal?.addEventListener('abort', abort);
    try {
      const info = await this.#requestImport();
      stage = 'descriptors';
      this.#info = info;
      this.#speed = speedFromLinux(info.speed);
      this.#session = new ClientUrbSession({
        devid: ((info.busnum << 16) | info.devnum) >>> 0,
        writer: this.#writer,
        log: this.#log.child(`${this.#where}/${this.busid}`),
        maxTransferLength: this.#maxTransferLength,
        unlinkTimeoutMs: this.#timeoutMs,
        onComplete: (t) => this.#tracker.observe(t),
      });
      this.#parser.startUrbPhase();
      this.#descriptors = await readDescriptors((s) => this.#controlIn(s));
      this.#configurations = this.#descriptors.configurations.map((c) => parseConfiguration(c));
      await this.#readState(info.bConfigurationValue);
      this.#name = `${this.#name} ${hex4(info.idVendor)}:${hex4(info.idProduct)}`;
      if (this.#closed) throw new Error('connection closed');
      this.#ready = true;
    } catch (err) {
      this.#fail(describeError(err), 'warn');
      const why = this.#closeReason?.why ?? describeError(err);
      throw new UsbipImportError(`import of ${this.busid} from ${this.#where}: ${why}`);
    } finally {
      clearTimeout(deadline);
      signal?.removeEventListener('abort', abort);
    }
  }

  #requestImport(): Promise<UsbipDeviceInfo> {
    return new Promise((resolve, reject) => {
      this.#importReply = (p) => {
        this.#importReply = undefined;
        if (p.status !== 0 || !p.device) {
          return reject(new Error(`refused: ${OP_STATUS_TEXT[p.status] ?? `status ${p.status}`}`));
        }
        if (p.device.busid !== this.busid) {
          return reject(new Error(`reply is for busid "${p.device.busid}", asked for "${this.busid}"`));
        }
        resolve(p.device);
      };
      this.#closedPromise.then(() => reject(new Error(this.#closeReason?.why ?? 'connection closed')));
      this.#writer.write(encodeReqImport(this.busid));
    });
  }

  /** Current configuration (GET_CONFIGURATION, else what the import reply said) and alternate settings. */
  async #readState(fallbackConfiguration: number): Promise<void> {
    const control = (s: SetupPacket) => this.#controlIn(s);
    const value = (await readConfigurationValue(control)) ?? fallbackConfiguration;
    const tracker = new ConfigurationTracker(value);
    const config = this.#configurations.find((c) => c.value === value && value !== 0);
    // Only interfaces with several settings can be elsewhere than 0; many devices stall GET_INTERFACE.
    for (const iface of config?.interfaces ?? []) {
      if (iface.alternates.length < 2) continue;
      const alt = await control({
        bmRequestType: RequestType.DirIn | RequestType.Interface,
        bRequest: StandardRequest.GetInterface,
        wValue: 0,
        wIndex: iface.number,
        wLength: 1,
      }).catch(() => undefined);
      if (alt?.length === 1) tracker.setAlternate(iface.number, alt[0]!);
    }
    this.#tracker = tracker;
  }

  async #controlIn(setup: SetupPacket): Promise<Buffer> {
    const t = new Transfer({ type: 'control', endpoint: 0x80, setup, length: setup.wLength });
    await this.#submitBounded(t);
    if (t.status !== TransferStatus.Ok) {
      throw new Error(`control request 0x${setup.bRequest.toString(16)} wValue 0x${hex4(setup.wValue)}: ${t.status}`);
    }
    return t.data.subarray(0, t.actualLength);
  }

  /** Our own requests: cancelled if the server leaves them unanswered (the unlink timeout bounds the rest). */
  async #submitBounded(t: Transfer): Promise<void> {
    const timer = setTimeout(() => this.cancel(t), this.#timeoutMs);
    await this.submit(t);
    clearTimeout(timer);
  }

  submit(t: Transfer): Promise<void> {
    if (!this.#session || this.#closed) {
      t.fail(TransferStatus.NoDevice);
      return Promise.resolve();
    }
    let interval = t.interval;
    if ((t.type === 'interrupt' || t.type === 'isochronous') && !(t.interval > 0)) {
      const ep = this.#endpoint(t.endpoint);
      if (ep) interval = linuxInterval(ep, this.#speed);
    }
    return this.#session.submit(t, interval);
  }

  /** The endpoint in the active configuration and alternate settings, as the server's stub sees it. */
  #endpoint(address: number) {
    const config = this.#configurations.find((c) => c.value === this.#tracker.configuration);
    if (!config) return undefined;
    return activeEndpoints(config, (i) => this.#tracker.alternateSetting(i)).find((e) => e.address === address);
  }

  cancel(t: Transfer): void {
    this.#session?.cancel(t);
  }

  /** Port reset through the server (usbip-host and usbwire honour it), then read the state again. */
  async reset(): Promise<void> {
    if (!this.#session || this.#closed) return;
    this.#session.cancelAll();
    await this.#submitBounded(new Transfer({ type: 'control', endpoint: 0, setup: PORT_RESET }));
    // usbip-host's usb_reset_device restores the configuration; usbwire's server unconfigures.
    this.#tracker.reset();
    await this.#readState(0);
  }

  /** Close the connection (the server releases the device); pending transfers complete with NoDevice. */
  close(): Promise<void> {
    this.#fail('closed', 'info');
    return this.#closedPromise;
  }

  #onPacket(p: UsbipPacket): void {
    switch (p.kind) {
      case 'op-rep-import':
        if (!this.#importReply) throw new UsbipProtocolError('unexpected-packet', 'import reply not asked for');
        this.#importReply(p);
        return;
      case 'ret-submit':
      case 'ret-unlink':
        // The parser yields these only after startUrbPhase, i.e. with a session.
        this.#session!.handle(p);
        return;
      default:
        throw new UsbipProtocolError('unexpected-packet', `${p.kind} received by a client`);
    }
  }

  /** Close the connection; the first reason given is the one logged. */
  #fail(why: string, level: CloseLevel): void {
    this.#closeReason ??= { why, level };
    this.#socket.destroy();
  }

  #teardown(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#session?.close(TransferStatus.NoDevice);
    if (!this.#ready) return; // The import's rejection carries the reason.
    const { why, level } = this.#closeReason ?? { why: 'connection closed', level: 'warn' as const };
    this.#log[level](`${this.#name}: disconnected: ${why}`);
    try {
      this.emit('disconnect');
    } catch (err) {
      this.#log.error(`${this.#name}: a disconnect listener threw: ${String(err)}`);
    }
  }
}

/** The connection, or undefined if aborted first (a connection made later is closed). */
function abortable(connecting: Promise<Socket>, signal: AbortSignal | undefined): Promise<Socket | undefined> {
  if (!signal) return connecting;
  if (signal.aborted) {
    connecting.then(
      (s) => s.destroy(),
      () => {},
    );
    return Promise.resolve(undefined);
  }
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      connecting.then(
        (s) => s.destroy(),
        () => {},
      );
      resolve(undefined);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    connecting.then(
      (s) => {
        signal.removeEventListener('abort', onAbort);
        if (signal.aborted) s.destroy();
        resolve(signal.aborted ? undefined : s);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

function describeError(err: unknown): string {
  if (err instanceof UsbipProtocolError) return `protocol error: ${err.reason}: ${err.message}`;
  return err instanceof Error ? err.message : String(err);
}
