// A client dies while its WRITE is still on its way to the backing store (a slow disk, dirty-page
// throttling, a hung NFS mount). The server cancels the client's transfers and resets the device
// for the next client, whose own WRITE to the same blocks completes: the old write, never
// acknowledged to anyone, must not land on top of it afterwards.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type BlockBackend, MemoryBackend } from '../../src/devices/mass-storage/backend/index.js';
import { BOT_IN, BOT_OUT } from '../../src/devices/mass-storage/bot-function.js';
import { encodeCbw } from '../../src/devices/mass-storage/bot-wire.js';
import { createBotDisk } from '../../src/devices/mass-storage/index.js';
import type { UsbDevice } from '../../src/usb/device.js';
import { TransferStatus } from '../../src/usb/status.js';
import { Transfer } from '../../src/usb/transfer.js';
import { bulkIn, bulkOut, setConfiguration } from '../support/drive.js';

/** A memory disk whose writes can be held at the door: those that start while `hold` is on wait for `release`. */
class HeldBackend implements BlockBackend {
  readonly inner = new MemoryBackend(1 << 20);
  readonly size = this.inner.size;
  readonly readOnly = false;
  #gate: Promise<void> | undefined;
  #open: (() => void) | undefined;
  writesStarted = 0;

  hold(): void {
    this.#gate = new Promise((r) => {
      this.#open = r;
    });
  }

  /** Later writes go straight through; those held so far stay held until release(). */
  stopHolding(): void {
    this.#gate = undefined;
  }

  release(): void {
    this.#gate = undefined;
    this.#open?.();
  }

  read(offset: number, length: number): Promise<Buffer> {
    return this.inner.read(offset, length);
  }

  async write(offset: number, data: Buffer): Promise<void> {
    this.writesStarted++;
    const gate = this.#gate;
    if (gate) await gate;
    await this.inner.write(offset, data);
  }

  flush(): Promise<void> {
    return this.inner.flush();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

let tag = 0;
function write10Cbw(lba: number, blocks: number): Buffer {
  const cdb = Buffer.from([0x2a, 0, 0, 0, (lba >> 8) & 0xff, lba & 0xff, 0, 0, blocks, 0]);
  return encodeCbw({ tag: ++tag, dataTransferLength: blocks * 512, dataIn: false, lun: 0, cdb });
}

/** WRITE(10): CBW, data, CSW; resolves with the CSW status byte. */
async function write(dev: UsbDevice, lba: number, data: Buffer): Promise<number> {
  assert.equal((await bulkOut(dev, BOT_OUT, write10Cbw(lba, data.length / 512))).status, TransferStatus.Ok);
  assert.equal((await bulkOut(dev, BOT_OUT, data)).status, TransferStatus.Ok);
  const csw = bulkIn(dev, BOT_IN, 13);
  await csw.done;
  return csw.data[12]!;
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

test("faults: a write cut off by its client never lands over the next client's acknowledged write", async () => {
  const backend = new HeldBackend();
  const dev = createBotDisk(backend, { name: 'held disk' });
  await setConfiguration(dev, 1);
  const old = Buffer.alloc(4096, 0xaa);
  const mine = Buffer.alloc(4096, 0xbb);

  // Client 1: WRITE(10) of 0xaa; the backend holds it. Its last OUT transfer stays pending.
  backend.hold();
  assert.equal((await bulkOut(dev, BOT_OUT, write10Cbw(8, 8))).status, TransferStatus.Ok);
  const data = new Transfer({ type: 'bulk', endpoint: BOT_OUT, data: old });
  const dataDone = dev.submit(data);
  await until(() => backend.writesStarted === 1, 'the first write reaching the backend');
  // Client 1 is gone: its transfers are cancelled and the device reset, as both servers do.
  dev.cancel(data);
  await dataDone;
  assert.equal(data.status, TransferStatus.Cancelled);
  await dev.reset();
  backend.stopHolding(); // only the first write is slow

  // Client 2: configure, clear the reset's UNIT ATTENTION, write 0xbb to the same blocks.
  await setConfiguration(dev, 1);
  const second = (async () => {
    const ua = await write(dev, 8, mine);
    assert.equal(ua, 1, 'the first command after the reset reports UNIT ATTENTION');
    return write(dev, 8, mine);
  })();
  // Let the old write finish only now, after client 2 started.
  await new Promise((r) => setTimeout(r, 20));
  backend.release();
  assert.equal(await second, 0, 'client 2 write acknowledged');
  await new Promise((r) => setTimeout(r, 20));
  assert.ok((await backend.inner.read(8 * 512, 4096)).equals(mine), 'the acknowledged write is what the disk holds');
});
