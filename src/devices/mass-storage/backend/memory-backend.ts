import { assertInRange, type BlockBackend, validateCapacity } from './block-backend.js';

const CHUNK_SIZE = 64 * 1024;

/**
 * RAM disk. Sparse: chunks are allocated on first write, so a large demo disk costs nothing
 * until written; unwritten ranges read as zeros.
 */
export class MemoryBackend implements BlockBackend {
  readonly size: number;
  readonly readOnly: boolean;
  private readonly chunks = new Map<number, Buffer>();
  private closed = false;

  constructor(size: number, options: { readOnly?: boolean } = {}) {
    validateCapacity('memory backend', size);
    this.size = size;
    this.readOnly = options.readOnly ?? false;
  }

  /** A backend holding a copy of `image` (its length must be a positive multiple of 512). */
  static fromBuffer(image: Buffer, options: { readOnly?: boolean } = {}): MemoryBackend {
    const backend = new MemoryBackend(image.length, options);
    backend.copyIn(0, image);
    return backend;
  }

  /** Number of bytes actually allocated (for tests and diagnostics). */
  get allocatedBytes(): number {
    return this.chunks.size * CHUNK_SIZE;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.assertOpen();
    assertInRange(this.size, offset, length);
    const out = Buffer.alloc(length);
    this.forEachPiece(offset, length, (chunkIndex, chunkOffset, outOffset, n) => {
      this.chunks.get(chunkIndex)?.copy(out, outOffset, chunkOffset, chunkOffset + n);
    });
    return out;
  }

  async write(offset: number, data: Buffer): Promise<void> {
    this.assertOpen();
    if (this.readOnly) throw new Error('memory backend is read-only');
    assertInRange(this.size, offset, data.length);
    this.copyIn(offset, data);
  }

  async flush(): Promise<void> {
    this.assertOpen();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.chunks.clear();
  }

  private copyIn(offset: number, data: Buffer): void {
    this.forEachPiece(offset, data.length, (chunkIndex, chunkOffset, dataOffset, n) => {
      let chunk = this.chunks.get(chunkIndex);
      if (!chunk) {
        chunk = Buffer.alloc(Math.min(CHUNK_SIZE, this.size - chunkIndex * CHUNK_SIZE));
        this.chunks.set(chunkIndex, chunk);
      }
      data.copy(chunk, chunkOffset, dataOffset, dataOffset + n);
    });
  }

  private forEachPiece(
    offset: number,
    length: number,
    visit: (chunkIndex: number, chunkOffset: number, bufferOffset: number, n: number) => void,
  ): void {
    let done = 0;
    while (done < length) {
      const position = offset + done;
      const chunkIndex = Math.floor(position / CHUNK_SIZE);
      const chunkOffset = position % CHUNK_SIZE;
      const n = Math.min(CHUNK_SIZE - chunkOffset, length - done);
      visit(chunkIndex, chunkOffset, done, n);
      done += n;
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('memory backend is closed');
  }
}
