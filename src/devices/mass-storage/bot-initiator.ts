import { controlTransfer } from '../../usb/control.js';
import {
  type ParsedAltSetting,
  type ParsedConfiguration,
  parseConfiguration,
  parseDeviceDescriptor,
} from '../../usb/descriptors.js';
import type { UsbDevice } from '../../usb/device.js';
import { Feature, RequestType, StandardRequest } from '../../usb/setup.js';
import { TransferStatus } from '../../usb/status.js';
import { Transfer } from '../../usb/transfer.js';
import { createLogger } from '../../util/log.js';
import { EmulatedDevice } from '../emulated-device.js';
import { ProductId, USBWIRE_VENDOR_ID } from '../ids.js';
import { CSW_SIGNATURE, CSW_SIZE, CswStatus, encodeCbw } from './bot-wire.js';
import { Cdb } from './scsi/cdb-builders.js';
import { CdbPlanner } from './scsi/cdb-plan.js';
import { buildFixedSense, Sense, type SenseCode } from './scsi/sense.js';

const log = createLogger('bot-initiator');

const REQ_GET_MAX_LUN = 0xfe;
const REQ_BULK_ONLY_RESET = 0xff;
const SENSE_ALLOCATION = 18;

/** Where a BOT interface lives on a device. */
export interface BotEndpoints {
  interfaceNumber: number;
  inEp: number;
  outEp: number;
}

export type ScsiCommandStatus = 'good' | 'check-condition' | 'aborted';

export interface ScsiCommandResult {
  status: ScsiCommandStatus;
  /** Data-in actually received. */
  data?: Buffer;
  /** dCSWDataResidue (the whole length when no CSW could be read). */
  residue: number;
  /** Sense data of a CHECK CONDITION: fetched with REQUEST SENSE, or made up for a transport failure. */
  sense?: Buffer;
  /** Set when the transport failed (invalid CSW, phase error, stalled CBW, no device...). */
  transportError?: string;
}

export interface ExecuteOptions {
  /** Defaults to planCdb's answer (block size learnt from READ CAPACITY replies). */
  direction?: 'in' | 'out' | 'none';
  length?: number;
  dataOut?: Buffer;
  lun?: number;
  /** Aborting drops a command still queued; one already started runs to its end. */
  signal?: AbortSignal;
}

export interface BotInitiatorOptions {
  /** First tag; tags then count up (mod 2^32). Give each initiator of one device its own range. */
  firstTag?: number;
  /** A command whose CSW has not arrived by then is abandoned with Reset Recovery (default 30 s, 0 = never). */
  timeoutMs?: number;
  /**
   * Submit CBW, data and CSW back to back (one round trip per command over a link). Only for
   * devices that leave early transfers queued until their phase comes, as usbwire's own BOT
   * function does: QEMU's usb-storage STALLs an IN that arrives before its CBW, and real devices
   * vary. Default: each phase after the previous one completed, as Linux usb-storage does.
   */
  pipelined?: boolean;
}

const isBot = (a: ParsedAltSetting) =>
  a.interfaceClass === 0x08 && a.interfaceSubClass === 0x06 && a.interfaceProtocol === 0x50;

function activeConfiguration(dev: UsbDevice): ParsedConfiguration | undefined {
  for (const raw of dev.descriptors.configurations) {
    try {
      const config = parseConfiguration(raw);
      if (config.value === dev.configuration) return config;
    } catch {
      // a configuration we cannot parse is not the one we want
    }
  }
  return undefined;
}

/** A Bulk-Only alternate setting of the active configuration that is not selected. */
function botAlternate(dev: UsbDevice): ParsedAltSetting | undefined {
  for (const iface of activeConfiguration(dev)?.interfaces ?? []) {
    const alt = iface.alternates.find(isBot);
    if (alt) return alt;
  }
  return undefined;
}

/**
 * Whether a BOT device leaves transfers that arrive before their phase queued (usbwire's own BOT
 * function does, locally or across a usbwire server: its disks carry usbwire's VID:PID), so
 * an initiator may submit CBW, data and CSW in one go.
 */
export function queuesEarlyTransfers(dev: UsbDevice): boolean {
  if (dev instanceof EmulatedDevice) return true;
  try {
    const d = parseDeviceDescriptor(dev.descriptors.device);
    return d.vendorId === USBWIRE_VENDOR_ID && d.productId === ProductId.massStorage;
  } catch {
    return false;
  }
}

/** The BOT interface (08/06/50) of the active configuration and alternate settings, if any. */
export function findBotEndpoints(dev: UsbDevice): BotEndpoints | undefined {
  const config = activeConfiguration(dev);
  if (config) {
    for (const iface of config.interfaces) {
      const alt = iface.alternates.find((a) => a.alternate === dev.alternateSetting(iface.number));
      if (!alt || !isBot(alt)) continue;
      const bulk = alt.endpoints.filter((e) => e.type === 'bulk');
      const inEp = bulk.find((e) => e.address & 0x80)?.address;
      const outEp = bulk.find((e) => !(e.address & 0x80))?.address;
      if (inEp !== undefined && outEp !== undefined) return { interfaceNumber: iface.number, inEp, outEp };
    }
  }
  return undefined;
}

interface Submitted {
  t: Transfer;
  done: Promise<void>;
}

class TransportFailure extends Error {
  constructor(
    message: string,
    readonly sense: SenseCode,
    readonly recover: boolean,
  ) {
    super(message);
  }
}

/**
 * A SCSI initiator over a Bulk-Only Transport device (BOT 1.0): one command at a time, each as
 * CBW, data and CSW submitted back to back so that a command costs one round trip over a link,
 * not three (the device queues them per endpoint). A failed command's sense is fetched at once
 * with REQUEST SENSE; transport failures end in Reset Recovery and a CHECK CONDITION whose sense
 * says what went wrong.
 */
export class BotInitiator {
  readonly planner = new CdbPlanner();
  #tag: number;
  readonly #timeoutMs: number;
  readonly #pipelined: boolean;
  #tail: Promise<unknown> = Promise.resolve();
  /** Transfers of the command running now, cancelled by abortCurrent(). */
  readonly #inFlight = new Set<Transfer>();
  #abortedRun = false;
  #closed = false;

  constructor(
    readonly device: UsbDevice,
    readonly endpoints: BotEndpoints,
    opts: BotInitiatorOptions = {},
  ) {
    this.#tag = (opts.firstTag ?? 1) >>> 0;
    this.#timeoutMs = opts.timeoutMs ?? 30_000;
    this.#pipelined = opts.pipelined ?? false;
  }

  /** Configures the device if it is unconfigured (configuration 1) and finds its BOT interface. */
  static async open(dev: UsbDevice, opts: BotInitiatorOptions = {}): Promise<BotInitiator> {
    if (dev.configuration === 0) {
      const t = await controlTransfer(dev, {
        bmRequestType: 0x00,
        bRequest: StandardRequest.SetConfiguration,
        wValue: 1,
        wIndex: 0,
        wLength: 0,
      });
      if (t.status !== TransferStatus.Ok) throw new Error(`SET_CONFIGURATION 1 failed: ${t.status}`);
    }
    let eps = findBotEndpoints(dev);
    const alternate = eps ? undefined : botAlternate(dev);
    if (alternate) {
      // e.g. a UAS disk in its UAS setting: back to its Bulk-Only alternate.
      const t = await controlTransfer(dev, {
        bmRequestType: RequestType.Interface,
        bRequest: StandardRequest.SetInterface,
        wValue: alternate.alternate,
        wIndex: alternate.interfaceNumber,
        wLength: 0,
      });
      if (t.status === TransferStatus.Ok) eps = findBotEndpoints(dev);
    }
    if (!eps) throw new Error(`${dev.name} has no Bulk-Only mass storage interface in its active configuration`);
    return new BotInitiator(dev, eps, opts);
  }

  /** Runs a command after those queued before it. Never rejects. */
  execute(cdb: Buffer, opts: ExecuteOptions = {}): Promise<ScsiCommandResult> {
    return this.#enqueue(async () => {
      if (opts.signal?.aborted) return { status: 'aborted', residue: 0 };
      if (this.#closed) return failure('initiator closed', Sense.CommunicationFailure, 0);
      const result = await this.#run(cdb, opts);
      if (result.status === 'good') this.planner.observe(cdb, result.data);
      return result;
    });
  }

  /** Reset Recovery (Bulk-Only Mass Storage Reset, then CLEAR_FEATURE(HALT) on both pipes), queued. */
  reset(): Promise<boolean> {
    return this.#enqueue(() => this.#resetRecovery());
  }

  /** GET MAX LUN (0 when the device stalls it, as BOT allows for single-LUN devices). */
  async getMaxLun(): Promise<number> {
    const t = await controlTransfer(this.device, {
      bmRequestType: 0xa1,
      bRequest: REQ_GET_MAX_LUN,
      wValue: 0,
      wIndex: this.endpoints.interfaceNumber,
      wLength: 1,
    });
    return t.status === TransferStatus.Ok && t.actualLength === 1 ? t.data[0]! & 0x0f : 0;
  }

  /**
   * Cancels the transfers of the command running now (the device is about to be reset or is
   * gone): that command ends 'aborted' without Reset Recovery. Queued commands still run.
   */
  abortCurrent(): void {
    if (this.#inFlight.size === 0) return;
    this.#abortedRun = true;
    for (const t of [...this.#inFlight]) this.device.cancel(t);
  }

  /** Whether a command is running or queued. */
  get busy(): boolean {
    return this.#pending > 0;
  }

  /** Resolves when nothing is running or queued. */
  idle(): Promise<void> {
    return this.#tail.then(() => undefined);
  }

  close(): void {
    this.#closed = true;
    this.abortCurrent();
  }

  #pending = 0;

  #enqueue<T>(job: () => Promise<T>): Promise<T> {
    this.#pending++;
    const run = this.#tail.then(job).finally(() => this.#pending--);
    this.#tail = run.catch(() => {});
    return run;
  }

  #nextTag(): number {
    const tag = this.#tag;
    this.#tag = (this.#tag + 1) >>> 0;
    return tag;
  }

  async #run(cdb: Buffer, opts: ExecuteOptions): Promise<ScsiCommandResult> {
    const planned = this.planner.plan(cdb);
    const direction = opts.direction ?? planned.direction;
    let length = direction === 'none' ? 0 : (opts.length ?? opts.dataOut?.length ?? planned.length);
    if (direction === 'out') length = Math.min(length, opts.dataOut?.length ?? 0);
    this.#abortedRun = false;
    const timer = this.#timeoutMs > 0 ? setTimeout(() => this.#timeout(), this.#timeoutMs) : undefined;
    timer?.unref();
    try {
      const r = await this.#transport(cdb, direction, length, opts);
      if (r.status === 'check-condition' && !r.transportError) r.sense = await this.#requestSense(opts.lun ?? 0);
      return r;
    } catch (err) {
      if (this.#abortedRun) return { status: 'aborted', residue: length };
      const f = err as TransportFailure;
      if (!(f instanceof TransportFailure)) throw err;
      log.warn(`${opcodeHex(cdb)}: ${f.message}${f.recover ? '; reset recovery' : ''}`);
      if (f.recover) await this.#resetRecovery();
      return failure(f.message, f.sense, length);
    } finally {
      clearTimeout(timer);
      this.#cancelRest();
    }
  }

  #timedOut = false;

  #timeout(): void {
    this.#timedOut = true;
    for (const t of [...this.#inFlight]) this.device.cancel(t);
  }

  /** CBW, data and CSW of one command; throws TransportFailure. */
  async #transport(
    cdb: Buffer,
    direction: 'in' | 'out' | 'none',
    length: number,
    opts: ExecuteOptions,
  ): Promise<ScsiCommandResult> {
    const { inEp, outEp } = this.endpoints;
    this.#timedOut = false;
    const tag = this.#nextTag();
    const cbw = encodeCbw({ tag, dataTransferLength: length, dataIn: direction === 'in', lun: opts.lun ?? 0, cdb });
    const cbwT = this.#submit(new Transfer({ type: 'bulk', endpoint: outEp, data: cbw }));
    if (!this.#pipelined) await cbwT.done;
    let dataT: Submitted | undefined;
    if (length > 0 && (this.#pipelined || cbwT.t.status === TransferStatus.Ok)) {
      dataT = this.#submit(
        direction === 'in'
          ? new Transfer({ type: 'bulk', endpoint: inEp, length })
          : new Transfer({ type: 'bulk', endpoint: outEp, data: opts.dataOut!.subarray(0, length) }),
      );
      if (!this.#pipelined) await dataT.done;
    }
    const submitCsw = () => this.#submit(new Transfer({ type: 'bulk', endpoint: inEp, length: CSW_SIZE }));
    let cswT: Submitted | undefined = this.#pipelined ? submitCsw() : undefined;

    await cbwT.done;
    this.#check(cbwT.t, 'CBW');
    if (cbwT.t.status !== TransferStatus.Ok) {
      throw new TransportFailure(`CBW failed (${cbwT.t.status})`, Sense.CommunicationFailure, true);
    }
    let data: Buffer | undefined;
    if (dataT) {
      await dataT.done;
      this.#check(dataT.t, 'data');
      if (dataT.t.status === TransferStatus.Stall) {
        await this.#clearHalt(dataT.t.endpoint);
      } else if (dataT.t.status !== TransferStatus.Ok && dataT.t.status !== TransferStatus.ShortPacket) {
        throw new TransportFailure(`data stage failed (${dataT.t.status})`, Sense.CommunicationFailure, true);
      }
      if (direction === 'in') data = dataT.t.data.subarray(0, dataT.t.actualLength);
    }
    cswT ??= submitCsw();
    await cswT.done;
    this.#check(cswT.t, 'CSW');
    // A stalled CSW is cleared and read once more (BOT 5.3.3); a zero-length one too, as Linux does.
    if (cswT.t.status === TransferStatus.Stall || (cswT.t.status === TransferStatus.Ok && cswT.t.actualLength === 0)) {
      if (cswT.t.status === TransferStatus.Stall) await this.#clearHalt(inEp);
      cswT = this.#submit(new Transfer({ type: 'bulk', endpoint: inEp, length: CSW_SIZE }));
      await cswT.done;
      this.#check(cswT.t, 'CSW');
    }
    if (cswT.t.status !== TransferStatus.Ok) {
      throw new TransportFailure(`CSW failed (${cswT.t.status})`, Sense.CommunicationFailure, true);
    }
    const csw = cswT.t.data.subarray(0, cswT.t.actualLength);
    if (csw.length !== CSW_SIZE || csw.readUInt32LE(0) !== CSW_SIGNATURE || csw.readUInt32LE(4) !== tag) {
      throw new TransportFailure(`invalid CSW (${csw.toString('hex')}, tag ${tag})`, Sense.CommunicationFailure, true);
    }
    const residue = csw.readUInt32LE(8);
    const status = csw[12]!;
    if (status === CswStatus.PhaseError) {
      throw new TransportFailure('phase error', Sense.DataPhaseError, true);
    }
    if (status > CswStatus.PhaseError || residue > length) {
      throw new TransportFailure(
        `meaningless CSW (status ${status}, residue ${residue} of ${length})`,
        Sense.CommunicationFailure,
        true,
      );
    }
    const result: ScsiCommandResult = { status: status === CswStatus.Passed ? 'good' : 'check-condition', residue };
    if (data) result.data = data;
    return result;
  }

  /** Cancellations (abortCurrent, timeout) and a vanished device end the command at once. */
  #check(t: Transfer, stage: string): void {
    if (t.status === TransferStatus.NoDevice) {
      throw new TransportFailure(`${stage}: no device`, Sense.CommunicationFailure, false);
    }
    if (t.status !== TransferStatus.Cancelled) return;
    if (this.#timedOut) {
      throw new TransportFailure(`${stage}: timed out`, Sense.CommunicationFailure, true);
    }
    throw new TransportFailure(`${stage}: cancelled`, Sense.CommunicationFailure, false);
  }

  async #requestSense(lun: number): Promise<Buffer | undefined> {
    try {
      const r = await this.#transport(Cdb.requestSense(SENSE_ALLOCATION), 'in', SENSE_ALLOCATION, { lun });
      if (r.status === 'good' && r.data && r.data.length > 0) return r.data;
    } catch (err) {
      const f = err as TransportFailure;
      if (!(f instanceof TransportFailure)) throw err;
      log.warn(`REQUEST SENSE: ${f.message}`);
      if (f.recover && !this.#abortedRun) await this.#resetRecovery();
    } finally {
      this.#cancelRest();
    }
    return undefined;
  }

  #submit(t: Transfer): Submitted {
    this.#inFlight.add(t);
    const done = this.device.submit(t).finally(() => this.#inFlight.delete(t));
    return { t, done };
  }

  /** Transfers left behind by a failed command must not eat the next command's data. */
  #cancelRest(): void {
    for (const t of [...this.#inFlight]) this.device.cancel(t);
  }

  async #resetRecovery(): Promise<boolean> {
    const reset = await controlTransfer(this.device, {
      bmRequestType: RequestType.Class | RequestType.Interface,
      bRequest: REQ_BULK_ONLY_RESET,
      wValue: 0,
      wIndex: this.endpoints.interfaceNumber,
      wLength: 0,
    });
    const clearIn = await this.#clearHalt(this.endpoints.inEp);
    const clearOut = await this.#clearHalt(this.endpoints.outEp);
    return reset.status === TransferStatus.Ok && clearIn && clearOut;
  }

  async #clearHalt(endpoint: number): Promise<boolean> {
    const t = await controlTransfer(this.device, {
      bmRequestType: RequestType.Endpoint,
      bRequest: StandardRequest.ClearFeature,
      wValue: Feature.EndpointHalt,
      wIndex: endpoint,
      wLength: 0,
    });
    return t.status === TransferStatus.Ok;
  }
}

function failure(message: string, sense: SenseCode, length: number): ScsiCommandResult {
  return { status: 'check-condition', residue: length, sense: buildFixedSense(sense), transportError: message };
}

function opcodeHex(cdb: Buffer): string {
  return `opcode 0x${(cdb[0] ?? 0).toString(16).padStart(2, '0')}`;
}
