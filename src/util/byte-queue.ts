/**
 * Received chunks kept as they are. `take(n)` hands out a view when the n bytes lie within one
 * chunk and copies only when they straddle chunks, so a stream is never concatenated as a whole.
 */
export class ByteQueue {
  #chunks: Buffer[] = [];
  #first = 0;
  #offset = 0;
  #length = 0;

  get length(): number {
    return this.#length;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#length += chunk.length;
  }

  /** The next n bytes (n <= length), consumed. The result may share memory with pushed chunks. */
  take(n: number): Buffer {
    if (n > this.#length) throw new RangeError(`take(${n}) with ${this.#length} bytes buffered`);
    if (n === 0) return EMPTY;
    const head = this.#chunks[this.#first]!;
    const available = head.length - this.#offset;
    if (n <= available) {
      const view = head.subarray(this.#offset, this.#offset + n);
      this.#advance(n);
      return view;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.#chunks[this.#first]!;
      const count = Math.min(n - filled, chunk.length - this.#offset);
      chunk.copy(out, filled, this.#offset, this.#offset + count);
      filled += count;
      this.#advance(count);
    }
    return out;
  }

  #advance(n: number): void {
    this.#offset += n;
    this.#length -= n;
    const head = this.#chunks[this.#first]!;
    if (this.#offset === head.length) {
      this.#chunks[this.#first] = EMPTY;
      this.#first++;
      this.#offset = 0;
      if (this.#first === this.#chunks.length) {
        this.#chunks = [];
        this.#first = 0;
      } else if (this.#first >= 64) {
        this.#chunks = this.#chunks.slice(this.#first);
        this.#first = 0;
      }
    }
  }
}

const EMPTY = Buffer.alloc(0);
