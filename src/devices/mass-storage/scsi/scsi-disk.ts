import type { BlockBackend } from '../backend/block-backend.js';
import { BLOCK_SIZE, type DecodeContext, type DecodedCommand, decodeCommand } from './decode.js';
import { DEFAULT_IDENTITY, type DiskIdentity, validateIdentity } from './identity.js';
import { opcodeName } from './opcodes.js';
import { buildFixedSense, FIXED_SENSE_LENGTH, isSameSense, Sense, type SenseCode } from './sense.js';

export interface ScsiDiskOptions {
  /** Write-protect the unit even if the backend is writable. */
  readOnly?: boolean;
  removable?: boolean;
  vendor?: string;
  product?: string;
  revision?: string;
  serial?: string;
  /** Report CMDQUE in INQUIRY (set for UAS, where many tags are in flight). */
  taggedQueuing?: boolean;
  /** Largest READ/WRITE accepted, in blocks (VPD B0 MAXIMUM TRANSFER LENGTH). Default 65535 (32 MiB). */
  maxTransferBlocks?: number;
  /** LUNs listed by REPORT LUNS. Default [0]. */
  luns?: readonly number[];
}

export type DataDirection = 'none' | 'in' | 'out';

export interface CommandPlan {
  readonly opcode: number;
  /** For logs, e.g. "Read10". */
  readonly name: string;
  readonly direction: DataDirection;
  /**
   * Bytes the device intends to transfer in that direction (0 with direction 'none'). For
   * data-in replies this is the reply truncated to the allocation length, so `execute` returns
   * exactly this many bytes when it succeeds in the same state. Commands that will fail before
   * their data phase (bad fields, out of range, write-protected, unit attention) plan 'none'.
   */
  readonly length: number;
}

export interface ScsiResult {
  readonly status: 'good' | 'check-condition';
  /** Data-in, at most the allocation length. */
  readonly data?: Buffer;
  /** Fixed-format sense (18 bytes) when status is 'check-condition'. */
  readonly sense?: Buffer;
}

const DEFAULT_MAX_TRANSFER_BLOCKS = 0xffff;

/**
 * One SCSI logical unit (direct-access block device, 512-byte blocks) over a BlockBackend,
 * independent of the transport. BOT: one command at a time, the host fetches sense with
 * REQUEST SENSE. UAS: commands may overlap; every failed result carries its sense.
 */
export class ScsiDisk {
  readonly identity: DiskIdentity;
  readonly readOnly: boolean;
  readonly capacityBlocks: number;
  private readonly maxTransferBlocks: number;
  private readonly luns: readonly number[];
  private lastSense: Buffer | undefined;
  private unitAttention: SenseCode | undefined;
  private mediumLoaded = true;
  private removalPrevented = false;
  /** When the host last locked the medium (PREVENT MEDIUM REMOVAL), while it is locked. */
  private preventedSince: Date | undefined;
  /** The operator took the medium away: the host cannot load it back (an empty slot). */
  private operatorRemoved = false;
  /** Resolves once the host has been told the operator removed the medium. */
  private removalReported: (() => void) | undefined;
  /** REQUEST SENSE has carried the removal to the host (BOT: the sense of a failed command). */
  private removalSenseSent = false;
  private removalNoticed: Promise<void> = Promise.resolve();
  /** Commands between decode and result; removeMedium() waits for them. */
  private inFlight = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(
    readonly backend: BlockBackend,
    options: ScsiDiskOptions = {},
  ) {
    if (backend.size <= 0 || backend.size % BLOCK_SIZE !== 0) {
      throw new Error(`backend size ${backend.size} is not a positive multiple of ${BLOCK_SIZE}`);
    }
    this.identity = {
      vendor: options.vendor ?? DEFAULT_IDENTITY.vendor,
      product: options.product ?? DEFAULT_IDENTITY.product,
      revision: options.revision ?? DEFAULT_IDENTITY.revision,
      ...(options.serial !== undefined ? { serial: options.serial } : {}),
      removable: options.removable ?? DEFAULT_IDENTITY.removable,
      taggedQueuing: options.taggedQueuing ?? DEFAULT_IDENTITY.taggedQueuing,
    };
    validateIdentity(this.identity);
    this.maxTransferBlocks = options.maxTransferBlocks ?? DEFAULT_MAX_TRANSFER_BLOCKS;
    if (
      !Number.isInteger(this.maxTransferBlocks) ||
      this.maxTransferBlocks < 1 ||
      this.maxTransferBlocks > 0xffffffff
    ) {
      throw new Error(`maxTransferBlocks ${this.maxTransferBlocks} out of range`);
    }
    this.luns = options.luns ?? [0];
    this.readOnly = (options.readOnly ?? false) || backend.readOnly;
    this.capacityBlocks = backend.size / BLOCK_SIZE;
  }

  /** False after the host ejected the medium (START STOP UNIT LoEj) until it loads it again. */
  get mediumPresent(): boolean {
    return this.mediumLoaded;
  }

  get mediumRemovalPrevented(): boolean {
    return this.removalPrevented;
  }

  /** Since when the host has held the medium locked, undefined while it is not locked. */
  get mediumLockedSince(): Date | undefined {
    return this.removalPrevented && this.mediumLoaded ? this.preventedSince : undefined;
  }

  /**
   * The operator takes the medium out, as from a card reader: whatever the host's lock says.
   * Commands already running finish first (a write that started is written whole); every
   * command after this one sees UNIT ATTENTION 06/3A/00 once, then NOT READY, MEDIUM NOT
   * PRESENT 02/3A/00, and the host cannot load it back (START STOP UNIT fails the same way)
   * until insertMedium(). Resolves once nothing is running any more.
   */
  async removeMedium(): Promise<void> {
    if (!this.operatorRemoved) {
      this.operatorRemoved = true;
      this.mediumLoaded = false;
      this.unitAttention = Sense.MediumRemoved;
      this.removalNoticed = new Promise((resolve) => (this.removalReported = resolve));
    }
    while (this.inFlight > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Resolves once the host has been told about removeMedium(): REQUEST SENSE reported it and
   * its status went out (statusDelivered) or the host went on to its next command. An idle host
   * may never ask.
   */
  get removalSeenByHost(): Promise<void> {
    return this.removalNoticed;
  }

  /** The medium is back (for the next host): the lock is gone and the host is told it changed. */
  insertMedium(): void {
    if (!this.operatorRemoved) return;
    this.operatorRemoved = false;
    this.mediumLoaded = true;
    this.removalPrevented = false;
    this.preventedSince = undefined;
    this.reportRemoval();
    if (!this.unitAttention || isSameSense(this.unitAttention, Sense.MediumRemoved)) {
      this.unitAttention = Sense.MediumMayHaveChanged;
    }
  }

  /** The transport delivered the status of the last command to the host. */
  statusDelivered(): void {
    if (this.removalSenseSent) this.reportRemoval();
  }

  private reportRemoval(): void {
    this.removalReported?.();
    this.removalReported = undefined;
    this.removalSenseSent = false;
  }

  /**
   * Bus/target reset: forget pending sense and medium-removal prevention; the next command
   * other than INQUIRY, REQUEST SENSE and REPORT LUNS fails once with UNIT ATTENTION 06/29/00.
   */
  reset(): void {
    this.lastSense = undefined;
    this.removalPrevented = false;
    this.preventedSince = undefined;
    this.unitAttention = Sense.PowerOnResetOccurred;
  }

  /** Decodes `cdb` against the current state without changing anything. */
  plan(cdb: Buffer): CommandPlan {
    const opcode = cdb.length > 0 ? cdb[0]! : -1;
    const name = opcode < 0 ? 'empty CDB' : opcodeName(opcode);
    let direction: DataDirection = 'none';
    let length = 0;
    try {
      [direction, length] = plannedTransfer(decodeCommand(cdb, this.decodeContext()));
    } catch {
      // execute() turns the same failure into CHECK CONDITION.
    }
    return { opcode, name, direction: length === 0 ? 'none' : direction, length };
  }

  /** Runs one command. Never throws: failures come back as CHECK CONDITION with sense. */
  async execute(cdb: Buffer, dataOut?: Buffer): Promise<ScsiResult> {
    // The host asks for more after REQUEST SENSE told it the medium is gone: it has the news.
    if (this.removalSenseSent) this.reportRemoval();
    let decoded: DecodedCommand;
    try {
      decoded = decodeCommand(cdb, this.decodeContext());
    } catch {
      decoded = { kind: 'fail', sense: Sense.InternalTargetFailure };
    }
    if (decoded.kind === 'request-sense') return this.requestSense(decoded.allocation);
    this.lastSense = undefined;
    if (decoded.kind === 'fail' && decoded.unitAttention) this.unitAttention = undefined;
    let result: ScsiResult;
    this.inFlight++;
    try {
      result = await this.run(decoded, dataOut);
    } catch {
      result = this.checkCondition(Sense.InternalTargetFailure);
    } finally {
      if (--this.inFlight === 0) for (const wake of this.idleWaiters.splice(0)) wake();
    }
    if (result.sense) this.lastSense = result.sense;
    return result;
  }

  private decodeContext(): DecodeContext {
    return {
      identity: this.identity,
      capacityBlocks: this.capacityBlocks,
      readOnly: this.readOnly,
      mediumPresent: this.mediumLoaded,
      unitAttention: this.unitAttention,
      maxTransferBlocks: this.maxTransferBlocks,
      luns: this.luns,
    };
  }

  private requestSense(allocation: number): ScsiResult {
    let sense = this.lastSense;
    if (!sense && this.unitAttention) {
      // SPC: with no other sense pending, REQUEST SENSE reports and clears a unit attention.
      sense = buildFixedSense(this.unitAttention);
      this.unitAttention = undefined;
    }
    this.lastSense = undefined;
    const data = sense ?? buildFixedSense(Sense.NoSense);
    if (this.operatorRemoved && data[12] === Sense.MediumNotPresent.asc) this.removalSenseSent = true;
    return { status: 'good', data: data.subarray(0, Math.min(allocation, FIXED_SENSE_LENGTH)) };
  }

  private async run(command: DecodedCommand, dataOut: Buffer | undefined): Promise<ScsiResult> {
    switch (command.kind) {
      case 'fail':
        return this.checkCondition(command.sense, command.information);
      case 'reply':
        return { status: 'good', data: command.data };
      case 'request-sense': // handled before run(); kept for exhaustiveness
        return this.requestSense(command.allocation);
      case 'no-data':
        return GOOD;
      case 'start-stop':
        return this.startStop(command.loadEject, command.start);
      case 'prevent-removal':
        if (command.prevent && !this.removalPrevented) this.preventedSince = new Date();
        this.removalPrevented = command.prevent;
        return GOOD;
      case 'synchronize-cache':
        return this.flushOr(Sense.WriteError);
      case 'read':
        return this.read(command.offset, command.length);
      case 'write':
        return this.write(command.offset, command.length, command.fua, dataOut);
      case 'verify':
        return this.verify(command.offset, command.length, command.compare, dataOut);
    }
  }

  private startStop(loadEject: boolean, start: boolean): ScsiResult {
    if (!loadEject || !this.identity.removable) return GOOD;
    if (start) {
      if (this.operatorRemoved) return this.checkCondition(Sense.MediumNotPresent);
      this.mediumLoaded = true;
      return GOOD;
    }
    if (this.removalPrevented) return this.checkCondition(Sense.MediumRemovalPrevented);
    this.mediumLoaded = false;
    return GOOD;
  }

  private async read(offset: number, length: number): Promise<ScsiResult> {
    if (length === 0) return GOOD;
    try {
      return { status: 'good', data: await this.backend.read(offset, length) };
    } catch {
      return this.checkCondition(Sense.UnrecoveredReadError);
    }
  }

  private async write(offset: number, length: number, fua: boolean, dataOut: Buffer | undefined): Promise<ScsiResult> {
    if (length === 0) return GOOD;
    if (!dataOut || dataOut.length < length) return this.checkCondition(Sense.DataPhaseError);
    try {
      await this.backend.write(offset, dataOut.length === length ? dataOut : dataOut.subarray(0, length));
    } catch {
      return this.checkCondition(Sense.WriteError);
    }
    return fua ? this.flushOr(Sense.WriteError) : GOOD;
  }

  private async verify(
    offset: number,
    length: number,
    compare: 'none' | 'full' | 'single-block',
    dataOut: Buffer | undefined,
  ): Promise<ScsiResult> {
    if (compare === 'none' || length === 0) return GOOD;
    const expectedLength = compare === 'full' ? length : BLOCK_SIZE;
    if (!dataOut || dataOut.length < expectedLength) return this.checkCondition(Sense.DataPhaseError);
    let medium: Buffer;
    try {
      medium = await this.backend.read(offset, length);
    } catch {
      return this.checkCondition(Sense.UnrecoveredReadError);
    }
    const mismatch = firstMismatch(medium, dataOut, compare === 'full' ? length : BLOCK_SIZE);
    // INFORMATION = offset in the data-out buffer of the first byte that differs (SBC).
    return mismatch === undefined ? GOOD : this.checkCondition(Sense.Miscompare, mismatch);
  }

  private async flushOr(failure: SenseCode): Promise<ScsiResult> {
    try {
      await this.backend.flush();
      return GOOD;
    } catch {
      return this.checkCondition(failure);
    }
  }

  private checkCondition(sense: SenseCode, information?: number): ScsiResult {
    return { status: 'check-condition', sense: buildFixedSense(sense, information) };
  }
}

const GOOD: ScsiResult = Object.freeze({ status: 'good' });

function plannedTransfer(command: DecodedCommand): [DataDirection, number] {
  switch (command.kind) {
    case 'reply':
      return ['in', command.data.length];
    case 'request-sense':
      return ['in', Math.min(command.allocation, FIXED_SENSE_LENGTH)];
    case 'read':
      return ['in', command.length];
    case 'write':
      return ['out', command.length];
    case 'verify':
      if (command.compare === 'none') return ['none', 0];
      return ['out', command.compare === 'full' ? command.length : Math.min(command.length, BLOCK_SIZE)];
    default:
      return ['none', 0];
  }
}

/**
 * Offset into `medium` of the first byte that differs from `dataOut`; with a pattern shorter
 * than the medium (BYTCHK=11b: one block compared against every block), the pattern repeats.
 */
function firstMismatch(medium: Buffer, dataOut: Buffer, patternLength: number): number | undefined {
  const pattern = dataOut.subarray(0, patternLength);
  for (let at = 0; at < medium.length; at += patternLength) {
    const piece = medium.subarray(at, at + patternLength);
    if (piece.equals(pattern)) continue;
    for (let i = 0; i < piece.length; i++) {
      if (piece[i] !== pattern[i]) return at + i;
    }
  }
  return undefined;
}
