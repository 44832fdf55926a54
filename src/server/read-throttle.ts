import type { Duplex } from 'node:stream';
import type { Logger } from '../util/log.js';
import { type ConnectionLimits, HELD_INPUT_BYTES, resolveLimits } from './limits.js';

/** The parser side of a connection: it can stop emitting packets while keeping bytes. */
export interface HoldableParser {
  holdPackets(): void;
  releasePackets(): void;
}

/** What request handlers see of the throttle: one acquire and one release per request. */
export interface InFlightBudget {
  acquire(bytes: number): void;
  release(bytes: number): void;
}

/**
 * Back-pressure for one connection (see limits.ts): counts transfers and bytes in flight, holds
 * the parser at the cap, and stops reading the socket when held input grows past
 * HELD_INPUT_BYTES or the reply writer is congested. Resumes as soon as neither holds.
 */
export class ReadThrottle implements InFlightBudget {
  readonly #socket: Duplex;
  readonly #parser: HoldableParser;
  readonly #buffered: () => number;
  readonly #log: Logger;
  readonly #maxTransfers: number;
  readonly #maxBytes: number;
  readonly #writeStallTimeoutMs: number;
  #stallTimer: NodeJS.Timeout | undefined;
  #transfers = 0;
  #bytes = 0;
  #held = false;
  #writerCongested = false;
  #paused = false;
  #stopped = false;

  constructor(socket: Duplex, parser: HoldableParser, buffered: () => number, limits: ConnectionLimits, log: Logger) {
    this.#socket = socket;
    this.#parser = parser;
    this.#buffered = buffered;
    this.#log = log;
    const l = resolveLimits(limits);
    this.#maxTransfers = l.maxTransfersInFlight;
    this.#maxBytes = l.maxBytesInFlight;
    this.#writeStallTimeoutMs = l.writeStallTimeoutMs;
  }

  get transfers(): number {
    return this.#transfers;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** The parser is held: the connection is at its in-flight cap. */
  get held(): boolean {
    return this.#held;
  }

  acquire(bytes: number): void {
    this.#transfers++;
    this.#bytes += bytes;
    if (!this.#held && this.#overCap()) {
      this.#held = true;
      this.#log.debug(`${this.#transfers} transfers, ${this.#bytes} bytes in flight: holding further requests`);
      this.#parser.holdPackets();
    }
  }

  release(bytes: number): void {
    this.#transfers--;
    this.#bytes -= bytes;
    if (this.#held && !this.#stopped && !this.#overCap()) {
      this.#held = false;
      this.#releaseParser();
    }
    this.update();
  }

  /**
   * Held packets are parsed now, from a completion rather than the socket's data handler: a bad
   * one (or a handler that throws) must end this connection here, not escape into the caller's
   * promise chain as an unhandled rejection that takes the whole process down.
   */
  #releaseParser(): void {
    try {
      this.#parser.releasePackets();
    } catch (err) {
      const reason = (err as { reason?: unknown }).reason;
      if (typeof reason === 'string') this.#log.warn(`closing: ${reason}: ${(err as Error).message}`);
      else this.#log.error(`closing after internal error: ${(err as Error)?.stack ?? String(err)}`);
      this.stop();
      this.#socket.destroy();
    }
  }

  /** The connection is closing: no packet is emitted any more, whatever completes. */
  stop(): void {
    clearTimeout(this.#stallTimer);
    this.#stopped = true;
    this.#held = true;
    this.#parser.holdPackets();
  }

  /** From the reply writer: too much output queued (or no longer). */
  writerCongested(congested: boolean): void {
    this.#writerCongested = congested;
    clearTimeout(this.#stallTimer);
    // A peer that stops reading keeps its replies (and its device) forever unless dropped.
    if (congested && !this.#stopped) {
      this.#stallTimer = setTimeout(() => {
        this.#log.warn(
          `replies queued and not drained for ${this.#writeStallTimeoutMs} ms (the peer stopped reading), closing`,
        );
        this.#socket.destroy();
      }, this.#writeStallTimeoutMs);
    }
    this.update();
  }

  /** Re-evaluate after input was pushed to the parser or counts changed. */
  update(): void {
    const pause = this.#writerCongested || (this.#held && this.#buffered() >= HELD_INPUT_BYTES);
    if (pause === this.#paused || this.#socket.destroyed) return;
    this.#paused = pause;
    if (pause) this.#socket.pause();
    else this.#socket.resume();
  }

  #overCap(): boolean {
    return this.#transfers >= this.#maxTransfers || this.#bytes >= this.#maxBytes;
  }
}
