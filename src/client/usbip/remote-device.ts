import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { MAX_ISO_PACKETS, OpStatus, UrbFlag, USBIP_DIR_IN, USBIP_DIR_OUT } from '../../protocol/usbip/constants.js';
import { UsbipProtocolError } from '../../protocol/usbip/errors.js';
import { encodeReqImport, type UsbipDeviceInfo } from '../../protocol/usbip/op.js';
import { type RequestShape, type UsbipPacket, UsbipParser } from '../../protocol/usbip/parser.js';
import { errnoToStatus, speedFromLinux } from '../../protocol/usbip/status.js';
import { encodeCmdSubmit, encodeCmdUnlink, type RetSubmit, type RetUnlink } from '../../protocol/usbip/urb.js';
import { PduWriter } from '../../transport/pdu-writer.js';
import { DescriptorType, parseDeviceDescriptor } from '../../usb/descriptors.js';
import type { DeviceDescriptors, UsbDevice, UsbDeviceEvents } from '../../usb/device.js';
import { RequestType, type SetupPacket, StandardRequest } from '../../usb/setup.js';
import type { UsbSpeed } from '../../usb/speed.js';
import { TransferStatus } from '../../usb/status.js';
import { Transfer } from '../../usb/transfer.js';
import type { Logger } from '../../util/log.js';

interface Pending {
  seqnum: number;
  transfer: Transfer;
  resolve: () => void;
  /** Seqnum of our CMD_UNLINK for it, once cancel was asked. */
  unlinkSeqnum: number | undefined;
}

export interface RemoteDeviceOptions {
  maxTransferLength: number | undefined;
  timeoutMs: number;
  logger: Logger;
}

const OP_STATUS_TEXT: Record<number, string> = {
  [OpStatus.NotAvailable]: 'not available',
  [OpStatus.DevBusy]: 'device busy (imported by someone else)',
  [OpStatus.DevError]: 'device error',
  [OpStatus.NoDev]: 'no such device',
  [OpStatus.Error]: 'error',
};

const USB_RT_PORT = 0x23;
const USB_PORT_FEAT_RESET = 4;

/**
 * A device imported from a USB/IP server, usable like any local UsbDevice. Each transfer is a
 * CMD_SUBMIT with its own seqnum; cancel sends CMD_UNLINK and whichever reply comes first
 * (RET_SUBMIT or RET_UNLINK) completes the transfer, exactly once.
 */
export class RemoteUsbipDevice extends EventEmitter<UsbDeviceEvents> implements UsbDevice {
  readonly busid: string;
  #name: string;
  #speed: UsbSpeed = 'full';
  #descriptors: DeviceDescriptors = { device: Buffer.alloc(0), configurations: [] };
  #configuration = 0;
  readonly #alternates = new Map<number, number>();
  readonly #socket: Socket;
  readonly #writer: PduWriter;
  readonly #parser: UsbipParser;
  readonly #options: RemoteDeviceOptions;
  readonly #log: Logger;
  readonly #pending = new Map<number, Pending>();
  readonly #seqnumOf = new Map<Transfer, number>();
  /** Our CMD_UNLINK seqnum → target seqnum, until its RET_UNLINK arrives. */
  readonly #unlinks = new Map<number, number>();
  #nextSeqnum = 1;
  #devid = 0;
  #info: UsbipDeviceInfo | undefined;
  #attached = false;
  #closed = false;
  #importReply: ((p: UsbipPacket | Error) => void) | undefined;
  readonly #closedPromise: Promise<void>;

  constructor(socket: Socket, name: string, busid: string, options: RemoteDeviceOptions) {
    super();
    this.#socket = socket;
    this.#name = name;
    this.busid = busid;
    this.#options = options;
    this.#log = options.logger;
    this.#writer = new PduWriter(socket);
    this.#parser = new UsbipParser(
      { role: 'client', maxTransferLength: options.maxTransferLength, lookupRequest: (s) => this.#shapeOf(s) },
      (p) => this.#onPacket(p),
    );
    socket.on('data', (chunk: Buffer) => {
      try {
        this.#parser.push(chunk);
      } catch (err) {
        const why = err instanceof UsbipProtocolError ? `${err.reason}: ${err.message}` : String(err);
        this.#log.warn(`${this.#name}: closing: ${why}`);
        this.#importReply?.(err as Error);
        socket.destroy();
      }
    });
    socket.on('error', (err) => this.#log.debug(`${this.#name}: socket error: ${err.message}`));
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
    return this.#configuration;
  }
  /** The usbip_usb_device the server sent with the import reply. */
  get info(): UsbipDeviceInfo | undefined {
    return this.#info;
  }
  get inFlight(): number {
    return this.#pending.size;
  }

  alternateSetting(interfaceNumber: number): number {
    return this.#alternates.get(interfaceNumber) ?? 0;
  }

  /** OP_REQ_IMPORT, then the descriptors and current configuration over EP0. Closes the socket on failure. */
  async attach(): Promise<void> {
    try {
      const reply = await this.#requestImport();
      this.#info = reply;
      this.#devid = ((reply.busnum << 16) | reply.devnum) >>> 0;
      this.#speed = speedFromLinux(reply.speed);
      this.#configuration = reply.bConfigurationValue;
      this.#attached = true;
      this.#parser.startUrbPhase();
      await this.#readDescriptors();
      const vidpid = `${hex4(reply.idVendor)}:${hex4(reply.idProduct)}`;
      this.#name = `${this.#name} ${vidpid}`;
    } catch (err) {
      this.#socket.destroy();
      throw err;
    }
  }

  #requestImport(): Promise<UsbipDeviceInfo> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => done(new Error(`no import reply within ${this.#options.timeoutMs} ms`)),
        this.#options.timeoutMs,
      );
      const done = (p: UsbipPacket | Error) => {
        clearTimeout(timer);
        this.#importReply = undefined;
        if (p instanceof Error) return reject(p);
        if (p.kind !== 'op-rep-import') return reject(new Error(`unexpected ${p.kind} during import`));
        if (p.status !== 0 || !p.device) {
          const text = OP_STATUS_TEXT[p.status] ?? `status ${p.status}`;
          return reject(new Error(`import of ${this.busid} refused: ${text}`));
        }
        if (p.device.busid !== this.busid) {
          return reject(new Error(`import reply is for busid "${p.device.busid}", asked for "${this.busid}"`));
        }
        resolve(p.device);
      };
      this.#importReply = done;
      this.#writer.write(encodeReqImport(this.busid));
    });
  }

  async #readDescriptors(): Promise<void> {
    const device = await this.#getDescriptor(DescriptorType.Device, 0, 18);
    const parsed = parseDeviceDescriptor(device);
    const configurations: Buffer[] = [];
    for (let i = 0; i < parsed.numConfigurations; i++) {
      const head = await this.#getDescriptor(DescriptorType.Configuration, i, 9);
      if (head.length < 4) throw new Error(`configuration ${i}: short descriptor (${head.length} bytes)`);
      const total = head.readUInt16LE(2);
      configurations.push(
        total <= head.length ? head : await this.#getDescriptor(DescriptorType.Configuration, i, total),
      );
    }
    this.#descriptors = { device, configurations };
    const current = await this.#controlIn({
      bmRequestType: RequestType.DirIn,
      bRequest: StandardRequest.GetConfiguration,
      wValue: 0,
      wIndex: 0,
      wLength: 1,
    }).catch(() => undefined);
    if (current?.length === 1) this.#configuration = current[0]!;
  }

  #getDescriptor(type: number, index: number, length: number): Promise<Buffer> {
    return this.#controlIn({
      bmRequestType: RequestType.DirIn,
      bRequest: StandardRequest.GetDescriptor,
      wValue: (type << 8) | index,
      wIndex: 0,
      wLength: length,
    });
  }

  async #controlIn(setup: SetupPacket): Promise<Buffer> {
    const t = new Transfer({ type: 'control', endpoint: 0x80, setup, length: setup.wLength });
    const timer = setTimeout(() => this.cancel(t), this.#options.timeoutMs);
    await this.submit(t);
    clearTimeout(timer);
    if (t.status !== TransferStatus.Ok) {
      throw new Error(`control ${setup.bRequest.toString(16)} wValue 0x${hex4(setup.wValue)} failed: ${t.status}`);
    }
    return t.data.subarray(0, t.actualLength);
  }

  submit(t: Transfer): Promise<void> {
    if (this.#closed || !this.#attached) {
      t.fail(TransferStatus.NoDevice);
      return Promise.resolve();
    }
    const invalid = this.#validate(t);
    if (invalid) {
      this.#log.debug(`${this.#name}: ${t.describe()} rejected: ${invalid}`);
      t.fail(TransferStatus.Invalid);
      return Promise.resolve();
    }
    const seqnum = this.#allocSeqnum();
    const iso = t.isoPackets;
    let flags = t.isIn ? UrbFlag.DirIn : 0;
    if (t.flags.shortNotOk) flags |= UrbFlag.ShortNotOk;
    if (t.flags.zeroPacket) flags |= UrbFlag.ZeroPacket;
    if (iso) flags |= UrbFlag.IsoAsap;
    this.#writer.write(
      encodeCmdSubmit({
        seqnum,
        devid: this.#devid,
        direction: t.isIn ? USBIP_DIR_IN : USBIP_DIR_OUT,
        ep: t.endpointNumber,
        transferFlags: flags,
        transferBufferLength: t.length,
        startFrame: 0,
        numberOfPackets: iso ? iso.length : 0,
        interval: t.interval,
        setup: t.setup,
        data: t.isIn ? undefined : t.data.subarray(0, t.length),
        isoPackets: iso?.map((p) => ({ offset: p.offset, length: p.length, actualLength: 0, status: 0 })),
      }),
    );
    return new Promise((resolve) => {
      this.#pending.set(seqnum, { seqnum, transfer: t, resolve, unlinkSeqnum: undefined });
      this.#seqnumOf.set(t, seqnum);
    });
  }

  #validate(t: Transfer): string | undefined {
    const max = this.#options.maxTransferLength;
    if (t.length < 0 || (max !== undefined && t.length > max)) return `length ${t.length} out of range`;
    if (!t.isIn && t.data.length < t.length) return `OUT data has ${t.data.length} bytes, length is ${t.length}`;
    if (t.type === 'control' && !t.setup) return 'control transfer without setup packet';
    const iso = t.isoPackets;
    if (t.type === 'isochronous') {
      if (!iso || iso.length === 0 || iso.length > MAX_ISO_PACKETS) return `${iso?.length ?? 0} ISO packets`;
      if (iso.some((p) => p.offset + p.length > t.length)) return 'ISO packet beyond the buffer';
    } else if (iso) return 'ISO packets on a non-isochronous transfer';
    return undefined;
  }

  cancel(t: Transfer): void {
    const seqnum = this.#seqnumOf.get(t);
    if (seqnum === undefined || this.#closed) return;
    const p = this.#pending.get(seqnum)!;
    if (p.unlinkSeqnum !== undefined) return;
    p.unlinkSeqnum = this.#allocSeqnum();
    this.#unlinks.set(p.unlinkSeqnum, seqnum);
    this.#writer.write(
      encodeCmdUnlink({ seqnum: p.unlinkSeqnum, devid: this.#devid, direction: 0, ep: 0, unlinkSeqnum: seqnum }),
    );
  }

  /** Port reset through the server (Linux usbip-host and usbwire honour it), then re-read the configuration. */
  async reset(): Promise<void> {
    for (const p of [...this.#pending.values()]) this.cancel(p.transfer);
    const t = new Transfer({
      type: 'control',
      endpoint: 0,
      setup: {
        bmRequestType: USB_RT_PORT,
        bRequest: StandardRequest.SetFeature,
        wValue: USB_PORT_FEAT_RESET,
        wIndex: 0,
        wLength: 0,
      },
    });
    await this.submit(t);
    this.#alternates.clear();
    const current = await this.#controlIn({
      bmRequestType: RequestType.DirIn,
      bRequest: StandardRequest.GetConfiguration,
      wValue: 0,
      wIndex: 0,
      wLength: 1,
    }).catch(() => undefined);
    this.#configuration = current?.length === 1 ? current[0]! : 0;
  }

  /** Close the connection (the server releases the device); pending transfers complete with NoDevice. */
  close(): Promise<void> {
    this.#socket.destroy();
    return this.#closedPromise;
  }

  #allocSeqnum(): number {
    let s = this.#nextSeqnum;
    // Skip 0 and anything still in use after a 32-bit wrap.
    while (s === 0 || this.#pending.has(s) || this.#unlinks.has(s)) s = (s + 1) >>> 0;
    this.#nextSeqnum = (s + 1) >>> 0;
    return s;
  }

  #shapeOf(seqnum: number): RequestShape | undefined {
    const p = this.#pending.get(seqnum);
    if (!p) return undefined;
    const t = p.transfer;
    return { in: t.isIn, length: t.length, isoPackets: t.type === 'isochronous' ? (t.isoPackets?.length ?? 0) : 0 };
  }

  #onPacket(p: UsbipPacket): void {
    switch (p.kind) {
      case 'op-rep-import':
        this.#importReply?.(p);
        return;
      case 'ret-submit':
        this.#onRetSubmit(p);
        return;
      case 'ret-unlink':
        this.#onRetUnlink(p);
        return;
      default:
        throw new UsbipProtocolError('unexpected-packet', `${p.kind} received by a client`);
    }
  }

  #onRetSubmit(r: RetSubmit): void {
    // The parser only passes RET_SUBMITs whose seqnum is pending.
    const p = this.#pending.get(r.seqnum)!;
    const t = p.transfer;
    t.status = errnoToStatus(r.status);
    t.actualLength = r.actualLength;
    if (t.isoPackets && r.isoPackets) {
      let packed = 0;
      const spread = t.isIn ? Buffer.alloc(t.length) : undefined;
      for (let i = 0; i < t.isoPackets.length; i++) {
        const mine = t.isoPackets[i]!;
        const theirs = r.isoPackets[i]!;
        mine.actualLength = theirs.actualLength;
        mine.status = errnoToStatus(theirs.status);
        if (spread) {
          r.data.copy(spread, mine.offset, packed, packed + theirs.actualLength);
          packed += theirs.actualLength;
        }
      }
      if (spread) t.data = spread;
    } else if (t.isIn) {
      t.data = r.data;
    }
    if (t.status === TransferStatus.Ok) this.#trackStandardRequest(t);
    this.#finish(p);
  }

  #onRetUnlink(r: RetUnlink): void {
    const target = this.#unlinks.get(r.seqnum);
    if (target === undefined) {
      this.#log.debug(`${this.#name}: RET_UNLINK for unknown unlink seqnum ${r.seqnum}`);
      return;
    }
    this.#unlinks.delete(r.seqnum);
    const p = this.#pending.get(target);
    if (!p) return; // RET_SUBMIT came first and completed it.
    // Status 0 here means it finished while being unlinked and the server dropped the result.
    const status = r.status === 0 ? TransferStatus.Cancelled : errnoToStatus(r.status);
    p.transfer.fail(status);
    this.#finish(p);
  }

  #finish(p: Pending): void {
    this.#pending.delete(p.seqnum);
    this.#seqnumOf.delete(p.transfer);
    // The unlink entry, if any, stays until its RET_UNLINK arrives (so that reply is recognised).
    p.resolve();
  }

  #trackStandardRequest(t: Transfer): void {
    const s = t.setup;
    if (!s || t.type !== 'control') return;
    if (s.bmRequestType === 0x00 && s.bRequest === StandardRequest.SetConfiguration) {
      this.#configuration = s.wValue & 0xff;
      this.#alternates.clear();
    } else if (s.bmRequestType === RequestType.Interface && s.bRequest === StandardRequest.SetInterface) {
      this.#alternates.set(s.wIndex & 0xff, s.wValue);
    }
  }

  #teardown(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#importReply?.(new Error('connection closed'));
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    this.#seqnumOf.clear();
    this.#unlinks.clear();
    for (const p of pending) {
      p.transfer.fail(TransferStatus.NoDevice);
      p.resolve();
    }
    if (this.#attached) {
      this.#log.info(`${this.#name}: disconnected`);
      this.emit('disconnect');
    }
  }
}

function hex4(n: number): string {
  return n.toString(16).padStart(4, '0');
}
