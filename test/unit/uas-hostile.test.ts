import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryBackend } from '../../src/devices/mass-storage/backend/index.js';
import { createBotDisk } from '../../src/devices/mass-storage/index.js';
import { Cdb } from '../../src/devices/mass-storage/scsi/cdb-builders.js';
import { UAS_COMMAND, UAS_STATUS } from '../../src/devices/mass-storage/uas-target-port.js';
import { encodeCommandIu, encodeTaskManagementIu } from '../../src/devices/mass-storage/uas-wire.js';
import { TransferStatus } from '../../src/usb/status.js';
import { Transfer } from '../../src/usb/transfer.js';
import { prng } from '../support/prng.js';
import { DATA_IN, DATA_OUT, ReadyModeHost, streamCommand, uasConnect } from '../support/uas-host.js';

const SIZE = 1 << 20;

/**
 * Random IUs (mutated valid ones and noise), random data and status transfers on random streams,
 * cancels at random moments: nothing throws, every transfer ends once cancelled, the image only
 * changes where a WRITE the host sent whole says so, and the port answers a clean command after.
 */
for (const speed of ['super', 'high'] as const) {
  test(`hostile UAS host (${speed} speed): no crash, no stuck transfer, nothing written that was not sent`, async () => {
    const backend = new MemoryBackend(SIZE);
    const image = Buffer.alloc(SIZE, 0x5a);
    await backend.write(0, image);
    const dev = createBotDisk(backend, { name: 'uas', speed, transport: 'uas' });
    const streams = await uasConnect(dev, speed === 'super' ? 32 : undefined);
    const rnd = prng(speed === 'super' ? 7 : 8);
    const int = (n: number) => Math.floor(rnd() * n);
    const pending: { t: Transfer; done: Promise<void> }[] = [];
    // Writes may only carry this byte: anything else in the image was invented.
    const WRITE_BYTE = 0xc3;
    const submit = (t: Transfer) => pending.push({ t, done: dev.submit(t) });
    for (let i = 0; i < 3000; i++) {
      const stream = streams ? int(streams + 3) : 0;
      switch (int(6)) {
        case 0: {
          const cdb = [
            Cdb.read10(int(2100), int(40)),
            Cdb.write10(int(2100), int(40)),
            Cdb.testUnitReady(),
            Cdb.inquiry(int(300)),
          ][int(4)]!;
          const iu = encodeCommandIu(int(40), cdb, { attribute: int(8), lun: int(10) < 8 ? 0 : int(3) });
          if (int(4) === 0) iu[int(iu.length)] = int(256);
          submit(
            new Transfer({
              type: 'bulk',
              endpoint: UAS_COMMAND,
              data: iu.subarray(0, int(5) === 0 ? int(iu.length) : iu.length),
            }),
          );
          break;
        }
        case 1:
          submit(
            new Transfer({
              type: 'bulk',
              endpoint: UAS_COMMAND,
              data: encodeTaskManagementIu(
                int(40),
                [1, 2, 4, 8, 0x10, 0x80, 0x55][int(7)]!,
                int(40),
                int(5) === 0 ? 1 : 0,
              ),
            }),
          );
          break;
        case 2:
          submit(new Transfer({ type: 'bulk', endpoint: UAS_STATUS, length: 64 + int(200), streamId: stream }));
          break;
        case 3:
          submit(new Transfer({ type: 'bulk', endpoint: DATA_IN, length: int(40) * 512, streamId: stream }));
          break;
        case 4:
          submit(
            new Transfer({
              type: 'bulk',
              endpoint: DATA_OUT,
              data: Buffer.alloc(int(40) * 512, WRITE_BYTE),
              streamId: stream,
            }),
          );
          break;
        default: {
          const victim = pending[int(pending.length)];
          if (victim) dev.cancel(victim.t);
        }
      }
      if (i % 100 === 0) await new Promise((r) => setImmediate(r));
    }
    await new Promise((r) => setTimeout(r, 20));
    for (const p of pending) dev.cancel(p.t);
    await Promise.all(pending.map((p) => p.done));
    assert.ok(pending.every((p) => p.t.status !== undefined));
    const after = await backend.read(0, SIZE);
    for (let i = 0; i < SIZE; i++) {
      if (after[i] !== 0x5a && after[i] !== WRITE_BYTE) assert.fail(`byte ${i} is 0x${after[i]!.toString(16)}`);
    }
    // A reset like the host's error handling, then clean commands work.
    await dev.reset();
    const again = await uasConnect(dev, streams || undefined);
    const host = again ? undefined : new ReadyModeHost(dev);
    const command = (tag: number, cdb: Buffer, data?: { in: number }) =>
      host ? host.command(tag, cdb, data) : streamCommand(dev, tag, cdb, data);
    assert.equal((await command(1, Cdb.testUnitReady())).status, 2, 'UNIT ATTENTION after the reset');
    const read = await command(2, Cdb.read10(0, 1), { in: 512 });
    assert.equal(read.status, 0);
    assert.equal(read.data.length, 512);
    host?.close();
    assert.ok(
      pending.some((p) => p.t.status === TransferStatus.Ok),
      'some of it was served',
    );
    await dev.close();
  });
}
