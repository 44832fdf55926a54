/**
 * Storage behind a SCSI logical unit: a flat array of bytes addressed by offset.
 *
 * Durability policy (what the SCSI layer relies on):
 * - `write` resolves only once every byte has been handed to the OS with pwrite, so the data
 *   is in the page cache and survives a crash of this process before the command completes.
 *   The guest sees WCE=1 (write-back cache) in the caching mode page, which is honest: the OS
 *   page cache is that cache.
 * - SYNCHRONIZE CACHE, writes with FUA=1 and shutdown (`close`) call `flush` (fdatasync), so
 *   the data also survives a power loss of the host machine.
 */
export interface BlockBackend {
  /** Capacity in bytes (a positive multiple of 512). */
  readonly size: number;
  readonly readOnly: boolean;
  /** Returns a fresh buffer owned by the caller (never a pooled or shared slice). */
  read(offset: number, length: number): Promise<Buffer>;
  /** Resolves once the bytes are in the file (pwrite), see the durability policy above. */
  write(offset: number, data: Buffer): Promise<void>;
  /** fdatasync: make earlier writes survive power loss. */
  flush(): Promise<void>;
  /** Flush, then release the underlying resource. Further calls fail. */
  close(): Promise<void>;
}

export const SECTOR_SIZE = 512;

/** Callers range-check first; this is the backend's last line of defence. */
export function assertInRange(size: number, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new RangeError(`invalid block range offset=${offset} length=${length}`);
  }
  if (offset + length > size) {
    throw new RangeError(`block range ${offset}+${length} exceeds backend size ${size}`);
  }
}

/** Shared validation of a backend capacity; `what` names the file or backend in errors. */
export function validateCapacity(what: string, size: number): void {
  if (size === 0) throw new Error(`${what}: image is empty (size 0)`);
  if (!Number.isSafeInteger(size) || size < 0) throw new Error(`${what}: invalid size ${size}`);
  if (size % SECTOR_SIZE !== 0) {
    throw new Error(`${what}: size ${size} bytes is not a multiple of ${SECTOR_SIZE}`);
  }
}
