import type { ControlResult, EndpointSpec, FunctionHost, InterfaceSpec, UsbFunction } from '../../usb/function.js';
import type { SetupPacket } from '../../usb/setup.js';
import { bulkMaxPacket, isoIntervalMs, isSuperSpeed, type UsbSpeed } from '../../usb/speed.js';
import { TransferStatus } from '../../usb/status.js';
import type { Transfer } from '../../usb/transfer.js';
import { createLogger } from '../../util/log.js';
import { IsoPacer } from './iso-pacer.js';
import { fillPattern, type GadgetZeroPattern, PatternSource } from './pattern.js';

export const SS_BULK_IN = 0x81;
export const SS_BULK_OUT = 0x01;
export const SS_ISO_IN = 0x82;
export const SS_ISO_OUT = 0x02;

/** g_zero.h defaults. */
export const GZERO_BULK_BUFLEN = 4096;
export const GZERO_ISOC_INTERVAL = 4;
export const GZERO_ISOC_MAXPACKET = 1024;
/** USB_COMP_EP0_BUFSIZ: the composite framework's ep0 buffer, the limit of the 0x5b/0x5c tests. */
export const EP0_BUFSIZ = 4096;

export const REQ_CONTROL_WRITE = 0x5b;
export const REQ_CONTROL_READ = 0x5c;

export interface SourceSinkOptions {
  pattern?: GadgetZeroPattern;
  /** bInterval of the iso endpoints, 1..16. */
  isocInterval?: number;
  /** wMaxPacketSize of the iso endpoints, 0..1024 (full speed caps it at 1023). */
  isocMaxPacket?: number;
  /** Size of the device's OUT requests: where a bad byte halts the endpoint within a transfer. */
  bulkBuflen?: number;
}

const log = createLogger('gadget-zero');

/**
 * g_zero's source/sink function (f_sourcesink.c): bulk IN sources the pattern, bulk OUT sinks
 * and checks it (a bad byte halts the OUT endpoint), alt setting 1 adds an iso IN source and
 * an iso OUT sink. Vendor requests 0x5b/0x5c write and read back the ep0 buffer.
 */
export class SourceSinkFunction implements UsbFunction {
  readonly #pattern: GadgetZeroPattern;
  readonly #isocInterval: number;
  readonly #isocMaxPacket: number;
  readonly #buflen: number;
  readonly #pacer = new IsoPacer();
  readonly #ep0 = Buffer.alloc(EP0_BUFSIZ);
  #host!: FunctionHost;
  #source!: PatternSource;

  constructor(opts: SourceSinkOptions = {}) {
    this.#pattern = opts.pattern ?? 0;
    this.#isocInterval = Math.min(16, Math.max(1, opts.isocInterval ?? GZERO_ISOC_INTERVAL));
    this.#isocMaxPacket = Math.min(1024, Math.max(0, opts.isocMaxPacket ?? GZERO_ISOC_MAXPACKET));
    this.#buflen = Math.max(1, opts.bulkBuflen ?? GZERO_BULK_BUFLEN);
  }

  interfaces(speed: UsbSpeed): InterfaceSpec[] {
    const superSpeed = isSuperSpeed(speed);
    const mps = bulkMaxPacket(speed);
    const isoMps = this.#isoMaxPacket(speed);
    const companion = superSpeed ? { companion: { maxBurst: 0, attributes: 0 } } : {};
    const isoCompanion = superSpeed ? { companion: { maxBurst: 0, attributes: 0, bytesPerInterval: isoMps } } : {};
    const bulkIn: EndpointSpec = { address: SS_BULK_IN, type: 'bulk', maxPacketSize: mps, interval: 0, ...companion };
    const bulkOut: EndpointSpec = { address: SS_BULK_OUT, type: 'bulk', maxPacketSize: mps, interval: 0, ...companion };
    const iso = (address: number): EndpointSpec => ({
      address,
      type: 'isochronous',
      maxPacketSize: isoMps,
      interval: this.#isocInterval,
      ...isoCompanion,
    });
    // f_sourcesink lists the sink first at full speed, the source first at high and super speed.
    const bulk = speed === 'full' || speed === 'low' ? [bulkOut, bulkIn] : [bulkIn, bulkOut];
    const isoPair =
      speed === 'full' || speed === 'low' ? [iso(SS_ISO_OUT), iso(SS_ISO_IN)] : [iso(SS_ISO_IN), iso(SS_ISO_OUT)];
    const alt = (alternate: number, endpoints: EndpointSpec[]) => ({
      alternate,
      interfaceClass: 0xff,
      interfaceSubClass: 0,
      interfaceProtocol: 0,
      name: 'source and sink data',
      endpoints,
    });
    return [{ number: 0, alternates: [alt(0, bulk), alt(1, [...bulk, ...isoPair])] }];
  }

  bind(host: FunctionHost): void {
    this.#host = host;
    this.#source = new PatternSource(this.#pattern, bulkMaxPacket(host.speed));
  }

  /** sourcesink_setup: only the two control test requests, exactly as g_zero checks them. */
  control(s: SetupPacket, data: Buffer | undefined): ControlResult | undefined {
    if (s.bRequest === REQ_CONTROL_WRITE && s.bmRequestType === 0x40) {
      if (s.wValue !== 0 || s.wIndex !== 0 || s.wLength > EP0_BUFSIZ) return undefined;
      data?.copy(this.#ep0, 0, 0, Math.min(data.length, s.wLength));
      return { status: TransferStatus.Ok };
    }
    if (s.bRequest === REQ_CONTROL_READ && s.bmRequestType === 0xc0) {
      if (s.wValue !== 0 || s.wIndex !== 0 || s.wLength > EP0_BUFSIZ) return undefined;
      return { status: TransferStatus.Ok, data: Buffer.from(this.#ep0.subarray(0, s.wLength)) };
    }
    return undefined;
  }

  transferWaiting(address: number): void {
    if (address === SS_BULK_IN) this.#sourceBulk();
    else if (address === SS_BULK_OUT) this.#sinkBulk();
    else if (address === SS_ISO_IN || address === SS_ISO_OUT) this.#iso(address);
  }

  setConfigured(): void {
    this.#pacer.clear();
  }

  setAlternate(): void {
    this.#pacer.clear();
  }

  reset(): void {
    this.#pacer.clear();
  }

  async close(): Promise<void> {
    this.#pacer.clear();
  }

  #sourceBulk(): void {
    for (let t = this.#host.take(SS_BULK_IN); t; t = this.#host.take(SS_BULK_IN)) {
      t.completeIn(this.#source.take(t.length));
      this.#host.complete(t);
    }
  }

  #sinkBulk(): void {
    for (let t = this.#host.take(SS_BULK_OUT); t; t = this.#host.take(SS_BULK_OUT)) {
      const data = t.data.subarray(0, t.length);
      const bad = this.#source.mismatch(data);
      if (bad < 0) {
        t.status = TransferStatus.Ok;
        t.actualLength = data.length;
        this.#host.complete(t);
        continue;
      }
      // The device reads OUT data into buflen-byte requests and checks each as it completes:
      // the request holding the bad byte is received, then the endpoint halts, so the rest of
      // the host's transfer (if any) meets a STALL.
      const received = Math.min(data.length, (Math.floor(bad / this.#buflen) + 1) * this.#buflen);
      log.warn(`bad OUT byte, buf[${bad}] = ${data[bad]}: halting ep 0x${SS_BULK_OUT.toString(16)}`);
      t.status = received < data.length ? TransferStatus.Stall : TransferStatus.Ok;
      t.actualLength = received;
      this.#host.complete(t);
      this.#host.haltEndpoint(SS_BULK_OUT);
      return;
    }
  }

  #iso(address: number): void {
    const speed = this.#host.speed;
    const maxPacket = this.#isoMaxPacket(speed);
    const intervalMs = isoIntervalMs(speed, this.#isocInterval);
    for (let t = this.#host.take(address); t; t = this.#host.take(address)) {
      const packets = fillIso(t, this.#pattern, maxPacket);
      this.#pacer.schedule(address, packets, intervalMs, () => this.#host.complete(t));
    }
  }

  #isoMaxPacket(speed: UsbSpeed): number {
    return speed === 'full' || speed === 'low' ? Math.min(1023, this.#isocMaxPacket) : this.#isocMaxPacket;
  }
}

/**
 * Complete every packet of an iso transfer: IN packets carry up to one wMaxPacketSize of the
 * pattern, OUT packets are taken whole (f_sourcesink does not check iso data). Returns the
 * number of packets (service intervals) it takes.
 */
function fillIso(t: Transfer, pattern: GadgetZeroPattern, maxPacket: number): number {
  const packets = t.isoPackets;
  if (!packets) {
    // An iso transfer without packet descriptors: one packet.
    if (t.isIn) t.completeIn(fillPattern(Buffer.alloc(Math.min(t.length, maxPacket)), pattern, maxPacket));
    else {
      t.status = TransferStatus.Ok;
      t.actualLength = t.length;
    }
    return 1;
  }
  if (t.isIn) t.data = Buffer.alloc(t.length);
  let total = 0;
  for (const p of packets) {
    const room = Math.max(0, Math.min(p.length, t.length - p.offset));
    p.actualLength = t.isIn ? Math.min(room, maxPacket) : room;
    p.status = TransferStatus.Ok;
    if (t.isIn) fillPattern(t.data.subarray(p.offset, p.offset + p.actualLength), pattern, maxPacket);
    total += p.actualLength;
  }
  t.status = TransferStatus.Ok;
  t.actualLength = total;
  return packets.length;
}
