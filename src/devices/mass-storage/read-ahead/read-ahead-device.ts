import { EventEmitter } from 'node:events';
import type { DeviceDescriptors, UsbDevice, UsbDeviceEvents } from '../../../usb/device.js';
import { StandardRequest } from '../../../usb/setup.js';
import type { UsbSpeed } from '../../../usb/speed.js';
import { TransferStatus } from '../../../usb/status.js';
import type { Transfer } from '../../../usb/transfer.js';
import { createLogger } from '../../../util/log.js';
import { type BotEndpoints, BotInitiator, findBotEndpoints, queuesEarlyTransfers } from '../bot-initiator.js';
import { type Cbw, parseCbw } from '../bot-wire.js';
import { Cdb } from '../scsi/cdb-builders.js';
import { parseCapacityReply } from '../scsi/cdb-plan.js';
import { Op } from '../scsi/opcodes.js';
import { parseSense, SenseKey } from '../scsi/sense.js';
import { type CdbEffect, cdbEffect, UNIT_ATTENTION_EXEMPT } from './cdb-effects.js';
import { ExtentCache } from './extent-cache.js';
import { cswOf, LocalReply } from './local-reply.js';
import { type ReadAheadOptions, SequentialPolicy } from './sequential-policy.js';

const log = createLogger('read-ahead');

export interface ReadAheadStats {
  /** Host READs answered from the cache. */
  hits: number;
  /** Host READs that went to the device. */
  misses: number;
  prefetches: number;
  failedPrefetches: number;
  prefetchedBytes: number;
  /** Prefetched bytes the host read. */
  usedBytes: number;
  /** hits / (hits + misses), 0 before any read. */
  hitRate: number;
}

/** Tags of our own commands: far from the small counters hosts use (Linux counts from 1). */
const PREFETCH_FIRST_TAG = 0xa5000000;
const MAX_READ10_BLOCKS = 0xffff;
const EMPTY = Buffer.alloc(0);

interface Waiting {
  t: Transfer;
  resolve: () => void;
}

/** A host command going to the device; its transfers pass through, watched. */
interface PassCommand {
  kind: 'pass';
  /** Undefined after an invalid CBW: everything passes until the host resets the transport. */
  cbw: Cbw | undefined;
  effect: CdbEffect;
  /** The CBW went to the device (until then the command waits for our prefetch). */
  forwarded: boolean;
  /** Bytes of host transfers that may still go to the device as data, and CSW reads allowed. */
  outBudget: number;
  inBudget: number;
  cswSlots: number;
  dataOver: boolean;
  dataReceived: number;
  /** Data-in of READ CAPACITY, to learn the medium's size. */
  capacityData: Buffer[] | undefined;
}

interface LocalCommand {
  kind: 'local';
  reply: LocalReply;
}

/**
 * Read-ahead in front of a Bulk-Only mass storage device. Everything passes through unchanged
 * except the host's BOT traffic, which it watches: when READs are sequential it fetches the next
 * extent with its own BOT commands while the host is busy elsewhere (its round trips), and
 * answers a READ that lies wholly in fetched data itself (CBW, data and CSW, without the device).
 * Writes and anything that may change the medium invalidate; writes always pass through, so the
 * CSW the host gets for a write is the device's.
 */
export class ReadAheadDevice extends EventEmitter<UsbDeviceEvents> implements UsbDevice {
  readonly #inner: UsbDevice;
  readonly #policy: SequentialPolicy;
  readonly #pipelined: boolean;
  #cache = new ExtentCache(512);
  #capacity: number | undefined;
  #eps: BotEndpoints | undefined;
  /** The configuration and alternate settings #eps was computed for (-1: recompute). */
  #epsKey = -1;
  #initiator: BotInitiator | undefined;
  #cmd: PassCommand | LocalCommand | undefined;
  /** A host CBW waiting for our prefetch to end. */
  #waitingCbw: Waiting | undefined;
  readonly #heldIn: Waiting[] = [];
  readonly #heldOut: Waiting[] = [];
  /** Host bulk transfers at the device right now. */
  readonly #forwarded = new Set<Transfer>();
  #prefetch: Promise<void> | undefined;
  /** Requests that must not overlap a prefetch (resets, SET_CONFIGURATION...) in progress. */
  #blockers = 0;
  /** Bumped by every invalidation: a prefetch started before it is thrown away. */
  #epoch = 0;
  /** The host completed a command a pending UNIT ATTENTION would have failed: none is pending. */
  #unitAttentionClear = false;
  /** Sense our prefetch took (a UNIT ATTENTION) that the host must still be told. */
  #pendingSense: Buffer | undefined;
  #senseReplay = false;
  /** A prefetch failed here: none again at or past it until the cache is dropped. */
  #failedFrom = Number.POSITIVE_INFINITY;
  #pumping = false;
  readonly #stats = { hits: 0, misses: 0, prefetches: 0, failedPrefetches: 0, prefetchedBytes: 0, usedBytes: 0 };

  constructor(inner: UsbDevice, opts: ReadAheadOptions = {}) {
    super();
    this.#inner = inner;
    this.#policy = new SequentialPolicy(opts);
    this.#pipelined = opts.pipelined ?? queuesEarlyTransfers(inner);
    // Streams belong to a UAS setting, where nothing is watched: they pass straight through.
    if (inner.allocStreams) this.allocStreams = (endpoints, streams) => inner.allocStreams!(endpoints, streams);
    if (inner.freeStreams) this.freeStreams = (endpoints) => inner.freeStreams!(endpoints);
    inner.on('disconnect', () => {
      this.#logStats();
      this.#dropAll();
      this.#abandonHeld(TransferStatus.NoDevice);
      this.emit('disconnect');
    });
  }

  allocStreams?: (endpoints: number[], streams: number) => Promise<number | TransferStatus>;
  freeStreams?: (endpoints: number[]) => Promise<TransferStatus>;

  get name(): string {
    return `${this.#inner.name} (read-ahead)`;
  }
  get speed(): UsbSpeed {
    return this.#inner.speed;
  }
  get descriptors(): DeviceDescriptors {
    return this.#inner.descriptors;
  }
  get configuration(): number {
    return this.#inner.configuration;
  }
  alternateSetting(interfaceNumber: number): number {
    return this.#inner.alternateSetting(interfaceNumber);
  }

  stats(): ReadAheadStats {
    const s = this.#stats;
    const reads = s.hits + s.misses;
    return { ...s, hitRate: reads === 0 ? 0 : s.hits / reads };
  }

  submit(t: Transfer): Promise<void> {
    if (t.type === 'control') return this.#control(t);
    const eps = this.#botEndpoints();
    if (!eps || t.type !== 'bulk' || (t.endpoint !== eps.inEp && t.endpoint !== eps.outEp)) {
      return this.#inner.submit(t);
    }
    return new Promise((resolve) => {
      (t.isIn ? this.#heldIn : this.#heldOut).push({ t, resolve });
      this.#pump();
    });
  }

  cancel(t: Transfer): void {
    for (const queue of [this.#heldIn, this.#heldOut]) {
      const i = queue.findIndex((w) => w.t === t);
      if (i >= 0) {
        const [w] = queue.splice(i, 1);
        t.fail(TransferStatus.Cancelled);
        w!.resolve();
        return;
      }
    }
    if (this.#waitingCbw?.t === t) {
      const w = this.#waitingCbw;
      this.#waitingCbw = undefined;
      this.#cmd = undefined;
      t.fail(TransferStatus.Cancelled);
      w.resolve();
      this.#pump();
      return;
    }
    this.#inner.cancel(t);
  }

  async reset(): Promise<void> {
    this.#blockers++;
    try {
      this.#initiator?.abortCurrent();
      await this.#prefetchIdle();
      this.#forgetHost();
      this.#unitAttentionClear = false;
      this.#pendingSense = undefined;
      this.#abandonHeld(TransferStatus.Cancelled);
      await this.#inner.reset();
    } finally {
      this.#blockers--;
      this.#epsKey = -1;
    }
  }

  #statsLogged = false;

  /** One line with the hit rate when the device closes or goes away. */
  #logStats(): void {
    if (this.#statsLogged) return;
    this.#statsLogged = true;
    const s = this.stats();
    log.info(
      `${this.#inner.name}: read-ahead hit rate ${(s.hitRate * 100).toFixed(1)}% (${s.hits} hits, ${s.misses} misses, ` +
        `${mib(s.prefetchedBytes)} MiB prefetched, ${mib(s.usedBytes)} MiB used)`,
    );
  }

  async close(): Promise<void> {
    this.#logStats();
    this.#initiator?.close();
    this.#abandonHeld(TransferStatus.Cancelled);
    await this.#inner.close();
  }

  // --- endpoint 0 -----------------------------------------------------------------------------

  /** Requests that change the BOT state wait for our prefetch, then drop the cache. */
  async #control(t: Transfer): Promise<void> {
    const s = t.setup!;
    const kind =
      s.bmRequestType === 0x00 && s.bRequest === StandardRequest.SetConfiguration
        ? 'configure'
        : s.bmRequestType === 0x01 && s.bRequest === StandardRequest.SetInterface
          ? 'configure'
          : s.bmRequestType === 0x21 && s.bRequest === 0xff
            ? 'transport-reset'
            : s.bmRequestType === 0x02 && s.bRequest === StandardRequest.ClearFeature && s.wValue === 0
              ? 'clear-halt'
              : undefined;
    if (!kind) return this.#inner.submit(t);
    this.#blockers++;
    try {
      await this.#prefetchIdle();
      this.#dropAll();
      await this.#inner.submit(t);
      if (kind === 'configure') {
        this.#epsKey = -1;
        this.#unitAttentionClear = false;
      }
      if (kind !== 'clear-halt') this.#forgetHost();
    } finally {
      this.#blockers--;
    }
    this.#pump();
    this.#schedulePrefetch();
  }

  /** The host's transport state is reset: its next OUT transfer is a CBW. */
  #forgetHost(): void {
    this.#dropAll();
    this.#policy.reset();
    this.#cmd = undefined;
    this.#senseReplay = false;
  }

  #botEndpoints(): BotEndpoints | undefined {
    const key = this.#inner.configuration;
    if (key !== this.#epsKey) {
      this.#epsKey = key;
      const eps = key === 0 ? undefined : findBotEndpoints(this.#inner);
      if (!sameEndpoints(eps, this.#eps)) {
        this.#initiator?.close();
        this.#initiator = eps
          ? new BotInitiator(this.#inner, eps, {
              firstTag: PREFETCH_FIRST_TAG,
              timeoutMs: 10_000,
              pipelined: this.#pipelined,
            })
          : undefined;
      }
      this.#eps = eps;
    }
    return this.#eps;
  }

  // --- the host's commands --------------------------------------------------------------------

  #pump(): void {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (this.#pumpOut() || this.#pumpIn()) {
        // until neither queue moves
      }
    } finally {
      this.#pumping = false;
    }
  }

  #pumpOut(): boolean {
    const head = this.#heldOut[0];
    const cmd = this.#cmd;
    if (!head) return false;
    if (!cmd) {
      this.#heldOut.shift();
      this.#startCommand(head);
      return true;
    }
    if (cmd.kind === 'pass' && cmd.forwarded && cmd.outBudget > 0) {
      this.#heldOut.shift();
      cmd.outBudget -= head.t.length;
      this.#forward(head);
      return true;
    }
    return false;
  }

  #pumpIn(): boolean {
    const head = this.#heldIn[0];
    const cmd = this.#cmd;
    if (!head || !cmd) return false;
    if (cmd.kind === 'local') {
      this.#heldIn.shift();
      if (cmd.reply.serve(head.t)) {
        this.#cmd = undefined;
        this.#schedulePrefetch();
      }
      head.resolve();
      return true;
    }
    if (!cmd.forwarded || (cmd.inBudget <= 0 && cmd.cswSlots <= 0)) return false;
    this.#heldIn.shift();
    if (cmd.inBudget > 0) cmd.inBudget -= head.t.length;
    else cmd.cswSlots--;
    this.#forward(head);
    return true;
  }

  #startCommand(w: Waiting): void {
    const cbw = parseCbw(w.t.data.subarray(0, w.t.length));
    if (typeof cbw === 'string') {
      // The device will wedge both pipes until Reset Recovery; stay out of the way until then.
      this.#dropAll();
      this.#passThrough(w, undefined, { kind: 'drop-all' });
      return;
    }
    const hasDataOut = !cbw.dataIn && cbw.dataTransferLength > 0;
    const effect: CdbEffect = cbw.lun === 0 ? cdbEffect(cbw.cdb, hasDataOut) : { kind: 'drop-all' };
    const local = this.#localAnswer(cbw, effect);
    if (local) this.#answerLocally(w, local);
    else this.#passThrough(w, cbw, effect);
  }

  #answerLocally(w: Waiting, reply: LocalReply): void {
    this.#cmd = { kind: 'local', reply };
    w.t.status = TransferStatus.Ok;
    w.t.actualLength = w.t.length;
    w.resolve();
    this.#schedulePrefetch();
  }

  #passThrough(w: Waiting, cbw: Cbw | undefined, effect: CdbEffect): void {
    const h = cbw?.dataTransferLength ?? 0;
    const dataIn = cbw ? cbw.dataIn && h > 0 : false;
    const cmd: PassCommand = {
      kind: 'pass',
      cbw,
      effect,
      forwarded: false,
      outBudget: cbw ? (dataIn ? 0 : h) : Number.POSITIVE_INFINITY,
      inBudget: cbw ? (dataIn ? h : 0) : Number.POSITIVE_INFINITY,
      cswSlots: 1,
      dataOver: !dataIn,
      dataReceived: 0,
      capacityData: cbw && isCapacityCommand(cbw.cdb) ? [] : undefined,
    };
    this.#cmd = cmd;
    void this.#forwardCommand(cmd, w);
  }

  async #forwardCommand(cmd: PassCommand, w: Waiting): Promise<void> {
    if (this.#prefetch) {
      this.#waitingCbw = w;
      await this.#prefetchIdle();
      if (this.#waitingCbw !== w) return; // cancelled meanwhile
      this.#waitingCbw = undefined;
      if (this.#cmd !== cmd) {
        w.t.fail(TransferStatus.Cancelled);
        w.resolve();
        return;
      }
      // The prefetch we waited for may have brought exactly this READ.
      const local = cmd.cbw && this.#localAnswer(cmd.cbw, cmd.effect);
      if (local) {
        this.#answerLocally(w, local);
        this.#pump();
        return;
      }
    }
    if (cmd.effect.kind === 'write') {
      this.#cache.invalidate(cmd.effect.lba, cmd.effect.blocks);
      this.#epoch++;
      this.#failedFrom = Number.POSITIVE_INFINITY;
      this.#policy.reset(); // reads mixed with writes: prove sequential again before fetching more
    } else if (cmd.effect.kind === 'drop-all') {
      this.#dropAll();
      this.#policy.reset();
    } else if (cmd.effect.kind === 'read') this.#stats.misses++;
    cmd.forwarded = true;
    this.#forward(w);
    this.#pump();
  }

  #forward(w: Waiting): void {
    this.#forwarded.add(w.t);
    void this.#inner.submit(w.t).then(() => {
      this.#forwarded.delete(w.t);
      if (w.t.isIn) this.#observeIn(w.t);
      w.resolve();
      this.#pump();
      this.#schedulePrefetch();
    });
  }

  /** Follows a passed-through command's data-in and CSW. */
  #observeIn(t: Transfer): void {
    const cmd = this.#cmd;
    if (cmd?.kind !== 'pass' || !cmd.cbw) return;
    if (!cmd.dataOver) {
      const ok = t.status === TransferStatus.Ok || t.status === TransferStatus.ShortPacket;
      if (ok) {
        cmd.dataReceived += t.actualLength;
        cmd.capacityData?.push(Buffer.from(t.data.subarray(0, t.actualLength)));
      }
      if (!ok || t.actualLength < t.length || cmd.dataReceived >= cmd.cbw.dataTransferLength) cmd.dataOver = true;
      return;
    }
    const csw = cswOf(t, cmd.cbw.tag);
    if (!csw) {
      cmd.cswSlots++; // a stalled or empty CSW read: the host reads again
      return;
    }
    this.#cmd = undefined;
    const good = csw.status === 0;
    if (good && !UNIT_ATTENTION_EXEMPT.has(cmd.cbw.cdb[0]!)) this.#unitAttentionClear = true;
    if (good && cmd.capacityData) this.#learnCapacity(cmd.cbw.cdb, Buffer.concat(cmd.capacityData));
    if (cmd.effect.kind !== 'read') return;
    if (good && csw.residue === 0) this.#policy.onRead(cmd.effect.lba, cmd.effect.blocks, this.#cache.blockSize);
    else this.#policy.reset();
  }

  /** A reply made here: a READ inside the cache, or the replay of sense our prefetch took. */
  #localAnswer(cbw: Cbw, effect: CdbEffect): LocalReply | undefined {
    const opcode = cbw.cdb[0]!;
    if (this.#pendingSense) {
      const sense = this.#pendingSense;
      if (this.#senseReplay && opcode === Op.RequestSense && cbw.dataIn) {
        this.#pendingSense = undefined;
        this.#senseReplay = false;
        return new LocalReply(cbw.tag, cbw.dataTransferLength, sense.subarray(0, cbw.cdb[4]), 0);
      }
      if (UNIT_ATTENTION_EXEMPT.has(opcode)) return undefined;
      if (!cbw.dataIn && cbw.dataTransferLength > 0) {
        this.#pendingSense = undefined; // a data-out command: the device answers it
        return undefined;
      }
      this.#senseReplay = true;
      return new LocalReply(cbw.tag, cbw.dataTransferLength, EMPTY, 1);
    }
    if (effect.kind !== 'read' || !cbw.dataIn || cbw.lun !== 0 || this.#forwarded.size > 0) return undefined;
    const bytes = effect.blocks * this.#cache.blockSize;
    if (cbw.dataTransferLength !== bytes || !this.#cache.covers(effect.lba, effect.blocks)) return undefined;
    const data = this.#cache.read(effect.lba, effect.blocks);
    this.#cache.dropBefore(effect.lba);
    this.#stats.hits++;
    this.#stats.usedBytes += bytes;
    this.#policy.onRead(effect.lba, effect.blocks, this.#cache.blockSize);
    return new LocalReply(cbw.tag, cbw.dataTransferLength, data, 0);
  }

  #learnCapacity(cdb: Buffer, data: Buffer): boolean {
    const capacity = parseCapacityReply(cdb, data);
    if (!capacity) return false;
    this.#capacity = capacity.blocks;
    if (capacity.blockSize !== this.#cache.blockSize) {
      this.#cache = new ExtentCache(capacity.blockSize);
      this.#epoch++;
    }
    return true;
  }

  // --- prefetch -------------------------------------------------------------------------------

  #schedulePrefetch(): void {
    if (
      this.#prefetch ||
      this.#blockers > 0 ||
      this.#cmd?.kind === 'pass' ||
      this.#forwarded.size > 0 ||
      !this.#initiator ||
      !this.#unitAttentionClear ||
      this.#pendingSense ||
      !this.#policy.sequential
    ) {
      return;
    }
    const initiator = this.#initiator;
    if (this.#capacity === undefined) {
      this.#prefetch = this.#runPrefetch(() => this.#readCapacity(initiator));
      return;
    }
    const bs = this.#cache.blockSize;
    const next = this.#policy.nextLba;
    const cache = this.#cache;
    const continues = !cache.empty && next >= cache.start && next <= cache.end;
    const start = continues ? cache.end : next;
    const ahead = Math.floor(this.#policy.aheadBytes() / bs);
    const want = Math.min(this.#policy.chunkBlocks(bs), MAX_READ10_BLOCKS, ahead);
    // Top the window up by whole chunks, not by each read the host takes from it.
    if (want <= 0 || next + ahead - start < want) return;
    const blocks = Math.min(want, this.#capacity - start, this.#failedFrom - start);
    if (blocks <= 0) return;
    this.#policy.fetched(blocks, bs);
    if (!continues) cache.clear();
    this.#prefetch = this.#runPrefetch(() => this.#fetch(initiator, start, blocks));
  }

  #runPrefetch(job: () => Promise<void>): Promise<void> {
    return (async () => {
      try {
        await job();
      } catch (err) {
        log.warn(`prefetch failed: ${(err as Error).message}`);
      } finally {
        this.#prefetch = undefined;
        this.#pump();
        this.#schedulePrefetch();
      }
    })();
  }

  async #prefetchIdle(): Promise<void> {
    while (this.#prefetch) await this.#prefetch;
  }

  async #fetch(initiator: BotInitiator, lba: number, blocks: number): Promise<void> {
    const epoch = this.#epoch;
    const bs = this.#cache.blockSize;
    const cdb = lba + blocks > 0xffffffff ? Cdb.read16(lba, blocks) : Cdb.read10(lba, blocks);
    const r = await initiator.execute(cdb, { direction: 'in', length: blocks * bs });
    this.#stats.prefetches++;
    if (r.status === 'aborted') return;
    if (r.status === 'good' && r.residue === 0 && r.data?.length === blocks * bs) {
      if (epoch !== this.#epoch || bs !== this.#cache.blockSize) return;
      this.#cache.append(lba, r.data);
      this.#stats.prefetchedBytes += r.data.length;
      return;
    }
    this.#prefetchFailed(lba, r.sense, r.transportError);
  }

  async #readCapacity(initiator: BotInitiator): Promise<void> {
    for (const cdb of [Cdb.readCapacity10(), Cdb.readCapacity16()]) {
      const r = await initiator.execute(cdb);
      if (r.status === 'aborted') return;
      if (r.status === 'good' && r.data && this.#learnCapacity(cdb, r.data)) return;
      if (r.status !== 'good') {
        this.#prefetchFailed(0, r.sense, r.transportError);
        break;
      }
    }
    this.#capacity ??= 0; // unknown: no prefetch until the host's READ CAPACITY tells
  }

  #prefetchFailed(lba: number, sense: Buffer | undefined, transportError: string | undefined): void {
    this.#stats.failedPrefetches++;
    this.#failedFrom = Math.min(this.#failedFrom, lba);
    const parsed = sense && !transportError ? parseSense(sense) : undefined;
    log.debug(`prefetch at LBA ${lba} failed: ${transportError ?? `sense key ${parsed?.key ?? '?'}`}`);
    if (parsed?.key === SenseKey.UnitAttention) {
      // Ours took it from the device: the host is told on its next command.
      const failedFrom = this.#failedFrom;
      this.#dropAll();
      this.#failedFrom = failedFrom;
      this.#pendingSense = sense;
      this.#unitAttentionClear = false;
    }
  }

  #dropAll(): void {
    this.#cache.clear();
    this.#epoch++;
    this.#failedFrom = Number.POSITIVE_INFINITY;
  }

  #abandonHeld(status: TransferStatus): void {
    for (const w of [...this.#heldIn.splice(0), ...this.#heldOut.splice(0)]) {
      w.t.fail(status);
      w.resolve();
    }
  }
}

function isCapacityCommand(cdb: Buffer): boolean {
  return cdb[0] === Op.ReadCapacity10 || (cdb[0] === Op.ServiceActionIn16 && ((cdb[1] ?? 0) & 0x1f) === 0x10);
}

function sameEndpoints(a: BotEndpoints | undefined, b: BotEndpoints | undefined): boolean {
  return a?.interfaceNumber === b?.interfaceNumber && a?.inEp === b?.inEp && a?.outEp === b?.outEp;
}

function mib(bytes: number): string {
  return (bytes / (1024 * 1024)).toFixed(1);
}
