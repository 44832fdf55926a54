import type { Socket } from 'node:net';
import { type TransferTrace, traceNow } from '../util/trace.js';

/** Header first, then payload pieces (writev-friendly, never concatenated). */
/**
 * Replies queued on the socket beyond which the peer's requests stop being read. Not the stream's
 * highWaterMark (16 KiB): every 64 KiB reply would cross it and reading would stall once per
 * reply, turning a pipeline of transfers into a ping-pong.
 */
export const MAX_QUEUED_BYTES = 8 * 1024 * 1024;

export type Pdu = readonly Buffer[];

/**
 * Writes PDUs in order. Everything written in one tick goes out in a single writev (cork until
 * the next tick), so a header and its payload, and replies completing together, share a syscall.
 * When more than MAX_QUEUED_BYTES wait in the socket, reading stops until it drains: a client
 * cannot make the server queue unbounded replies.
 */
export class PduWriter {
  readonly #socket: Socket;
  #corked = false;
  #blocked = false;
  /** USBWIRE_TRACE only: replies written since the last uncork. */
  #traced: TransferTrace[] = [];

  constructor(socket: Socket) {
    this.#socket = socket;
  }

  write(pdu: Pdu, trace?: TransferTrace): void {
    const socket = this.#socket;
    if (socket.destroyed || socket.writableEnded) return;
    if (trace) {
      trace.write = traceNow();
      this.#traced.push(trace);
    }
    if (!this.#corked) {
      this.#corked = true;
      socket.cork();
      process.nextTick(this.#uncork);
    }
    if (trace) {
      for (let i = 0; i < pdu.length - 1; i++) socket.write(pdu[i]!);
      socket.write(pdu[pdu.length - 1]!, () => {
        trace.written = traceNow();
      });
    } else for (const piece of pdu) socket.write(piece);
    if (socket.writableLength > MAX_QUEUED_BYTES && !this.#blocked) {
      this.#blocked = true;
      socket.pause();
      socket.once('drain', () => {
        this.#blocked = false;
        if (!socket.destroyed) socket.resume();
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
