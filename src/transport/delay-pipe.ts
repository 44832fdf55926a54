import type { Duplex, Readable, Writable } from 'node:stream';

/** Time in milliseconds (monotonic) and one-shot timers; injectable for tests. */
export interface Clock {
  now(): number;
  /** Run fn after ms; returns a cancel function. */
  after(ms: number, fn: () => void): () => void;
}

export const realClock: Clock = {
  now: () => performance.now(),
  after: (ms, fn) => {
    const t = setTimeout(fn, ms);
    return () => clearTimeout(t);
  },
};

/** One direction of a link: one-way delay and an optional bandwidth cap. */
export interface LinkOptions {
  delayMs: number;
  /** Bytes per second; undefined: no cap. */
  bytesPerSecond?: number;
}

/** Queued bytes above which the reading side is paused: this plus the bandwidth-delay product. */
export const BASE_QUEUE_LIMIT = 8 * 1024 * 1024;
// A capped link releases a big chunk in slices, as a real link would, so the reader sees a stream.
const RATE_SLICE = 16 * 1024;

export function queueLimit(link: LinkOptions): number {
  const bdp = link.bytesPerSecond === undefined ? 0 : (link.bytesPerSecond * link.delayMs) / 1000;
  return BASE_QUEUE_LIMIT + Math.ceil(bdp);
}

interface Pending {
  chunk: Buffer;
  due: number;
}

/**
 * One direction: a chunk read from `from` at time t leaves on `to` at t + delay (plus its
 * serialization time at the rate cap, behind what the link is still sending). Departures are
 * by timestamp, so many requests in flight overlap as on a real link; order is kept because
 * due times never decrease. The reader is paused while the queue (ours plus `to`'s buffer) is
 * over the limit. The end of `from` is passed on as an end once everything before it has left.
 */
export class DelayedDirection {
  readonly #from: Readable;
  readonly #to: Writable;
  readonly #link: LinkOptions;
  readonly #clock: Clock;
  readonly #limit: number;
  readonly #queue: Pending[] = [];
  #queuedBytes = 0;
  #lineFreeAt = 0;
  #ended = false;
  #stopped = false;
  #paused = false;
  #cancelTimer: (() => void) | undefined;
  /** Bytes read from `from`. */
  bytes = 0;

  constructor(from: Readable, to: Writable, link: LinkOptions, clock: Clock = realClock) {
    this.#from = from;
    this.#to = to;
    this.#link = link;
    this.#clock = clock;
    this.#limit = queueLimit(link);
    from.on('data', (chunk: Buffer) => this.#take(chunk));
    from.once('end', () => this.finish());
    to.on('drain', () => this.#flowControl());
  }

  /** No more input (the reader ended or went away): end `to` once the queue has left. */
  finish(): void {
    if (this.#ended) return;
    this.#ended = true;
    if (this.#cancelTimer === undefined) this.#release();
  }

  /** Drop what is queued and never write again. */
  stop(): void {
    this.#stopped = true;
    this.#ended = true;
    this.#cancelTimer?.();
    this.#cancelTimer = undefined;
    this.#queue.length = 0;
    this.#queuedBytes = 0;
  }

  #take(chunk: Buffer): void {
    if (this.#stopped || this.#ended) return;
    this.bytes += chunk.length;
    const now = this.#clock.now();
    const rate = this.#link.bytesPerSecond;
    if (rate === undefined) {
      this.#queue.push({ chunk, due: now + this.#link.delayMs });
    } else {
      for (let off = 0; off < chunk.length; off += RATE_SLICE) {
        const slice = chunk.subarray(off, off + RATE_SLICE);
        this.#lineFreeAt = Math.max(now, this.#lineFreeAt) + (slice.length * 1000) / rate;
        this.#queue.push({ chunk: slice, due: this.#lineFreeAt + this.#link.delayMs });
      }
    }
    this.#queuedBytes += chunk.length;
    this.#flowControl();
    if (this.#cancelTimer === undefined) this.#release();
  }

  #release(): void {
    this.#cancelTimer = undefined;
    if (this.#stopped) return;
    if (this.#to.destroyed) {
      this.stop();
      return;
    }
    const now = this.#clock.now();
    let n = 0;
    while (n < this.#queue.length && this.#queue[n]!.due <= now) n++;
    if (n > 0) {
      this.#to.cork();
      for (const p of this.#queue.splice(0, n)) {
        this.#queuedBytes -= p.chunk.length;
        this.#to.write(p.chunk);
      }
      this.#to.uncork();
    }
    const head = this.#queue[0];
    if (head) {
      this.#cancelTimer = this.#clock.after(Math.max(1, Math.ceil(head.due - now)), () => this.#release());
    } else if (this.#ended && !this.#to.writableEnded) {
      this.#to.end();
    }
    this.#flowControl();
  }

  #flowControl(): void {
    if (this.#stopped) return;
    const pending = this.#queuedBytes + this.#to.writableLength;
    if (!this.#paused && pending > this.#limit) {
      this.#paused = true;
      this.#from.pause();
    } else if (this.#paused && pending <= this.#limit / 2) {
      this.#paused = false;
      this.#from.resume();
    }
  }
}

/** A socket is reset (RST), as a real link would pass a reset on; other streams are destroyed. */
function abort(stream: Duplex): void {
  const socket = stream as Duplex & { resetAndDestroy?: () => void };
  if (typeof socket.resetAndDestroy === 'function' && !socket.destroyed) socket.resetAndDestroy();
  else stream.destroy();
}

export interface DelayPipeResult {
  /** The first error on either side (both were then closed). */
  error?: Error;
  /** Bytes client → server and server → client. */
  up: number;
  down: number;
}

/**
 * Join two streams through a delayed link both ways (`up`: client → server). An end is passed
 * on as an end (half-close) after the delayed data; an error on either side resets both; a side
 * that closes ends the other after what is still queued for it. `done` is called once, when
 * both are closed.
 */
export function delayPipe(
  client: Duplex,
  server: Duplex,
  links: { up: LinkOptions; down: LinkOptions; clock?: Clock },
  done: (result: DelayPipeResult) => void,
): void {
  const up = new DelayedDirection(client, server, links.up, links.clock);
  const down = new DelayedDirection(server, client, links.down, links.clock);
  let failure: Error | undefined;
  const cut = (err: Error) => {
    failure ??= err;
    up.stop();
    down.stop();
    abort(client);
    abort(server);
  };
  client.on('error', cut);
  server.on('error', cut);
  client.once('close', () => {
    down.stop();
    up.finish();
  });
  server.once('close', () => {
    up.stop();
    down.finish();
  });
  let open = 2;
  const closed = () => {
    if (--open === 0) done({ error: failure, up: up.bytes, down: down.bytes });
  };
  client.once('close', closed);
  server.once('close', closed);
  client.resume();
  server.resume();
}
