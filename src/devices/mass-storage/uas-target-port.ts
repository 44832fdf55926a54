import type { FunctionHost } from '../../usb/function.js';
import { bulkMaxPacket } from '../../usb/speed.js';
import { TransferStatus } from '../../usb/status.js';
import type { Transfer } from '../../usb/transfer.js';
import { createLogger } from '../../util/log.js';
import { BOT_IN, BOT_OUT, type ScsiTarget } from './bot-function.js';
import { buildFixedSense, ScsiStatusByte, Sense } from './scsi/sense.js';
import {
  type CommandIu,
  decodeHostIu,
  encodeReadyIu,
  encodeResponseIu,
  encodeSenseIu,
  ResponseCode,
  TaskAttribute,
  TaskFunction,
  type TaskManagementIu,
} from './uas-wire.js';

export const UAS_STATUS = 0x83;
export const UAS_COMMAND = 0x04;
const DATA_IN = BOT_IN;
const DATA_OUT = BOT_OUT;

/** Commands in flight at most; further COMMAND IUs wait on the command pipe (NAK). */
const MAX_IN_FLIGHT = 256;
const WARN_BURST = 20;
const WARN_INTERVAL_MS = 10_000;

type ScsiResult = Awaited<ReturnType<ScsiTarget['execute']>>;

interface Command {
  readonly tag: number;
  readonly cdb: Buffer;
  readonly ordered: boolean;
  readonly generation: number;
  direction: 'none' | 'in' | 'out';
  /** Bytes planned in the data direction. */
  length: number;
  /** The data phase is open: data transfers on its stream (or the lane, at high speed) are its. */
  dataPhase: boolean;
  inData: Buffer;
  sent: number;
  received: number;
  chunks: Buffer[];
  /** Data-out transfers held until the write is in the backing store (their payload is used in place). */
  held: Transfer[];
  dataDone: (() => void) | undefined;
}

const log = createLogger('uas');

/**
 * The UAS target port of one logical unit: COMMAND and TASK MANAGEMENT IUs in on the command
 * pipe, many commands in flight against the SCSI target at once, completed in any order.
 * SuperSpeed with streams: a command's data and status go on the stream numbered by its tag.
 * Without streams (high speed): the status pipe carries every IU in order, and each data phase
 * is announced by READ READY / WRITE READY, one command at a time per data pipe (the lane).
 * As BOT: no status leaves before the target finished the command (a write is in the image).
 */
export class UasTargetPort {
  readonly #target: ScsiTarget;
  #host!: FunctionHost;
  readonly #commands = new Map<number, Command>();
  #generation = 0;
  /** Status IUs waiting for a status transfer: by stream (tag) with streams, stream 0 without. */
  readonly #status = new Map<number, Buffer[]>();
  /** High speed: commands waiting for their data phase, per data pipe; the head owns the pipe. */
  readonly #lanes = new Map<number, Command[]>([
    [DATA_IN, []],
    [DATA_OUT, []],
  ]);
  /** Executions under way, for ORDERED commands (which wait for all of them). */
  readonly #running = new Set<Promise<unknown>>();
  #barrier: Promise<unknown> = Promise.resolve();
  /** Complaints about the host's IUs: the first ones, then one summary per interval (a hostile host cannot flood the log). */
  #warned = 0;
  #suppressed = 0;
  #lastWarn = 0;

  constructor(target: ScsiTarget) {
    this.#target = target;
  }

  bind(host: FunctionHost): void {
    this.#host = host;
  }

  get #streaming(): boolean {
    return this.#host.streams(UAS_STATUS) > 0;
  }

  transferWaiting(address: number, streamId: number): void {
    if (address === UAS_COMMAND) this.#pumpCommands();
    else if (address === UAS_STATUS) this.#pumpStatus(streamId);
    else this.#pumpData(address, streamId);
  }

  /** Forget every command (alternate setting, configuration, reset, streams freed). */
  abortAll(): void {
    this.#generation++;
    const commands = [...this.#commands.values()];
    this.#commands.clear();
    for (const cmd of commands) cmd.dataDone?.();
    this.#status.clear();
    for (const lane of this.#lanes.values()) lane.length = 0;
  }

  #warn(message: string): void {
    const now = Date.now();
    if (this.#warned < WARN_BURST || now - this.#lastWarn >= WARN_INTERVAL_MS) {
      const more = this.#suppressed > 0 ? ` (and ${this.#suppressed} more complaints since the last one)` : '';
      log.warn(`${message}${more}`);
      this.#warned++;
      this.#suppressed = 0;
      this.#lastWarn = now;
    } else this.#suppressed++;
  }

  #pumpCommands(): void {
    while (this.#commands.size < MAX_IN_FLIGHT) {
      const t = this.#host.take(UAS_COMMAND);
      if (!t) return;
      const iu = decodeHostIu(t.data.subarray(0, t.length));
      t.status = TransferStatus.Ok;
      t.actualLength = t.length;
      this.#host.complete(t);
      if (iu.kind === 'command') this.#command(iu);
      else if (iu.kind === 'task-management') this.#taskManagement(iu);
      else {
        this.#warn(`invalid IU (${iu.reason})`);
        if (iu.tag !== undefined) this.#respond(iu.tag, ResponseCode.InvalidIu);
      }
    }
  }

  #command(iu: CommandIu): void {
    if (!this.#tagUsable(iu.tag)) return;
    const existing = this.#commands.get(iu.tag);
    if (existing) {
      // SAM: a tag reused while its task runs aborts that task; the host hears of the overlap.
      this.#warn(`tag ${iu.tag} reused while in flight: both aborted`);
      this.#abort(existing);
      this.#respond(iu.tag, ResponseCode.OverlappedTag);
      return;
    }
    const cmd: Command = {
      tag: iu.tag,
      cdb: iu.cdb,
      ordered: iu.attribute === TaskAttribute.Ordered,
      generation: this.#generation,
      direction: 'none',
      length: 0,
      dataPhase: false,
      inData: EMPTY,
      sent: 0,
      received: 0,
      chunks: [],
      held: [],
      dataDone: undefined,
    };
    this.#commands.set(iu.tag, cmd);
    if (iu.lun !== 0) {
      this.#finish(cmd, { status: 'check-condition', sense: buildFixedSense(Sense.LogicalUnitNotSupported) });
      return;
    }
    const plan = this.#target.plan(iu.cdb);
    cmd.direction = plan.length === 0 ? 'none' : plan.direction;
    cmd.length = plan.length;
    void this.#run(cmd);
  }

  /** With streams, status goes on the stream named by the tag: a tag outside them cannot be answered. */
  #tagUsable(tag: number): boolean {
    const streams = this.#host.streams(UAS_STATUS);
    if (streams === 0 || (tag >= 1 && tag <= streams)) return true;
    this.#warn(`tag ${tag} outside the ${streams} streams allocated: dropped (no stream to answer on)`);
    return false;
  }

  async #run(cmd: Command): Promise<void> {
    let dataOut: Buffer | undefined;
    if (cmd.direction === 'out') {
      await new Promise<void>((resolve) => {
        cmd.dataDone = resolve;
        this.#openData(cmd, DATA_OUT);
      });
      if (!this.#live(cmd)) {
        this.#release(cmd);
        return;
      }
      dataOut = cmd.chunks.length === 1 ? cmd.chunks[0]! : Buffer.concat(cmd.chunks);
      cmd.chunks = [];
    }
    const result = await this.#execute(cmd, dataOut);
    this.#release(cmd);
    if (!this.#live(cmd)) return;
    if (cmd.direction === 'in' && result.status === 'good' && result.data && result.data.length > 0) {
      cmd.inData = result.data.length > cmd.length ? result.data.subarray(0, cmd.length) : result.data;
      await new Promise<void>((resolve) => {
        cmd.dataDone = resolve;
        this.#openData(cmd, DATA_IN);
      });
      if (!this.#live(cmd)) return;
    }
    this.#finish(cmd, result);
  }

  #execute(cmd: Command, dataOut: Buffer | undefined): Promise<ScsiResult> {
    const before = cmd.ordered ? Promise.allSettled([...this.#running]) : this.#barrier;
    const run = before
      .then(() => this.#target.execute(cmd.cdb, dataOut))
      .catch((err: unknown): ScsiResult => {
        log.error(`SCSI command 0x${cmd.cdb[0]!.toString(16)} threw: ${(err as Error).message}`);
        return { status: 'check-condition', sense: buildFixedSense(Sense.InternalTargetFailure) };
      });
    this.#running.add(run);
    void run.finally(() => this.#running.delete(run));
    if (cmd.ordered) this.#barrier = run;
    return run;
  }

  #live(cmd: Command): boolean {
    return cmd.generation === this.#generation && this.#commands.get(cmd.tag) === cmd;
  }

  /** Data-out transfers go back to the host once their bytes are written (or the command is gone). */
  #release(cmd: Command): void {
    for (const t of cmd.held.splice(0)) {
      t.status = TransferStatus.Ok;
      t.actualLength = t.length;
      this.#host.complete(t);
    }
  }

  #finish(cmd: Command, result: ScsiResult): void {
    this.#commands.delete(cmd.tag);
    if (this.#streaming) this.#drainData(cmd.tag);
    const status = result.status === 'good' ? ScsiStatusByte.Good : ScsiStatusByte.CheckCondition;
    this.#queueStatus(
      cmd.tag,
      encodeSenseIu(cmd.tag, status, status === ScsiStatusByte.Good ? undefined : result.sense),
    );
  }

  #respond(tag: number, code: number): void {
    if (this.#tagUsable(tag)) this.#queueStatus(tag, encodeResponseIu(tag, code));
  }

  #queueStatus(tag: number, iu: Buffer): void {
    const stream = this.#streaming ? tag : 0;
    let queue = this.#status.get(stream);
    if (!queue) {
      queue = [];
      this.#status.set(stream, queue);
    }
    queue.push(iu);
    this.#pumpStatus(stream);
  }

  /** Queues stay per stream (at most the streams allocated, or one), so a command allocates none. */
  #pumpStatus(stream: number): void {
    const queue = this.#status.get(stream);
    while (queue && queue.length > 0) {
      const t = this.#host.take(UAS_STATUS, stream);
      if (!t) return;
      t.completeIn(queue.shift()!);
      this.#host.complete(t);
    }
  }

  /**
   * Data transfers still waiting on a finished command's stream are its own (the host posts them
   * before the COMMAND IU and cannot reuse the tag before the status): a command refused before
   * its data phase, or data the host offered beyond what the command moved. They end empty now,
   * so the next command with this tag cannot take them for its own data.
   */
  #drainData(stream: number): void {
    for (const pipe of [DATA_IN, DATA_OUT]) {
      for (let t = this.#host.take(pipe, stream); t; t = this.#host.take(pipe, stream)) {
        if (t.isIn) t.completeIn(EMPTY);
        else {
          t.status = TransferStatus.Ok;
          t.actualLength = 0;
        }
        this.#host.complete(t);
      }
    }
  }

  /** The command may use its data pipe: at once on its stream, or at high speed when its lane turn comes. */
  #openData(cmd: Command, pipe: number): void {
    if (this.#streaming) {
      cmd.dataPhase = true;
      this.#pumpData(pipe, cmd.tag);
      return;
    }
    const lane = this.#lanes.get(pipe)!;
    lane.push(cmd);
    if (lane.length === 1) this.#startLane(pipe);
  }

  #startLane(pipe: number): void {
    const head = this.#lanes.get(pipe)![0];
    if (!head) return;
    head.dataPhase = true;
    this.#queueStatus(head.tag, encodeReadyIu(head.tag, pipe === DATA_IN ? 'in' : 'out'));
    this.#pumpData(pipe, 0);
  }

  #pumpData(pipe: number, stream: number): void {
    for (;;) {
      const cmd = stream === 0 ? this.#lanes.get(pipe)?.[0] : this.#commands.get(stream);
      if (!cmd?.dataPhase || cmd.direction !== (pipe === DATA_IN ? 'in' : 'out')) return;
      const t = this.#host.take(pipe, stream);
      if (!t) return;
      const done = pipe === DATA_IN ? this.#sendData(cmd, t) : this.#receiveData(cmd, t);
      if (!done) continue;
      cmd.dataPhase = false;
      if (stream === 0) {
        this.#lanes.get(pipe)!.shift();
        this.#startLane(pipe);
      }
      cmd.dataDone?.();
      if (stream !== 0) return;
    }
  }

  /** True when the data-in phase is over (all sent, or the host took less: a short transfer ends it). */
  #sendData(cmd: Command, t: Transfer): boolean {
    const n = Math.min(t.length, cmd.inData.length - cmd.sent);
    t.completeIn(cmd.inData.subarray(cmd.sent, cmd.sent + n));
    cmd.sent += n;
    this.#host.complete(t);
    return cmd.sent >= cmd.inData.length;
  }

  #receiveData(cmd: Command, t: Transfer): boolean {
    const take = Math.min(t.length, cmd.length - cmd.received);
    if (take > 0) cmd.chunks.push(t.data.subarray(0, take));
    cmd.received += take;
    cmd.held.push(t);
    return cmd.received >= cmd.length || t.length === 0 || t.length % bulkMaxPacket(this.#host.speed) !== 0;
  }

  /** The task is gone: no status for it; its data pipe moves on; a write already started still lands. */
  #abort(cmd: Command): void {
    this.#commands.delete(cmd.tag);
    if (this.#streaming) this.#drainData(cmd.tag);
    for (const [pipe, lane] of this.#lanes) {
      const at = lane.indexOf(cmd);
      if (at < 0) continue;
      lane.splice(at, 1);
      if (at === 0) {
        // The host may have posted data for it after READ/WRITE READY: that transfer was its.
        for (let t = this.#host.take(pipe); t; t = this.#host.take(pipe)) {
          t.fail(TransferStatus.Cancelled);
          this.#host.complete(t);
        }
        this.#startLane(pipe);
      }
    }
    cmd.dataPhase = false;
    cmd.dataDone?.();
  }

  #taskManagement(iu: TaskManagementIu): void {
    if (this.#tagUsable(iu.tag)) this.#queueStatus(iu.tag, encodeResponseIu(iu.tag, this.#manage(iu)));
  }

  /** Carries out a task management function; the RESPONSE CODE for it. */
  #manage(iu: TaskManagementIu): number {
    if (this.#commands.has(iu.tag)) {
      this.#warn(`task management tag ${iu.tag} is a command in flight`);
      return ResponseCode.OverlappedTag;
    }
    if (iu.lun !== 0) return ResponseCode.IncorrectLun;
    switch (iu.function) {
      case TaskFunction.AbortTask: {
        const cmd = this.#commands.get(iu.taskTag);
        if (cmd) this.#abort(cmd);
        this.#warn(`ABORT TASK ${iu.taskTag}${cmd ? '' : ' (not in flight)'}`);
        return ResponseCode.Complete;
      }
      case TaskFunction.AbortTaskSet:
      case TaskFunction.ClearTaskSet:
        for (const cmd of [...this.#commands.values()]) this.#abort(cmd);
        return ResponseCode.Complete;
      case TaskFunction.LogicalUnitReset:
      case TaskFunction.ITNexusReset:
        this.#warn(`${iu.function === TaskFunction.LogicalUnitReset ? 'LOGICAL UNIT' : 'I_T NEXUS'} RESET`);
        for (const cmd of [...this.#commands.values()]) this.#abort(cmd);
        this.#target.reset();
        return ResponseCode.Complete;
      case TaskFunction.QueryTask:
        return this.#commands.has(iu.taskTag) ? ResponseCode.Succeeded : ResponseCode.Complete;
      default:
        return ResponseCode.NotSupported;
    }
  }
}

const EMPTY = Buffer.alloc(0);
