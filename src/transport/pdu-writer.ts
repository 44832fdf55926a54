import type { Duplex } from 'node:stream';
import { type TransferTrace, traceNow } from '../util/trace.js';

/**
 * Replies queued on the socket beyond which the peer's requests stop being read. Not the stream's
 * highWaterMark (16 KiB): every 64 KiB reply would cross it and reading would stall once per
 * reply, turning a pipeline of transfers into a ping-pong.
 */
export const MAX_QUEUED_BYTES = 8 * 1024 * 1024;

/** Header first, then payload pieces (writev-friendly, never concatenated). */
export type Pdu = readonly Buffer[];

/**
 * Writes PDUs in order, for both protocols. Everything written in one tick goes out in a single
 * writev (cork until the next tick), so a header and its payload, and replies completing together,
 * share a syscall. When more than MAX_QUEUED_BYTES wait in the socket, `onCongestion(true)` is
 * called until it drains (default: stop reading the socket), so a client cannot make the server
 * queue unbounded replies.
 */
export class PduWriter {
  readonly #socket: Duplex;
  readonly #onCongestion: (congested: boolean) => void;
  #corked = false;
  #congested = false;
  /** USBWIRE_TRACE only: replies written since the last uncork. */
  #traced: TransferTrace[] = [];

  constructor(socket: Duplex, onCongestion?: (congested: boolean) => void) {
    this.#socket = socket;
    this.#onCongestion =
      onCongestion ??
      ((congested) => {
        if (congested) socket.pause();
        else if (!socket.destroyed) socket.resume();
      });
  }

  /** More than MAX_QUEUED_BYTES are waiting to be sent. */
  get congested(): boolean {
    return this.#congested;
  }

  write(pdu: Pdu, trace?: TransferTrace): void {
    const socket = this.#socket;
    if (socket.destroyed || socket.writableEnded || pdu.length === 0) return;
    if (trace) {
      trace.write = traceNow();
      this.#traced.push(trace);
    }
    if (!this.#corked) {
      this.#corked = true;
      socket.cork();
      process.nextTick(this.#uncork);
    }
    const last = pdu.length - 1;
    for (let i = 0; i < last; i++) socket.write(pdu[i]!);
    if (trace) {
      socket.write(pdu[last]!, () => {
        trace.written = traceNow();
      });
    } else socket.write(pdu[last]!);
    if (socket.writableLength > MAX_QUEUED_BYTES && !this.#congested) {
      this.#congested = true;
      this.#onCongestion(true);
      socket.once('drain', () => {
        this.#congested = false;
        this.#onCongestion(false);
      });
    }
  }

  #uncork = (): void => {
    this.#corked = false;
    if (this.#traced.length > 0) {
      const t = traceNow();
      for (const r of this.#traced) r.flushed = t;
      this.#traced = [];
    }
    this.#socket.uncork();
  };
}
