import assert from 'node:assert/strict';
import { CSW_SIZE, encodeCbw } from '../../src/devices/mass-storage/bot-wire.js';
import type { UsbDevice } from '../../src/usb/device.js';
import { TransferStatus } from '../../src/usb/status.js';
import { bulkIn, bulkOut, setConfiguration } from './drive.js';

const BLOCK = 512;

/** A minimal usb-storage: SCSI READ(10)/WRITE(10) over Bulk-Only Transport on any UsbDevice disk. */
export class BotHost {
  #tag = 0;

  private constructor(
    readonly dev: UsbDevice,
    readonly inEp: number,
    readonly outEp: number,
  ) {}

  static async open(dev: UsbDevice, inEp = 0x81, outEp = 0x02): Promise<BotHost> {
    if (dev.configuration !== 1) assert.equal((await setConfiguration(dev, 1)).status, TransferStatus.Ok);
    return new BotHost(dev, inEp, outEp);
  }

  async read(lba: number, blocks: number): Promise<Buffer> {
    await this.#command(cdb10(0x28, lba, blocks), blocks * BLOCK, true);
    const data = bulkIn(this.dev, this.inEp, blocks * BLOCK);
    await data.done;
    assert.equal(data.status, TransferStatus.Ok, 'READ(10) data');
    await this.#status();
    return data.data.subarray(0, data.actualLength);
  }

  async write(lba: number, bytes: Buffer): Promise<void> {
    await this.#command(cdb10(0x2a, lba, bytes.length / BLOCK), bytes.length, false);
    assert.equal((await bulkOut(this.dev, this.outEp, bytes)).status, TransferStatus.Ok, 'WRITE(10) data');
    await this.#status();
  }

  async #command(cdb: Buffer, length: number, dataIn: boolean): Promise<void> {
    const cbw = encodeCbw({ tag: ++this.#tag, dataTransferLength: length, dataIn, lun: 0, cdb });
    assert.equal((await bulkOut(this.dev, this.outEp, cbw)).status, TransferStatus.Ok, 'CBW');
  }

  async #status(): Promise<void> {
    const csw = bulkIn(this.dev, this.inEp, CSW_SIZE);
    await csw.done;
    assert.equal(csw.status, TransferStatus.Ok, 'CSW');
    assert.equal(csw.data.readUInt32LE(4), this.#tag, 'CSW tag');
    assert.equal(csw.data[12], 0, 'CSW status');
  }
}

function cdb10(op: number, lba: number, blocks: number): Buffer {
  const cdb = Buffer.alloc(10);
  cdb[0] = op;
  cdb.writeUInt32BE(lba, 2);
  cdb.writeUInt16BE(blocks, 7);
  return cdb;
}
