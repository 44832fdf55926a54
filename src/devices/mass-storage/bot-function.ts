import type { ControlResult, FunctionHost, InterfaceSpec, UsbFunction } from '../../usb/function.js';
import type { SetupPacket } from '../../usb/setup.js';
import { bulkMaxPacket, isSuperSpeed, type UsbSpeed } from '../../usb/speed.js';
import { TransferStatus } from '../../usb/status.js';
import type { Transfer } from '../../usb/transfer.js';
import { createLogger } from '../../util/log.js';
import { type Cbw, CSW_SIZE, CswStatus, encodeCsw, parseCbw } from './bot-wire.js';

/** What the BOT transport needs from a SCSI logical unit. */
export interface ScsiTarget {
  plan(cdb: Buffer): { direction: 'none' | 'in' | 'out'; length: number };
  execute(
    cdb: Buffer,
    dataOut?: Buffer,
  ): Promise<{ status: 'good' | 'check-condition'; data?: Buffer | undefined; sense?: Buffer | undefined }>;
  /** Bus reset: the next command reports UNIT ATTENTION. */
  reset(): void;
  /** The host has the status of the last command (its CSW went out). */
  statusDelivered?(): void;
}

export const BOT_IN = 0x81;
export const BOT_OUT = 0x02;

const REQ_GET_MAX_LUN = 0xfe;
const REQ_BULK_ONLY_RESET = 0xff;

type Phase = 'command' | 'executing' | 'data-in' | 'data-out' | 'status';

interface Command {
  cbw: Cbw;
  /** IN data still to send and how much of it went out. */
  inData: Buffer;
  sent: number;
  /** Data-out: bytes the device wants (prefix of the host's), chunks received so far. */
  wanted: number;
  received: number;
  chunks: Buffer[];
  residue: number;
  cswStatus: number;
  /** A short final packet is owed: the data ran out on a transfer boundary before the host's length. */
  zlpOwed: boolean;
}

const log = createLogger('bot');

/**
 * USB Mass Storage Bulk-Only Transport over one SCSI logical unit: CBW → data → CSW, the 13
 * host/device cases, phase errors (halt the data pipe, CSW status 2), invalid CBWs (wedge both
 * pipes until Reset Recovery), Get Max LUN and Bulk-Only Mass Storage Reset.
 *
 * A data-out command's last OUT transfer is held until the SCSI write has reached the backing
 * store, so the payload is used in place (no copy) and the CSW can never report a write that
 * is not in the image.
 */
export class BotFunction implements UsbFunction {
  readonly #target: ScsiTarget;
  #host!: FunctionHost;
  #iface = 0;
  #phase: Phase = 'command';
  #cmd: Command | undefined;
  #csw: Buffer | undefined;
  /** Bumped by resets so work finishing for an aborted command is dropped. */
  #generation = 0;
  /** An OUT transfer is being handled (the last data-out transfer is held until the write is done). */
  #outBusy = false;
  /**
   * The last command handed to the target. The next one waits for it, across resets too: a write
   * whose client went away (cancelled, device reset) must not land after the next client's.
   */
  #executing: Promise<unknown> = Promise.resolve();

  constructor(target: ScsiTarget) {
    this.#target = target;
  }

  interfaces(speed: UsbSpeed): InterfaceSpec[] {
    const superSpeed = isSuperSpeed(speed);
    const mps = bulkMaxPacket(speed);
    const companion = superSpeed ? { maxBurst: 15, attributes: 0 } : undefined;
    return [
      {
        number: 0,
        alternates: [
          {
            alternate: 0,
            interfaceClass: 0x08,
            interfaceSubClass: 0x06,
            interfaceProtocol: 0x50,
            endpoints: [
              { address: BOT_IN, type: 'bulk', maxPacketSize: mps, interval: 0, ...(companion ? { companion } : {}) },
              { address: BOT_OUT, type: 'bulk', maxPacketSize: mps, interval: 0, ...(companion ? { companion } : {}) },
            ],
          },
        ],
      },
    ];
  }

  bind(host: FunctionHost, firstInterface: number): void {
    this.#host = host;
    this.#iface = firstInterface;
  }

  control(s: SetupPacket, data: Buffer | undefined): ControlResult | undefined {
    if ((s.wIndex & 0xff) !== this.#iface || s.wValue !== 0) return undefined;
    if (s.bmRequestType === 0xa1 && s.bRequest === REQ_GET_MAX_LUN && s.wLength === 1) {
      return { status: TransferStatus.Ok, data: Buffer.from([0]) };
    }
    if (s.bmRequestType === 0x21 && s.bRequest === REQ_BULK_ONLY_RESET && s.wLength === 0 && !data?.length) {
      this.#bulkOnlyReset();
      return { status: TransferStatus.Ok };
    }
    return undefined;
  }

  transferWaiting(address: number): void {
    if (address === BOT_OUT) this.#pumpOut();
    else this.#pump();
  }

  setConfigured(_configured: boolean): void {
    this.#abort();
  }

  setAlternate(): void {
    this.#abort();
  }

  reset(): void {
    this.#abort();
    this.#target.reset();
  }

  async close(): Promise<void> {
    this.#abort();
  }

  #abort(): void {
    this.#generation++;
    this.#phase = 'command';
    this.#cmd = undefined;
    this.#csw = undefined;
    this.#outBusy = false;
  }

  #bulkOnlyReset(): void {
    this.#abort();
    // Reset Recovery follows with CLEAR_FEATURE(HALT) on both pipes: make a wedge clearable again.
    for (const ep of [BOT_IN, BOT_OUT]) {
      if (this.#host.isHalted(ep)) {
        this.#host.unhaltEndpoint(ep);
        this.#host.haltEndpoint(ep);
      }
    }
  }

  /** OUT transfers wait in the queue until the phase takes them: a CBW, or data for a data-out command. */
  #pumpOut(): void {
    while (!this.#outBusy && (this.#phase === 'command' || this.#phase === 'data-out')) {
      const t = this.#host.take(BOT_OUT);
      if (!t) return;
      if (this.#phase === 'command') this.#command(t);
      else if (this.#cmd) {
        this.#outBusy = true;
        void this.#dataOut(this.#cmd, t, this.#generation);
      }
    }
  }

  #command(t: Transfer): void {
    const data = t.data.subarray(0, t.length);
    const cbw = parseCbw(data);
    t.status = TransferStatus.Ok;
    t.actualLength = data.length;
    this.#host.complete(t);
    if (typeof cbw === 'string' || cbw.lun !== 0) {
      log.warn(`invalid CBW (${typeof cbw === 'string' ? cbw : `LUN ${cbw.lun}`}): halting until reset recovery`);
      this.#host.wedgeEndpoint(BOT_IN);
      this.#host.wedgeEndpoint(BOT_OUT);
      return;
    }
    const plan = this.#target.plan(cbw.cdb);
    const h = cbw.dataTransferLength;
    const hostDir = h === 0 ? 'none' : cbw.dataIn ? 'in' : 'out';
    const cmd: Command = {
      cbw,
      inData: EMPTY,
      sent: 0,
      wanted: 0,
      received: 0,
      chunks: [],
      residue: 0,
      cswStatus: CswStatus.Passed,
      zlpOwed: false,
    };
    this.#cmd = cmd;
    const devDir = plan.length === 0 ? 'none' : plan.direction;
    const phaseError =
      (hostDir === 'none' && devDir !== 'none') ||
      (hostDir === 'in' && (devDir === 'out' || (devDir === 'in' && plan.length > h))) ||
      (hostDir === 'out' && (devDir === 'in' || (devDir === 'out' && plan.length > h)));
    if (phaseError) {
      log.warn(
        `phase error: host ${hostDir} ${h} bytes, device ${devDir} ${plan.length} (opcode 0x${cbw.cdb[0]!.toString(16)})`,
      );
      if (hostDir !== 'none') this.#host.haltEndpoint(hostDir === 'in' ? BOT_IN : BOT_OUT);
      this.#finish(cmd, h, CswStatus.PhaseError);
      return;
    }
    if (hostDir === 'out') {
      cmd.wanted = devDir === 'out' ? plan.length : 0;
      this.#phase = 'data-out';
      return;
    }
    void this.#execute(cmd, undefined);
  }

  async #dataOut(cmd: Command, t: Transfer, generation: number): Promise<void> {
    const h = cmd.cbw.dataTransferLength;
    const take = Math.min(t.length, h - cmd.received);
    const chunk = t.data.subarray(0, take);
    const before = cmd.received;
    cmd.received += take;
    const useful = Math.max(0, Math.min(cmd.wanted, cmd.received) - before);
    const last = cmd.received >= h || take < t.length;
    if (useful > 0) cmd.chunks.push(last ? chunk.subarray(0, useful) : Buffer.from(chunk.subarray(0, useful)));
    if (!last) {
      this.#completeOut(t, take);
      return;
    }
    const data = cmd.chunks.length === 1 ? cmd.chunks[0]! : Buffer.concat(cmd.chunks);
    cmd.chunks = [];
    await this.#execute(cmd, cmd.wanted > 0 ? data : undefined);
    if (generation !== this.#generation) return;
    this.#completeOut(t, take);
  }

  #completeOut(t: Transfer, length: number): void {
    t.status = TransferStatus.Ok;
    t.actualLength = length;
    this.#host.complete(t);
    this.#outBusy = false;
    this.#pumpOut();
  }

  async #execute(cmd: Command, dataOut: Buffer | undefined): Promise<void> {
    const generation = this.#generation;
    this.#phase = 'executing';
    const h = cmd.cbw.dataTransferLength;
    let result: Awaited<ReturnType<ScsiTarget['execute']>>;
    const run = this.#executing.then(() => this.#target.execute(cmd.cbw.cdb, dataOut));
    this.#executing = run.catch(() => {});
    try {
      result = await run;
    } catch (err) {
      log.error(`SCSI command 0x${cmd.cbw.cdb[0]!.toString(16)} threw: ${(err as Error).message}`);
      result = { status: 'check-condition' };
    }
    if (generation !== this.#generation) return;
    const status = result.status === 'good' ? CswStatus.Passed : CswStatus.Failed;
    if (cmd.cbw.dataIn && h > 0) {
      const data = result.data ?? EMPTY;
      cmd.inData = data.length > h ? data.subarray(0, h) : data;
      cmd.cswStatus = status;
      this.#phase = 'data-in';
      this.#pump();
      return;
    }
    const processed = cmd.cbw.dataIn ? 0 : Math.min(cmd.wanted, cmd.received);
    this.#finish(cmd, h - processed, status);
  }

  #finish(cmd: Command, residue: number, status: number): void {
    this.#csw = encodeCsw(cmd.cbw.tag, residue, status);
    this.#cmd = undefined;
    this.#phase = 'status';
    this.#pump();
  }

  /** IN transfers wait in the queue until there is data or a CSW to send. */
  #pump(): void {
    for (;;) {
      if (this.#phase === 'data-in' && this.#cmd) {
        const t = this.#host.take(BOT_IN);
        if (!t) return;
        this.#sendData(this.#cmd, t);
      } else if (this.#phase === 'status' && this.#csw) {
        const t = this.#host.take(BOT_IN);
        if (!t) return;
        if (t.length < CSW_SIZE) {
          t.fail(TransferStatus.Babble);
          this.#host.complete(t);
          continue;
        }
        t.completeIn(this.#csw);
        this.#csw = undefined;
        this.#phase = 'command';
        if (this.#host.complete(t)) this.#target.statusDelivered?.();
        this.#pumpOut();
      } else return;
    }
  }

  #sendData(cmd: Command, t: Transfer): void {
    const h = cmd.cbw.dataTransferLength;
    if (cmd.zlpOwed) {
      t.completeIn(EMPTY);
      this.#host.complete(t);
      this.#finish(cmd, h - cmd.sent, cmd.cswStatus);
      return;
    }
    const n = Math.min(t.length, cmd.inData.length - cmd.sent);
    const part = cmd.inData.subarray(cmd.sent, cmd.sent + n);
    cmd.sent += n;
    t.completeIn(part);
    this.#host.complete(t);
    if (cmd.sent < cmd.inData.length) return;
    if (n === t.length && cmd.sent < h) cmd.zlpOwed = true;
    else this.#finish(cmd, h - cmd.sent, cmd.cswStatus);
  }
}

const EMPTY = Buffer.alloc(0);
