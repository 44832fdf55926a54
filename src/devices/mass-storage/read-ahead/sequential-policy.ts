export interface ReadAheadOptions {
  /** Largest single prefetch command (default 1 MiB). */
  maxChunkBytes?: number;
  /** Most data fetched ahead of the reader (default 4 MiB). */
  windowBytes?: number;
  /** Sequential reads in a row before prefetching starts (default 2). */
  minStreak?: number;
}

/**
 * Decides whether the reader is sequential and how much to fetch next: the first prefetch is
 * twice the last read, each next one doubles, up to maxChunkBytes.
 */
export class SequentialPolicy {
  readonly maxChunkBytes: number;
  readonly windowBytes: number;
  readonly minStreak: number;
  #next = -1;
  #streak = 0;
  #lastBytes = 0;
  #chunkBytes = 0;

  constructor(opts: ReadAheadOptions = {}) {
    this.maxChunkBytes = Math.max(4096, opts.maxChunkBytes ?? 1024 * 1024);
    this.windowBytes = Math.max(this.maxChunkBytes, opts.windowBytes ?? 4 * 1024 * 1024);
    this.minStreak = Math.max(1, opts.minStreak ?? 2);
  }

  /** The reader read [lba, lba+blocks) (hit or miss). */
  onRead(lba: number, blocks: number, blockSize: number): void {
    if (lba === this.#next) this.#streak++;
    else {
      this.#streak = 1;
      this.#chunkBytes = 0;
    }
    this.#next = lba + blocks;
    this.#lastBytes = blocks * blockSize;
  }

  get sequential(): boolean {
    return this.#streak >= this.minStreak;
  }

  /** Where the reader will read next if it stays sequential. */
  get nextLba(): number {
    return this.#next;
  }

  /** Size of the next prefetch command in blocks (grows with each call). */
  nextChunkBlocks(blockSize: number): number {
    this.#chunkBytes = Math.min(this.maxChunkBytes, Math.max(2 * this.#lastBytes, 2 * this.#chunkBytes));
    return Math.max(1, Math.floor(this.#chunkBytes / blockSize));
  }

  reset(): void {
    this.#next = -1;
    this.#streak = 0;
    this.#chunkBytes = 0;
  }
}
