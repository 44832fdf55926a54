import { ByteQueue } from '../../util/byte-queue.js';
import {
  BUSID_SIZE,
  DEFAULT_MAX_TRANSFER_LENGTH,
  ISO_DESCRIPTOR_SIZE,
  MAX_DEVLIST_DEVICES,
  MAX_ISO_PACKETS,
  OP_COMMON_SIZE,
  OP_REP_DEVLIST,
  OP_REP_IMPORT,
  OP_REQ_DEVLIST,
  OP_REQ_IMPORT,
  URB_HEADER_SIZE,
  USB_DEVICE_SIZE,
  USB_INTERFACE_SIZE,
  USBIP_CMD_SUBMIT,
  USBIP_CMD_UNLINK,
  USBIP_DIR_IN,
  USBIP_DIR_OUT,
  USBIP_RET_SUBMIT,
  USBIP_RET_UNLINK,
  USBIP_VERSION,
} from './constants.js';
import { UsbipProtocolError } from './errors.js';
import { decodeInterfaces, decodeUsbDevice, type UsbipDeviceInfo, type UsbipDevlistEntry } from './op.js';
import {
  type CmdSubmit,
  decodeIsoDescriptors,
  type IsoDescriptor,
  type RetSubmit,
  readCmdSubmitHeader,
  readCmdUnlink,
  readRetSubmitHeader,
  readRetUnlink,
  type UrbPacket,
} from './urb.js';

export interface OpReqDevlist {
  kind: 'op-req-devlist';
}
export interface OpReqImport {
  kind: 'op-req-import';
  busid: string;
}
export interface OpRepDevlist {
  kind: 'op-rep-devlist';
  status: number;
  devices: UsbipDevlistEntry[];
}
export interface OpRepImport {
  kind: 'op-rep-import';
  status: number;
  device: UsbipDeviceInfo | undefined;
}

export type OpPacket = OpReqDevlist | OpReqImport | OpRepDevlist | OpRepImport;
export type UsbipPacket = OpPacket | UrbPacket;

/** What the client asked for with a seqnum: the RET_SUBMIT layout depends on it. */
export interface RequestShape {
  in: boolean;
  /** transfer_buffer_length of the request. */
  length: number;
  /** ISO packet count of the request, 0 for other transfer types. */
  isoPackets: number;
}

export interface UsbipParserOptions {
  /** 'server' reads requests (OP_REQ_*, CMD_*), 'client' reads replies (OP_REP_*, RET_*). */
  role: 'server' | 'client';
  /** Largest transfer_buffer_length / actual_length accepted. */
  maxTransferLength?: number;
  /** Client role: look up the request a RET_SUBMIT answers; undefined means unknown seqnum. */
  lookupRequest?: (seqnum: number) => RequestShape | undefined;
}

export type ParserPhase = 'op' | 'paused' | 'urb' | 'failed';

type Step = () => void;

/**
 * Streaming USB/IP parser: bytes in, packets out, no I/O. Starts in the op phase; after one op
 * message it pauses (bytes are kept, not parsed) until the owner calls `startUrbPhase()` — a
 * connection carries one op exchange, then URB PDUs. `push` throws UsbipProtocolError on a bad
 * stream and keeps throwing it afterwards.
 */
export class UsbipParser {
  readonly #queue = new ByteQueue();
  readonly #role: 'server' | 'client';
  readonly #maxLength: number;
  readonly #lookup: ((seqnum: number) => RequestShape | undefined) | undefined;
  readonly #onPacket: (p: UsbipPacket) => void;
  #phase: ParserPhase = 'op';
  #need = OP_COMMON_SIZE;
  #step: Step;
  #draining = false;
  #held = false;
  #error: UsbipProtocolError | undefined;

  constructor(options: UsbipParserOptions, onPacket: (p: UsbipPacket) => void) {
    this.#role = options.role;
    this.#maxLength = options.maxTransferLength ?? DEFAULT_MAX_TRANSFER_LENGTH;
    this.#lookup = options.lookupRequest;
    this.#onPacket = onPacket;
    this.#step = this.#opHeader;
  }

  get phase(): ParserPhase {
    return this.#phase;
  }

  get bufferedBytes(): number {
    return this.#queue.length;
  }

  push(chunk: Buffer): void {
    if (this.#error) throw this.#error;
    this.#queue.push(chunk);
    this.#drain();
  }

  /**
   * The peer closed the stream: throws a 'truncated' error if it stopped inside a packet.
   * Bytes sent after an op message the owner did not act on (paused) are not an error.
   */
  end(): void {
    if (this.#error) throw this.#error;
    if (this.#phase === 'paused' || this.#phase === 'failed') return;
    const atBoundary = this.#step === this.#opHeader || this.#step === this.#urbHeader;
    if (atBoundary && this.#queue.length === 0) return;
    this.#phase = 'failed';
    this.#error = new UsbipProtocolError(
      'truncated',
      `stream ended inside a packet (${this.#queue.length} bytes buffered, ${this.#need} needed)`,
    );
    throw this.#error;
  }

  /** Stop emitting packets after the current one; bytes pushed meanwhile are kept (back-pressure). */
  holdPackets(): void {
    this.#held = true;
  }

  /** Emit what was held back, and go on as usual. */
  releasePackets(): void {
    if (!this.#held) return;
    this.#held = false;
    if (!this.#error) this.#drain();
  }

  /** Switch to URB PDUs (after a successful import); parses anything already buffered. */
  startUrbPhase(): void {
    if (this.#phase === 'failed') return;
    this.#phase = 'urb';
    this.#expect(URB_HEADER_SIZE, this.#urbHeader);
    this.#drain();
  }

  #drain(): void {
    if (this.#draining) return;
    this.#draining = true;
    try {
      while (!this.#held && this.#phase !== 'paused' && this.#phase !== 'failed' && this.#queue.length >= this.#need) {
        this.#step();
      }
    } catch (err) {
      this.#phase = 'failed';
      if (err instanceof UsbipProtocolError) this.#error = err;
      throw err;
    } finally {
      this.#draining = false;
    }
  }

  #expect(need: number, step: Step): void {
    this.#need = need;
    this.#step = step;
  }

  #emitOp(p: OpPacket): void {
    this.#phase = 'paused';
    this.#onPacket(p);
  }

  // ---- op phase ----

  #opHeader = (): void => {
    const h = this.#queue.take(OP_COMMON_SIZE);
    const version = h.readUInt16BE(0);
    const code = h.readUInt16BE(2);
    const status = h.readUInt32BE(4);
    if (version !== USBIP_VERSION) {
      throw new UsbipProtocolError('bad-version', `protocol version 0x${hex(version, 4)}, expected 0x0111`);
    }
    if (this.#role === 'server') {
      if (code === OP_REQ_DEVLIST) {
        this.#emitOp({ kind: 'op-req-devlist' });
        return;
      }
      if (code === OP_REQ_IMPORT) {
        this.#expect(BUSID_SIZE, this.#importBusid);
        return;
      }
    } else {
      if (code === OP_REP_DEVLIST) {
        if (status !== 0) {
          this.#emitOp({ kind: 'op-rep-devlist', status, devices: [] });
          return;
        }
        this.#expect(4, this.#devlistCount);
        return;
      }
      if (code === OP_REP_IMPORT) {
        if (status !== 0) {
          this.#emitOp({ kind: 'op-rep-import', status, device: undefined });
          return;
        }
        this.#expect(USB_DEVICE_SIZE, this.#importDevice);
        return;
      }
    }
    throw new UsbipProtocolError('unknown-op', `unexpected op code 0x${hex(code, 4)} for a ${this.#role}`);
  };

  #importBusid = (): void => {
    const field = this.#queue.take(BUSID_SIZE);
    const nul = field.indexOf(0);
    if (nul < 0) throw new UsbipProtocolError('bad-field', 'busid is not NUL-terminated');
    this.#emitOp({ kind: 'op-req-import', busid: field.subarray(0, nul).toString('utf8') });
  };

  #importDevice = (): void => {
    const device = decodeUsbDevice(this.#queue.take(USB_DEVICE_SIZE));
    this.#emitOp({ kind: 'op-rep-import', status: 0, device });
  };

  #devlist: UsbipDevlistEntry[] = [];
  #devlistRemaining = 0;
  #devlistCurrent: UsbipDeviceInfo | undefined;

  #devlistCount = (): void => {
    const n = this.#queue.take(4).readUInt32BE(0);
    if (n > MAX_DEVLIST_DEVICES) {
      throw new UsbipProtocolError(
        'too-many-devices',
        `DEVLIST reply claims ${n} devices (limit ${MAX_DEVLIST_DEVICES})`,
      );
    }
    this.#devlist = [];
    this.#devlistRemaining = n;
    this.#nextDevlistEntry();
  };

  #nextDevlistEntry(): void {
    if (this.#devlistRemaining === 0) {
      const devices = this.#devlist;
      this.#devlist = [];
      this.#emitOp({ kind: 'op-rep-devlist', status: 0, devices });
      return;
    }
    this.#expect(USB_DEVICE_SIZE, this.#devlistDevice);
  }

  #devlistDevice = (): void => {
    this.#devlistCurrent = decodeUsbDevice(this.#queue.take(USB_DEVICE_SIZE));
    this.#expect(this.#devlistCurrent.bNumInterfaces * USB_INTERFACE_SIZE, this.#devlistInterfaces);
  };

  #devlistInterfaces = (): void => {
    const device = this.#devlistCurrent!;
    const bytes = this.#queue.take(device.bNumInterfaces * USB_INTERFACE_SIZE);
    this.#devlist.push({ ...device, interfaces: decodeInterfaces(bytes, 0, device.bNumInterfaces) });
    this.#devlistCurrent = undefined;
    this.#devlistRemaining--;
    this.#nextDevlistEntry();
  };

  // ---- URB phase ----

  #submitHeader: Omit<CmdSubmit, 'data' | 'isoPackets'> | undefined;
  #retHeader: Omit<RetSubmit, 'data' | 'isoPackets'> | undefined;
  #dataLength = 0;
  #isoCount = 0;
  #requestShape: RequestShape | undefined;

  #urbHeader = (): void => {
    const h = this.#queue.take(URB_HEADER_SIZE);
    const command = h.readUInt32BE(0);
    if (this.#role === 'server') {
      if (command === USBIP_CMD_SUBMIT) {
        this.#startCmdSubmit(h);
        return;
      }
      if (command === USBIP_CMD_UNLINK) {
        this.#onPacket(readCmdUnlink(h, 0));
        return;
      }
    } else {
      if (command === USBIP_RET_SUBMIT) {
        this.#startRetSubmit(h);
        return;
      }
      if (command === USBIP_RET_UNLINK) {
        this.#onPacket(readRetUnlink(h, 0));
        return;
      }
    }
    if (command >= USBIP_CMD_SUBMIT && command <= USBIP_RET_UNLINK) {
      throw new UsbipProtocolError('unexpected-packet', `command ${command} is not for a ${this.#role}`);
    }
    throw new UsbipProtocolError('unknown-command', `unknown URB command 0x${hex(command, 8)}`);
  };

  #checkLength(length: number, what: string): void {
    if (length < 0) throw new UsbipProtocolError('bad-length', `negative ${what} ${length}`);
    if (length > this.#maxLength) {
      throw new UsbipProtocolError('transfer-too-long', `${what} ${length} exceeds limit ${this.#maxLength}`);
    }
  }

  #startCmdSubmit(h: Buffer): void {
    const header = readCmdSubmitHeader(h, 0);
    if (header.direction !== USBIP_DIR_OUT && header.direction !== USBIP_DIR_IN) {
      throw new UsbipProtocolError('bad-field', `CMD_SUBMIT seqnum ${header.seqnum}: direction ${header.direction}`);
    }
    if (header.ep > 15)
      throw new UsbipProtocolError('bad-field', `CMD_SUBMIT seqnum ${header.seqnum}: ep ${header.ep}`);
    this.#checkLength(header.transferBufferLength, 'transfer_buffer_length');
    const np = header.numberOfPackets;
    // Non-ISO senders put 0 (Linux) or -1 (the protocol doc, usbip-win2) here.
    if (np > MAX_ISO_PACKETS || np < -1) {
      throw new UsbipProtocolError('bad-packet-count', `CMD_SUBMIT seqnum ${header.seqnum}: number_of_packets ${np}`);
    }
    this.#submitHeader = header;
    this.#dataLength = header.direction === USBIP_DIR_OUT ? header.transferBufferLength : 0;
    this.#isoCount = Math.max(np, 0);
    this.#expect(this.#dataLength + this.#isoCount * ISO_DESCRIPTOR_SIZE, this.#finishCmdSubmit);
  }

  #finishCmdSubmit = (): void => {
    const header = this.#submitHeader!;
    this.#submitHeader = undefined;
    const data = this.#queue.take(this.#dataLength);
    const isoPackets = this.#takeIso(this.#isoCount);
    if (isoPackets) checkRequestIso(header.seqnum, isoPackets, header.transferBufferLength);
    this.#expect(URB_HEADER_SIZE, this.#urbHeader);
    this.#onPacket({
      kind: header.kind,
      seqnum: header.seqnum,
      devid: header.devid,
      direction: header.direction,
      ep: header.ep,
      transferFlags: header.transferFlags,
      transferBufferLength: header.transferBufferLength,
      startFrame: header.startFrame,
      numberOfPackets: header.numberOfPackets,
      interval: header.interval,
      setup: header.setup,
      data,
      isoPackets,
    });
  };

  #startRetSubmit(h: Buffer): void {
    const header = readRetSubmitHeader(h, 0);
    const shape = this.#lookup?.(header.seqnum);
    if (!shape) throw new UsbipProtocolError('unknown-seqnum', `RET_SUBMIT for unknown seqnum ${header.seqnum}`);
    this.#checkLength(header.actualLength, 'actual_length');
    if (header.actualLength > shape.length) {
      throw new UsbipProtocolError(
        'bad-length',
        `RET_SUBMIT seqnum ${header.seqnum}: actual_length ${header.actualLength} > requested ${shape.length}`,
      );
    }
    if (shape.isoPackets > 0 && header.numberOfPackets !== shape.isoPackets) {
      throw new UsbipProtocolError(
        'bad-packet-count',
        `RET_SUBMIT seqnum ${header.seqnum}: number_of_packets ${header.numberOfPackets}, request had ${shape.isoPackets}`,
      );
    }
    this.#retHeader = header;
    this.#requestShape = shape;
    this.#dataLength = shape.in ? header.actualLength : 0;
    this.#isoCount = shape.isoPackets;
    this.#expect(this.#dataLength + this.#isoCount * ISO_DESCRIPTOR_SIZE, this.#finishRetSubmit);
  }

  #finishRetSubmit = (): void => {
    const header = this.#retHeader!;
    const shape = this.#requestShape!;
    this.#retHeader = undefined;
    this.#requestShape = undefined;
    const data = this.#queue.take(this.#dataLength);
    const isoPackets = this.#takeIso(this.#isoCount);
    if (isoPackets) checkReplyIso(header, isoPackets, shape);
    this.#expect(URB_HEADER_SIZE, this.#urbHeader);
    this.#onPacket({
      kind: header.kind,
      seqnum: header.seqnum,
      devid: header.devid,
      direction: header.direction,
      ep: header.ep,
      status: header.status,
      actualLength: header.actualLength,
      startFrame: header.startFrame,
      numberOfPackets: header.numberOfPackets,
      errorCount: header.errorCount,
      data,
      isoPackets,
    });
  };

  #takeIso(count: number): IsoDescriptor[] | undefined {
    if (count === 0) return undefined;
    return decodeIsoDescriptors(this.#queue.take(count * ISO_DESCRIPTOR_SIZE), 0, count);
  }
}

function checkRequestIso(seqnum: number, packets: IsoDescriptor[], bufferLength: number): void {
  let total = 0;
  for (let i = 0; i < packets.length; i++) {
    const p = packets[i]!;
    if (p.offset + p.length > bufferLength) {
      throw new UsbipProtocolError(
        'bad-iso-descriptor',
        `CMD_SUBMIT seqnum ${seqnum}: ISO packet ${i} (offset ${p.offset}, length ${p.length}) beyond buffer of ${bufferLength}`,
      );
    }
    total += p.length;
  }
  if (total > bufferLength) {
    throw new UsbipProtocolError(
      'bad-iso-descriptor',
      `CMD_SUBMIT seqnum ${seqnum}: ISO packet lengths sum to ${total} > buffer ${bufferLength}`,
    );
  }
}

function checkReplyIso(
  header: Omit<RetSubmit, 'data' | 'isoPackets'>,
  packets: IsoDescriptor[],
  shape: RequestShape,
): void {
  let total = 0;
  for (let i = 0; i < packets.length; i++) {
    const p = packets[i]!;
    if (p.actualLength > p.length || p.offset + p.length > shape.length) {
      throw new UsbipProtocolError(
        'bad-iso-descriptor',
        `RET_SUBMIT seqnum ${header.seqnum}: ISO packet ${i} (offset ${p.offset}, length ${p.length}, actual ${p.actualLength}) inconsistent`,
      );
    }
    total += p.actualLength;
  }
  // vhci re-spreads packed IN data using these; a mismatch would misplace bytes.
  if (shape.in && total !== header.actualLength) {
    throw new UsbipProtocolError(
      'bad-iso-descriptor',
      `RET_SUBMIT seqnum ${header.seqnum}: ISO actual lengths sum to ${total}, actual_length is ${header.actualLength}`,
    );
  }
}

function hex(n: number, width: number): string {
  return n.toString(16).padStart(width, '0');
}
