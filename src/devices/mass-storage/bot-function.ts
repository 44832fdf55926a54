import type { ControlResult, FunctionHost, InterfaceSpec, UsbFunction } from '../../usb/function.js';
import type { SetupPacket } from '../../usb/setup.js';
import type { UsbSpeed } from '../../usb/speed.js';
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
}

export const BOT_IN = 0x81;
export const BOT_OUT = 0x02;

const REQ_GET_MAX_LUN = 0xfe;
const REQ_BULK_ONLY_RESET = 0xff;

type Phase = 'command' | 'executing' | 'data-in' | 'data-out' | 'status';

interface Waiting {
  t: Transfer;
  done: () => void;
}

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
  readonly #waitingIn: Waiting[] = [];

  constructor(target: ScsiTarget) {
    this.#target = target;
  }

  interfaces(speed: UsbSpeed): InterfaceSpec[] {
    const superSpeed = speed === 'super' || speed === 'super-plus';
    const mps = superSpeed ? 1024 : speed === 'high' ? 512 : 64;
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

  submit(t: Transfer): Promise<void> {
    if (t.endpoint === BOT_OUT) return this.#out(t);
    if (t.endpoint !== BOT_IN) {
      t.fail(TransferStatus.Invalid);
      return Promise.resolve();
    }
    return new Promise<void>((done) => {
      this.#waitingIn.push({ t, done });
      this.#pump();
    });
  }

  cancel(t: Transfer): void {
    const i = this.#waitingIn.findIndex((w) => w.t === t);
    if (i < 0) return;
    const [w] = this.#waitingIn.splice(i, 1);
    w!.t.fail(TransferStatus.Cancelled);
    w!.done();
  }

  setConfigured(_configured: boolean): void {
    this.#abort(TransferStatus.Cancelled);
  }

  setAlternate(): void {
    this.#abort(TransferStatus.Cancelled);
  }

  reset(): void {
    this.#abort(TransferStatus.Cancelled);
    this.#target.reset();
  }

  async close(): Promise<void> {
    this.#abort(TransferStatus.NoDevice);
  }

  #abort(status: TransferStatus): void {
    this.#generation++;
    this.#phase = 'command';
    this.#cmd = undefined;
    this.#csw = undefined;
    this.#failWaiting(status);
  }

  #failWaiting(status: TransferStatus): void {
    for (const w of this.#waitingIn.splice(0)) {
      w.t.fail(status);
      w.done();
    }
  }

  #bulkOnlyReset(): void {
    this.#abort(TransferStatus.Cancelled);
    // Reset Recovery follows with CLEAR_FEATURE(HALT) on both pipes: make a wedge clearable again.
    for (const ep of [BOT_IN, BOT_OUT]) {
      if (this.#host.isHalted(ep)) {
        this.#host.unhaltEndpoint(ep);
        this.#host.haltEndpoint(ep);
      }
    }
  }

  async #out(t: Transfer): Promise<void> {
    if (this.#phase === 'command') {
      this.#command(t);
      return;
    }
    if (this.#phase === 'data-out' && this.#cmd) {
      await this.#dataOut(this.#cmd, t);
      return;
    }
    log.warn(`bulk OUT of ${t.length} bytes in phase ${this.#phase}: stalling`);
    this.#host.haltEndpoint(BOT_OUT);
    t.fail(TransferStatus.Stall);
  }

  #command(t: Transfer): void {
    const data = t.data.subarray(0, t.length);
    t.status = TransferStatus.Ok;
    t.actualLength = data.length;
    const cbw = parseCbw(data);
    if (typeof cbw === 'string' || cbw.lun !== 0) {
      log.warn(`invalid CBW (${typeof cbw === 'string' ? cbw : `LUN ${cbw.lun}`}): halting until reset recovery`);
      this.#host.wedgeEndpoint(BOT_IN);
      this.#host.wedgeEndpoint(BOT_OUT);
      this.#failWaiting(TransferStatus.Stall);
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
      this.#finish(cmd, h, CswStatus.PhaseError);
      if (hostDir !== 'none') {
        this.#host.haltEndpoint(hostDir === 'in' ? BOT_IN : BOT_OUT);
        if (hostDir === 'in') this.#failWaiting(TransferStatus.Stall);
      }
      return;
    }
    if (hostDir === 'out') {
      cmd.wanted = devDir === 'out' ? plan.length : 0;
      this.#phase = 'data-out';
      return;
    }
    void this.#execute(cmd, undefined);
  }

  async #dataOut(cmd: Command, t: Transfer): Promise<void> {
    const h = cmd.cbw.dataTransferLength;
    const take = Math.min(t.length, h - cmd.received);
    const chunk = t.data.subarray(0, take);
    const before = cmd.received;
    cmd.received += take;
    const useful = Math.max(0, Math.min(cmd.wanted, cmd.received) - before);
    const last = cmd.received >= h || take < t.length;
    if (useful > 0) cmd.chunks.push(last ? chunk.subarray(0, useful) : Buffer.from(chunk.subarray(0, useful)));
    if (!last) {
      t.status = TransferStatus.Ok;
      t.actualLength = take;
      return;
    }
    const data = cmd.chunks.length === 1 ? cmd.chunks[0]! : Buffer.concat(cmd.chunks);
    cmd.chunks = [];
    await this.#execute(cmd, cmd.wanted > 0 ? data : undefined);
    t.status = TransferStatus.Ok;
    t.actualLength = take;
  }

  async #execute(cmd: Command, dataOut: Buffer | undefined): Promise<void> {
    const generation = this.#generation;
    this.#phase = 'executing';
    const h = cmd.cbw.dataTransferLength;
    let result: Awaited<ReturnType<ScsiTarget['execute']>>;
    try {
      result = await this.#target.execute(cmd.cbw.cdb, dataOut);
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

  #pump(): void {
    while (this.#waitingIn.length > 0) {
      if (this.#phase === 'data-in' && this.#cmd) {
        const cmd = this.#cmd;
        const w = this.#waitingIn.shift()!;
        if (cmd.zlpOwed) {
          w.t.completeIn(EMPTY);
          w.done();
          this.#finish(cmd, cmd.cbw.dataTransferLength - cmd.sent, cmd.cswStatus);
          return;
        }
        const n = Math.min(w.t.length, cmd.inData.length - cmd.sent);
        const part = cmd.inData.subarray(cmd.sent, cmd.sent + n);
        cmd.sent += n;
        const exhausted = cmd.sent >= cmd.inData.length;
        const short = n < w.t.length;
        w.t.completeIn(part);
        w.done();
        if (exhausted) {
          if (!short && cmd.sent < cmd.cbw.dataTransferLength) {
            cmd.zlpOwed = true;
            continue;
          }
          this.#finish(cmd, cmd.cbw.dataTransferLength - cmd.sent, cmd.cswStatus);
          return;
        }
        continue;
      }
      if (this.#phase === 'status' && this.#csw) {
        const w = this.#waitingIn.shift()!;
        if (w.t.length < CSW_SIZE) {
          w.t.fail(TransferStatus.Babble);
          w.done();
          continue;
        }
        const csw = this.#csw;
        this.#csw = undefined;
        this.#phase = 'command';
        w.t.completeIn(csw);
        w.done();
        continue;
      }
      return;
    }
  }
}

const EMPTY = Buffer.alloc(0);
