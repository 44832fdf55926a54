interface Chunk {
  lba: number;
  blocks: number;
  data: Buffer;
}

/**
 * One contiguous run of cached blocks [start, end), kept as the chunks that were fetched. Appending
 * anywhere but at the end starts a new run; invalidation keeps only what lies before the range.
 */
export class ExtentCache {
  #chunks: Chunk[] = [];

  constructor(readonly blockSize: number) {}

  get start(): number {
    return this.#chunks[0]?.lba ?? 0;
  }

  get end(): number {
    const last = this.#chunks.at(-1);
    return last ? last.lba + last.blocks : 0;
  }

  get empty(): boolean {
    return this.#chunks.length === 0;
  }

  get bytes(): number {
    return (this.end - this.start) * this.blockSize;
  }

  covers(lba: number, blocks: number): boolean {
    return !this.empty && blocks > 0 && lba >= this.start && lba + blocks <= this.end;
  }

  /** The bytes of [lba, lba+blocks), which covers() must have confirmed. */
  read(lba: number, blocks: number): Buffer {
    const parts: Buffer[] = [];
    let at = lba;
    const end = lba + blocks;
    for (const c of this.#chunks) {
      if (at >= end) break;
      if (c.lba + c.blocks <= at) continue;
      const from = (at - c.lba) * this.blockSize;
      const to = (Math.min(end, c.lba + c.blocks) - c.lba) * this.blockSize;
      parts.push(c.data.subarray(from, to));
      at = Math.min(end, c.lba + c.blocks);
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  /** Adds fetched blocks; data that does not continue the run replaces it. */
  append(lba: number, data: Buffer): void {
    const blocks = Math.floor(data.length / this.blockSize);
    if (blocks === 0) return;
    if (!this.empty && lba !== this.end) this.clear();
    this.#chunks.push({ lba, blocks, data: data.subarray(0, blocks * this.blockSize) });
  }

  /** Forgets every cached block at or after the first one of [lba, lba+blocks) that is cached. */
  invalidate(lba: number, blocks: number): boolean {
    if (this.empty || lba >= this.end || lba + blocks <= this.start) return false;
    const cut = Math.max(lba, this.start);
    const kept: Chunk[] = [];
    for (const c of this.#chunks) {
      if (c.lba >= cut) break;
      const n = Math.min(c.blocks, cut - c.lba);
      kept.push(n === c.blocks ? c : { lba: c.lba, blocks: n, data: c.data.subarray(0, n * this.blockSize) });
    }
    this.#chunks = kept;
    return true;
  }

  /** Releases chunks that end at or before `lba` (already consumed by a sequential reader). */
  dropBefore(lba: number): void {
    while (this.#chunks.length > 0 && this.#chunks[0]!.lba + this.#chunks[0]!.blocks <= lba) this.#chunks.shift();
  }

  clear(): void {
    this.#chunks = [];
  }
}
