export interface ReadAheadOptions {
  /** Largest single prefetch command (default 1 MiB). */
  maxChunkBytes?: number;
  /** Most data fetched ahead of the reader (default 4 MiB). */
  windowBytes?: number;
  /** Sequential reads in a row before prefetching starts (default 2). */
  minStreak?: number;
  /**
   * Our prefetch commands submit CBW, data and CSW back to back (BotInitiator `pipelined`).
   * Default: only when the device is usbwire's own emulated one (others may STALL an early IN).
   */
  pipelined?: boolean;
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
  /** Bytes read in the current sequential run. */
  #runBytes = 0;

  constructor(opts: ReadAheadOptions = {}) {
    this.maxChunkBytes = Math.max(4096, opts.maxChunkBytes ?? 1024 * 1024);
    this.windowBytes = Math.max(this.maxChunkBytes, opts.windowBytes ?? 4 * 1024 * 1024);
    this.minStreak = Math.max(1, opts.minStreak ?? 2);
  }

  /** The reader read [lba, lba+blocks) (hit or miss). */
  onRead(lba: number, blocks: number, blockSize: number): void {
    if (lba === this.#next) {
      this.#streak++;
      this.#runBytes += blocks * blockSize;
    } else {
      this.#streak = 1;
      this.#chunkBytes = 0;
      this.#runBytes = blocks * blockSize;
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

  /**
   * How far ahead of the reader to fetch: twice what it has read sequentially so far, up to
   * windowBytes, so a short run wastes little and a long scan gets the whole window.
   */
  aheadBytes(): number {
    return Math.min(this.windowBytes, 2 * this.#runBytes);
  }

  /** Size of the next prefetch command in blocks: twice the last read, then twice the last prefetch. */
  chunkBlocks(blockSize: number): number {
    const bytes = Math.min(this.maxChunkBytes, Math.max(2 * this.#lastBytes, 2 * this.#chunkBytes));
    return Math.max(1, Math.floor(bytes / blockSize));
  }

  /** A prefetch of `blocks` was sent: the next one may be larger. */
  fetched(blocks: number, blockSize: number): void {
    this.#chunkBytes = Math.max(this.#chunkBytes, blocks * blockSize);
  }

  reset(): void {
    this.#runBytes = 0;
    this.#next = -1;
    this.#streak = 0;
    this.#chunkBytes = 0;
  }
}
