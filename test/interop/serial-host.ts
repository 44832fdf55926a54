// The host end of a `--serial tcp:` port as the interop test sees it: a TCP client that
// collects what the guest writes, can stop reading (back-pressure) and can send.
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { sleep } from './rig.js';

export class SerialHostClient {
  readonly #socket: Socket;
  #chunks: Buffer[] = [];
  #bytes = 0;
  #wake: (() => void) | undefined;
  #closed = false;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on('data', (d: Buffer) => {
      this.#chunks.push(d);
      this.#bytes += d.length;
      this.#wake?.();
    });
    socket.on('close', () => {
      this.#closed = true;
      this.#wake?.();
    });
  }

  static connect(port: number): Promise<SerialHostClient> {
    return new Promise((resolve, reject) => {
      const s = connect(port, '127.0.0.1', () => {
        s.off('error', reject);
        s.on('error', () => {});
        resolve(new SerialHostClient(s));
      });
      s.once('error', reject);
    });
  }

  get received(): number {
    return this.#bytes;
  }

  /** Exactly `n` bytes from what arrived (waiting for them), removed from the buffer. */
  async take(n: number, timeoutMs: number, what: string): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.#bytes < n) {
      if (this.#closed) throw new Error(`${what}: connection closed after ${this.#bytes} of ${n} bytes`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${what}: ${this.#bytes} of ${n} bytes after ${timeoutMs} ms`);
      await new Promise<void>((r) => {
        const timer = setTimeout(r, Math.min(left, 1000));
        this.#wake = () => {
          clearTimeout(timer);
          r();
        };
      });
      this.#wake = undefined;
    }
    const all = Buffer.concat(this.#chunks);
    this.#chunks = all.length > n ? [all.subarray(n)] : [];
    this.#bytes -= n;
    return all.subarray(0, n);
  }

  pause(): void {
    this.#socket.pause();
  }

  resume(): void {
    this.#socket.resume();
  }

  write(data: Buffer): Promise<void> {
    return new Promise((resolve, reject) => this.#socket.write(data, (err) => (err ? reject(err) : resolve())));
  }

  close(): void {
    this.#socket.destroy();
  }
}

/** Poll a number file the guest rewrites until it has not changed for `stableMs`; its value. */
export async function waitStable(
  path: string,
  stableMs: number,
  timeoutMs: number,
  abort: () => boolean,
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let last = -1;
  let since = Date.now();
  while (Date.now() < deadline) {
    if (abort()) throw new Error(`${path}: the writer finished: it never blocked`);
    let value = -1;
    try {
      value = Number(readFileSync(path, 'utf8').trim() || '-1');
    } catch {
      // not written yet
    }
    if (value !== last) {
      last = value;
      since = Date.now();
    } else if (value > 0 && Date.now() - since >= stableMs) return value;
    await sleep(100);
  }
  throw new Error(`${path}: still changing (or never written) after ${timeoutMs} ms, last ${last}`);
}
