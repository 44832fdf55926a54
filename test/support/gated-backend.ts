import { MemoryBackend } from '../../src/devices/mass-storage/backend/memory-backend.js';

/** A memory backend whose writes wait while held (a write in flight), counting flushes. */
export class GatedBackend extends MemoryBackend {
  #gate: Promise<void> | undefined;
  #open: (() => void) | undefined;
  flushes = 0;
  /** Writes started, and finished (in the backend). */
  writesStarted = 0;
  writesDone = 0;

  hold(): void {
    this.#gate = new Promise((resolve) => (this.#open = resolve));
  }

  open(): void {
    this.#open?.();
    this.#gate = undefined;
  }

  override async write(offset: number, data: Buffer): Promise<void> {
    this.writesStarted++;
    if (this.#gate) await this.#gate;
    await super.write(offset, data);
    this.writesDone++;
  }

  override async flush(): Promise<void> {
    this.flushes++;
    return super.flush();
  }
}

/** Whether a promise has settled after the current turn of the event loop. */
export async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(
    () => (done = true),
    () => (done = true),
  );
  await new Promise((r) => setImmediate(r));
  return done;
}
