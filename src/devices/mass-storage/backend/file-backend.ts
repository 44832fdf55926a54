import { readSync, writeSync } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { createLogger, type Logger } from '../../../util/log.js';
import { assertInRange, type BlockBackend, validateCapacity } from './block-backend.js';
import { blockDeviceSize } from './block-device-size.js';
import { type ImageLock, lockImage } from './image-lock.js';
import { WriteFailureLog } from './write-failures.js';

export interface FileBackendOptions {
  readOnly?: boolean;
  logger?: Logger;
  /** Window in which repeated write failures are summarised (default WRITE_FAILURE_WINDOW_MS). */
  writeFailureWindowMs?: number;
}

/**
 * Requests up to this size are done with a synchronous pread/pwrite on the event loop: served from
 * the page cache they take microseconds, less than the round trip through libuv's thread pool (two
 * thread wake-ups, tens of µs each on a busy VM), which was most of a 16 KiB command's device time.
 * Larger requests stay off the event loop.
 */
export const SYNC_IO_MAX = 128 * 1024;

/** A disk image file or block device, accessed with positional reads/writes (pread/pwrite). */
export class FileBackend implements BlockBackend {
  private readonly inFlight = new Set<Promise<unknown>>();
  private closed = false;
  private readonly writeFailures: WriteFailureLog;

  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    readonly size: number,
    readonly readOnly: boolean,
    private readonly lock: ImageLock,
    options: FileBackendOptions,
  ) {
    const log = options.logger ?? createLogger('file-backend');
    this.writeFailures = new WriteFailureLog(path, log, options.writeFailureWindowMs);
  }

  static async open(path: string, options: FileBackendOptions = {}): Promise<FileBackend> {
    const readOnly = options.readOnly ?? false;
    let handle: FileHandle;
    try {
      handle = await open(path, readOnly ? 'r' : 'r+');
    } catch (err) {
      throw new Error(describeOpenError(path, readOnly, err), { cause: err });
    }
    try {
      const size = await imageSize(path, handle);
      // Another process (usbwire, QEMU) writing the image, or reading it while we write: refuse.
      const lock = await lockImage(path, readOnly);
      return new FileBackend(path, handle, size, readOnly, lock, options);
    } catch (err) {
      await handle.close().catch(() => {});
      throw err;
    }
  }

  read(offset: number, length: number): Promise<Buffer> {
    if (length <= SYNC_IO_MAX) return this.runSync(() => this.readNow(offset, length));
    return this.track(async () => {
      assertInRange(this.size, offset, length);
      // allocUnsafeSlow: never a slice of Node's shared pool; every byte is overwritten below.
      const out = Buffer.allocUnsafeSlow(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await this.handle.read(out, done, length - done, offset + done);
        if (bytesRead === 0) throw new Error(`${this.path}: unexpected end of file at ${offset + done}`);
        done += bytesRead;
      }
      return out;
    });
  }

  write(offset: number, data: Buffer): Promise<void> {
    const written =
      data.length <= SYNC_IO_MAX ? this.runSync(() => this.writeNow(offset, data)) : this.writeLater(offset, data);
    return written.catch((err: unknown) => {
      // Host errors (ENOSPC, EIO) reach the guest as MEDIUM ERROR; the operator needs the cause.
      if ((err as NodeJS.ErrnoException).code) this.writeFailures.failed(offset, data.length, err);
      throw err;
    });
  }

  private writeLater(offset: number, data: Buffer): Promise<void> {
    return this.track(async () => {
      if (this.readOnly) throw new Error(`${this.path}: opened read-only`);
      assertInRange(this.size, offset, data.length);
      let done = 0;
      while (done < data.length) {
        const { bytesWritten } = await this.handle.write(data, done, data.length - done, offset + done);
        if (bytesWritten === 0) throw new Error(`${this.path}: write made no progress at ${offset + done}`);
        done += bytesWritten;
      }
    });
  }

  private readNow(offset: number, length: number): Buffer {
    assertInRange(this.size, offset, length);
    const out = Buffer.allocUnsafeSlow(length);
    let done = 0;
    while (done < length) {
      const bytesRead = readSync(this.handle.fd, out, done, length - done, offset + done);
      if (bytesRead === 0) throw new Error(`${this.path}: unexpected end of file at ${offset + done}`);
      done += bytesRead;
    }
    return out;
  }

  private writeNow(offset: number, data: Buffer): void {
    if (this.readOnly) throw new Error(`${this.path}: opened read-only`);
    assertInRange(this.size, offset, data.length);
    let done = 0;
    while (done < data.length) {
      const bytesWritten = writeSync(this.handle.fd, data, done, data.length - done, offset + done);
      if (bytesWritten === 0) throw new Error(`${this.path}: write made no progress at ${offset + done}`);
      done += bytesWritten;
    }
  }

  /** Done by the time this returns; failures still come back as a rejected promise. */
  private runSync<T>(operation: () => T): Promise<T> {
    if (this.closed) return Promise.reject(new Error(`${this.path}: backend is closed`));
    try {
      return Promise.resolve(operation());
    } catch (err) {
      return Promise.reject(err);
    }
  }

  flush(): Promise<void> {
    return this.track(async () => {
      if (!this.readOnly) await this.handle.datasync();
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.inFlight]);
    this.writeFailures.flush();
    try {
      if (!this.readOnly) await this.handle.datasync();
    } finally {
      await this.handle.close();
      this.lock.release();
    }
  }

  private track<T>(operation: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new Error(`${this.path}: backend is closed`));
    const promise = operation();
    this.inFlight.add(promise);
    const forget = () => this.inFlight.delete(promise);
    promise.then(forget, forget);
    return promise;
  }
}

async function imageSize(path: string, handle: FileHandle): Promise<number> {
  const stat = await handle.stat({ bigint: true });
  let size: number;
  if (stat.isFile()) {
    size = Number(stat.size);
  } else if (stat.isBlockDevice()) {
    const deviceSize = await blockDeviceSize(stat.rdev);
    if (deviceSize === undefined) throw new Error(`${path}: cannot determine the size of this block device`);
    size = deviceSize;
  } else {
    const kind = stat.isDirectory() ? 'a directory' : 'not a regular file or block device';
    throw new Error(`${path}: is ${kind}; a disk image must be a regular file or block device`);
  }
  validateCapacity(path, size);
  return size;
}

function describeOpenError(path: string, readOnly: boolean, err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  const mode = readOnly ? 'reading' : 'reading and writing';
  switch (code) {
    case 'ENOENT':
      return `${path}: no such file`;
    case 'EACCES':
    case 'EPERM':
      return `${path}: permission denied opening for ${mode}`;
    case 'EROFS':
      return `${path}: on a read-only file system; open it read-only`;
    case 'EISDIR':
      return `${path}: is a directory; a disk image must be a regular file or block device`;
    default:
      return `${path}: cannot open for ${mode}: ${(err as Error).message}`;
  }
}
