import { Errno, UrbFlag, USBIP_DIR_IN } from '../../protocol/usbip/constants.js';
import { UsbipProtocolError } from '../../protocol/usbip/errors.js';
import { statusToErrno } from '../../protocol/usbip/status.js';
import {
  type CmdSubmit,
  type CmdUnlink,
  encodeRetSubmit,
  encodeRetUnlink,
  type IsoDescriptor,
} from '../../protocol/usbip/urb.js';
import type { PduWriter } from '../../transport/pdu-writer.js';
import type { UsbDevice } from '../../usb/device.js';
import { StandardRequest } from '../../usb/setup.js';
import { TransferStatus } from '../../usb/status.js';
import { type IsoPacket, Transfer, type TransferType } from '../../usb/transfer.js';
import type { Logger } from '../../util/log.js';
import { type TransferTrace, traceNow, traceRequest, tracing } from '../../util/trace.js';
import { cancelEach } from '../cancel-each.js';
import type { InFlightBudget } from '../read-throttle.js';
import { EndpointTypes } from './device-info.js';

interface InFlight {
  seqnum: number;
  transfer: Transfer;
  startFrame: number;
  numberOfPackets: number;
  /** CMD_UNLINKs waiting for this transfer to finish. */
  unlinks: number[];
  done: Promise<void>;
  trace: TransferTrace | undefined;
}

/** How long teardown waits for cancelled transfers before resetting the device anyway. */
const CANCEL_WAIT_MS = 5_000;

/** Unlinks held for submits still to come, at most (a bogus client cannot grow the table). */
const MAX_EARLY_UNLINKS = 1024;

const RT_PORT_CLASS_OTHER = 0x23;
const USB_PORT_FEAT_RESET = 4;

/**
 * The URB phase of one imported device: CMD_SUBMIT becomes a Transfer on the device, many in
 * flight; completions become RET_SUBMIT in completion order. CMD_UNLINK follows §2.6: the
 * RET_UNLINK is sent once the target has finished, so its outcome decides the order —
 * cancelled: RET_UNLINK(-ECONNRESET) only; completed anyway: RET_SUBMIT, then RET_UNLINK(0).
 */
export class UrbSession {
  /** Reasons already logged at info level. */
  readonly #rejected = new Set<string>();
  readonly #device: UsbDevice;
  readonly #devid: number;
  readonly #writer: PduWriter;
  readonly #budget: InFlightBudget;
  readonly #log: Logger;
  readonly #endpoints: EndpointTypes;
  readonly #inFlight = new Map<number, InFlight>();
  #closed = false;
  /** Seqnum of the latest CMD_SUBMIT, to tell an unlink of a finished URB from one of a URB still to come. */
  #lastSubmit: number | undefined;
  /**
   * CMD_UNLINKs that arrived before the CMD_SUBMIT they name (unlink seqnum by target seqnum).
   * vhci-hcd queues CMD_UNLINK on its own list, and its tx thread sends that list after the
   * submits it had when it woke: a URB submitted and unlinked meanwhile goes out unlink first.
   */
  readonly #unlinkedEarly = new Map<number, number>();

  constructor(device: UsbDevice, devid: number, writer: PduWriter, budget: InFlightBudget, log: Logger) {
    this.#device = device;
    this.#devid = devid;
    this.#writer = writer;
    this.#budget = budget;
    this.#log = log;
    this.#endpoints = new EndpointTypes(device);
  }

  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** Throws UsbipProtocolError for PDUs that end the connection (wrong devid, reused seqnum). */
  handle(p: CmdSubmit | CmdUnlink): void {
    if (p.devid !== this.#devid) {
      throw new UsbipProtocolError(
        'bad-field',
        `${p.kind} seqnum ${p.seqnum}: devid 0x${p.devid.toString(16)}, imported device is 0x${this.#devid.toString(16)}`,
      );
    }
    if (p.kind === 'cmd-submit') this.#submit(p);
    else this.#unlink(p);
  }

  #submit(p: CmdSubmit): void {
    this.#lastSubmit = p.seqnum;
    const early = this.#unlinkedEarly.get(p.seqnum);
    if (early !== undefined) {
      // Unlinked before it reached us: never run it; RET_UNLINK(-ECONNRESET) and no RET_SUBMIT.
      this.#unlinkedEarly.delete(p.seqnum);
      this.#writer.write(encodeRetUnlink({ seqnum: early, devid: 0, direction: 0, ep: 0, status: -Errno.ECONNRESET }));
      return;
    }
    if (this.#inFlight.has(p.seqnum)) {
      throw new UsbipProtocolError('bad-field', `CMD_SUBMIT reuses seqnum ${p.seqnum} still in flight`);
    }
    const trace = tracing
      ? traceRequest('usbip', p.seqnum, p.ep | (p.direction === USBIP_DIR_IN ? 0x80 : 0), p.transferBufferLength)
      : undefined;
    const built = this.#buildTransfer(p);
    if (typeof built === 'string') {
      // Once per reason and connection at info: a client that repeats a bad request must not flood the log.
      const first = this.#rejected.size < 32 && !this.#rejected.has(built);
      if (first) this.#rejected.add(built);
      this.#log[first ? 'info' : 'debug'](`seqnum ${p.seqnum} rejected with EINVAL: ${built}`);
      this.#writer.write(
        encodeRetSubmit({
          seqnum: p.seqnum,
          devid: 0,
          direction: 0,
          ep: 0,
          status: -Errno.EINVAL,
          actualLength: 0,
          startFrame: 0,
          // An ISO request gets an ISO-shaped reply: the client reads descriptors for it.
          numberOfPackets: p.isoPackets ? p.numberOfPackets : nonIsoPacketCount(p.numberOfPackets),
          errorCount: 0,
          isoPackets: p.isoPackets?.map((d) => ({ offset: d.offset, length: d.length, actualLength: 0, status: 0 })),
        }),
      );
      return;
    }
    const entry: InFlight = {
      seqnum: p.seqnum,
      transfer: built,
      startFrame: p.startFrame,
      numberOfPackets: p.numberOfPackets,
      unlinks: [],
      done: Promise.resolve(),
      trace,
    };
    this.#inFlight.set(p.seqnum, entry);
    // transfer_buffer_length is the OUT payload or the IN length the device may fill.
    this.#budget.acquire(p.transferBufferLength);
    if (trace) trace.submit = traceNow();
    entry.done = this.#run(built).then(
      () => this.#complete(entry),
      (err: unknown) => {
        this.#log.error(`${this.#device.name}: submit of ${built.describe()} threw: ${String(err)}`);
        built.fail(TransferStatus.IoError);
        this.#complete(entry);
      },
    );
  }

  /** Runs the transfer; a hub-class port reset (Linux stub's usb_reset_device path) resets the device. */
  #run(t: Transfer): Promise<void> {
    const s = t.setup;
    if (
      t.type === 'control' &&
      s &&
      s.bmRequestType === RT_PORT_CLASS_OTHER &&
      s.bRequest === StandardRequest.SetFeature &&
      s.wValue === USB_PORT_FEAT_RESET
    ) {
      this.#log.info(`${this.#device.name}: port reset requested`);
      return this.#device.reset();
    }
    return this.#device.submit(t);
  }

  /** A Transfer for the request, or why it cannot be one (answered with -EINVAL). */
  #buildTransfer(p: CmdSubmit): Transfer | string {
    const isIn = p.direction === USBIP_DIR_IN;
    const address = p.ep | (isIn ? 0x80 : 0);
    let type: TransferType;
    if (p.ep === 0) type = 'control';
    else {
      const found = this.#endpoints.lookup(address);
      if (!found) return `endpoint 0x${address.toString(16)} not in the active configuration`;
      if (found === 'control') return `endpoint 0x${address.toString(16)} is a non-default control endpoint`;
      type = found;
    }
    let isoPackets: IsoPacket[] | undefined;
    if (type === 'isochronous') {
      if (!p.isoPackets) return 'isochronous transfer without packets';
      isoPackets = p.isoPackets.map((d) => ({
        offset: d.offset,
        length: d.length,
        actualLength: 0,
        status: TransferStatus.Ok,
      }));
    } else if (p.isoPackets) {
      return `${type} transfer with ${p.isoPackets.length} ISO packets`;
    }
    // Keep only the flags that mean something for this kind of transfer, as usbip-host does.
    const shortNotOk = isIn && type !== 'isochronous' && (p.transferFlags & UrbFlag.ShortNotOk) !== 0;
    const zeroPacket = !isIn && type === 'bulk' && (p.transferFlags & UrbFlag.ZeroPacket) !== 0;
    return new Transfer({
      type,
      endpoint: address,
      setup: type === 'control' ? p.setup : undefined,
      length: p.transferBufferLength,
      data: isIn ? undefined : p.data,
      flags: shortNotOk || zeroPacket ? { shortNotOk, zeroPacket } : undefined,
      interval: p.interval,
      isoPackets,
    });
  }

  #unlink(p: CmdUnlink): void {
    const target = this.#inFlight.get(p.unlinkSeqnum);
    if (!target && this.#isAhead(p.unlinkSeqnum) && this.#unlinkedEarly.size < MAX_EARLY_UNLINKS) {
      this.#unlinkedEarly.set(p.unlinkSeqnum, p.seqnum);
      return;
    }
    if (!target) {
      // Already completed: its RET_SUBMIT is written (or queued ahead of this reply).
      this.#writer.write(encodeRetUnlink({ seqnum: p.seqnum, devid: 0, direction: 0, ep: 0, status: 0 }));
      return;
    }
    target.unlinks.push(p.seqnum);
    if (target.unlinks.length === 1) this.#device.cancel(target.transfer);
  }

  /** The seqnum is after the latest CMD_SUBMIT (vhci-hcd numbers every PDU from one growing counter, mod 2^32). */
  #isAhead(seqnum: number): boolean {
    if (this.#lastSubmit === undefined) return true;
    const delta = (seqnum - this.#lastSubmit) | 0;
    return delta > 0 && delta < MAX_EARLY_UNLINKS * 4;
  }

  #complete(entry: InFlight): void {
    if (entry.trace) entry.trace.done = traceNow();
    this.#inFlight.delete(entry.seqnum);
    this.#budget.release(entry.transfer.length);
    if (this.#closed) return;
    const t = entry.transfer;
    if (entry.unlinks.length > 0 && t.status === TransferStatus.Cancelled) {
      for (const seqnum of entry.unlinks) {
        this.#writer.write(encodeRetUnlink({ seqnum, devid: 0, direction: 0, ep: 0, status: -Errno.ECONNRESET }));
      }
      return;
    }
    this.#writer.write(this.#retSubmit(entry), entry.trace);
    for (const seqnum of entry.unlinks) {
      this.#writer.write(encodeRetUnlink({ seqnum, devid: 0, direction: 0, ep: 0, status: 0 }));
    }
  }

  #retSubmit(entry: InFlight) {
    const t = entry.transfer;
    const status = statusToErrno(t.status);
    if (t.isoPackets) return this.#retSubmitIso(entry, { seqnum: entry.seqnum, devid: 0, direction: 0, ep: 0, status });
    // vhci drops the connection if actual_length exceeds what it asked for.
    const actual = Math.max(0, Math.min(t.actualLength, t.length, t.isIn ? t.data.length : t.length));
    // One literal, no spread: this runs once per completed transfer.
    return encodeRetSubmit({
      seqnum: entry.seqnum,
      devid: 0,
      direction: 0,
      ep: 0,
      status,
      actualLength: actual,
      startFrame: 0,
      numberOfPackets: nonIsoPacketCount(entry.numberOfPackets),
      errorCount: 0,
      data: t.isIn ? t.data.subarray(0, actual) : undefined,
    });
  }

  /** ISO IN data goes packed (each packet's actual bytes back to back), descriptors keep original offsets. */
  #retSubmitIso(
    entry: InFlight,
    base: { seqnum: number; devid: number; direction: number; ep: number; status: number },
  ) {
    const t = entry.transfer;
    const packets = t.isoPackets!;
    const descriptors: IsoDescriptor[] = [];
    const pieces: Buffer[] = [];
    let total = 0;
    let errors = 0;
    let runStart = -1;
    let runEnd = -1;
    for (const p of packets) {
      let actual = Math.max(0, Math.min(p.actualLength, p.length));
      if (t.isIn) {
        actual = Math.max(0, Math.min(actual, t.data.length - p.offset));
        if (actual > 0) {
          // Adjacent packets stay one slice: a full ISO IN buffer goes out without copying or splitting.
          if (p.offset === runEnd) runEnd += actual;
          else {
            if (runStart >= 0) pieces.push(t.data.subarray(runStart, runEnd));
            runStart = p.offset;
            runEnd = p.offset + actual;
          }
        }
      }
      if (p.status !== TransferStatus.Ok) errors++;
      total += actual;
      descriptors.push({ offset: p.offset, length: p.length, actualLength: actual, status: statusToErrno(p.status) });
    }
    if (runStart >= 0) pieces.push(t.data.subarray(runStart, runEnd));
    return encodeRetSubmit({
      ...base,
      actualLength: t.isIn ? total : Math.min(t.actualLength, t.length),
      startFrame: entry.startFrame,
      numberOfPackets: entry.numberOfPackets,
      errorCount: errors,
      data: pieces,
      isoPackets: descriptors,
    });
  }

  /** Connection gone: cancel everything in flight and wait for it (bounded), write nothing more. */
  async close(): Promise<void> {
    this.#closed = true;
    const pending = [...this.#inFlight.values()];
    if (pending.length === 0) return;
    await cancelEach(pending, (e) => this.#device.cancel(e.transfer));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), CANCEL_WAIT_MS);
    });
    const result = await Promise.race([Promise.all(pending.map((e) => e.done)), timeout]);
    clearTimeout(timer);
    if (result === 'timeout') {
      this.#log.warn(`${this.#device.name}: ${this.#inFlight.size} transfers ignored cancel for ${CANCEL_WAIT_MS} ms`);
    }
  }
}

/** Echo what a non-ISO request carried if it is one of the two conventions, else the doc's -1. */
function nonIsoPacketCount(requested: number): number {
  return requested === 0 ? 0 : -1;
}
