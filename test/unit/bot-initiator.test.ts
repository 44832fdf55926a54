import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { MemoryBackend } from '../../src/devices/mass-storage/backend/memory-backend.js';
import { BotInitiator, findBotEndpoints } from '../../src/devices/mass-storage/bot-initiator.js';
import { createBotDisk } from '../../src/devices/mass-storage/index.js';
import { Cdb } from '../../src/devices/mass-storage/scsi/cdb-builders.js';
import { planCdb } from '../../src/devices/mass-storage/scsi/cdb-plan.js';
import { parseSense, Sense } from '../../src/devices/mass-storage/scsi/sense.js';
import { TransferStatus } from '../../src/usb/status.js';
import { TapDevice } from './read-ahead-fakes.js';

const MiB = 1024 * 1024;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function patterned(size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4) b.writeUInt32LE((i * 2654435761) >>> 0, i);
  return b;
}

function disk(image = patterned(MiB)) {
  return { image, dev: createBotDisk(MemoryBackend.fromBuffer(image), { name: 'test disk' }) };
}

describe('planCdb', () => {
  it('knows the data phase of the commands a host sends', () => {
    assert.deepEqual(planCdb(Cdb.read10(0, 8)), { direction: 'in', length: 4096 });
    assert.deepEqual(planCdb(Cdb.write16(5, 2), 4096), { direction: 'out', length: 8192 });
    assert.deepEqual(planCdb(Cdb.read6(0, 0)), { direction: 'in', length: 256 * 512 });
    assert.deepEqual(planCdb(Cdb.read12(0, 3)), { direction: 'in', length: 1536 });
    assert.deepEqual(planCdb(Cdb.inquiry(96)), { direction: 'in', length: 96 });
    assert.deepEqual(planCdb(Cdb.modeSense6({ allocation: 192 })), { direction: 'in', length: 192 });
    assert.deepEqual(planCdb(Cdb.modeSense10({ allocation: 512 })), { direction: 'in', length: 512 });
    assert.deepEqual(planCdb(Cdb.readCapacity10()), { direction: 'in', length: 8 });
    assert.deepEqual(planCdb(Cdb.readCapacity16(32)), { direction: 'in', length: 32 });
    assert.deepEqual(planCdb(Cdb.requestSense(18)), { direction: 'in', length: 18 });
    assert.deepEqual(planCdb(Cdb.reportLuns(256)), { direction: 'in', length: 256 });
    assert.deepEqual(planCdb(Cdb.readFormatCapacities(252)), { direction: 'in', length: 252 });
    for (const cdb of [
      Cdb.testUnitReady(),
      Cdb.startStopUnit({ start: true }),
      Cdb.preventAllowMediumRemoval(true),
      Cdb.synchronizeCache10(),
      Cdb.synchronizeCache16(),
      Cdb.verify10(0, 8, 0),
      Buffer.from([0xff, 0, 0, 0, 0, 0]),
      Buffer.alloc(0),
    ]) {
      assert.deepEqual(planCdb(cdb), { direction: 'none', length: 0 }, cdb.toString('hex'));
    }
    assert.deepEqual(planCdb(Cdb.verify10(0, 8, 1)), { direction: 'out', length: 4096 });
    assert.deepEqual(planCdb(Cdb.verify16(0, 8, 3)), { direction: 'out', length: 512 });
    // ATA PASS-THROUGH (16) IDENTIFY DEVICE: PIO data-in, T_DIR in, BYT_BLOK, sector count 1.
    const identify = Buffer.from([0x85, 4 << 1, 0x0e, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xec, 0]);
    assert.deepEqual(planCdb(identify), { direction: 'in', length: 512 });
    // ATA PASS-THROUGH (12) non-data (protocol 3): no data phase.
    assert.deepEqual(planCdb(Buffer.from([0xa1, 3 << 1, 0x20, 0, 0, 0, 0, 0, 0, 0xe7, 0, 0])), {
      direction: 'none',
      length: 0,
    });
    // REPORT SUPPORTED OPERATION CODES, GET EVENT STATUS NOTIFICATION, LOG SENSE, WRITE SAME (16).
    assert.deepEqual(planCdb(Buffer.from([0xa3, 0x0c, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0])), {
      direction: 'in',
      length: 4096,
    });
    assert.deepEqual(planCdb(Buffer.from([0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8, 0])), { direction: 'in', length: 8 });
    assert.deepEqual(planCdb(Buffer.from([0x4d, 0, 0, 0, 0, 0, 0, 0, 64, 0])), { direction: 'in', length: 64 });
    assert.deepEqual(planCdb(Buffer.from([0x93, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0])), {
      direction: 'out',
      length: 512,
    });
  });
});

describe('BotInitiator', () => {
  it('finds the BOT interface, configures the device and reads/writes the whole disk', async () => {
    const { image, dev } = disk();
    assert.equal(findBotEndpoints(dev), undefined, 'unconfigured: no active interface');
    const ini = await BotInitiator.open(dev);
    assert.deepEqual(ini.endpoints, { interfaceNumber: 0, inEp: 0x81, outEp: 0x02 });
    assert.equal(await ini.getMaxLun(), 0);
    const cap = await ini.execute(Cdb.readCapacity10());
    assert.equal(cap.status, 'good');
    assert.equal(ini.planner.capacityBlocks, MiB / 512);
    const parts: Buffer[] = [];
    for (let lba = 0; lba < MiB / 512; lba += 128) {
      const r = await ini.execute(Cdb.read10(lba, 128));
      assert.equal(r.status, 'good');
      assert.equal(r.residue, 0);
      parts.push(r.data!);
    }
    assert.equal(sha(Buffer.concat(parts)), sha(image));
    const fresh = patterned(64 * 1024).reverse();
    const w = await ini.execute(Cdb.write10(100, 128), { dataOut: fresh });
    assert.equal(w.status, 'good');
    const back = await ini.execute(Cdb.read16(100, 128));
    assert.equal(sha(back.data!), sha(fresh));
    await dev.close();
  });

  it('a failing command comes back with its sense, fetched by REQUEST SENSE', async () => {
    const { dev } = disk();
    const ini = await BotInitiator.open(dev);
    const r = await ini.execute(Cdb.read10(MiB / 512, 1));
    assert.equal(r.status, 'check-condition');
    assert.equal(r.transportError, undefined);
    const sense = parseSense(r.sense!);
    assert.deepEqual(
      { key: sense?.key, asc: sense?.asc },
      { key: Sense.LbaOutOfRange.key, asc: Sense.LbaOutOfRange.asc },
    );
    assert.equal((await ini.execute(Cdb.testUnitReady())).status, 'good');
    await dev.close();
  });

  it('runs queued commands one at a time in order; an aborted queued command is dropped', async () => {
    const { image, dev } = disk();
    const tap = new TapDevice(dev, 1);
    const ini = await BotInitiator.open(tap);
    const abort = new AbortController();
    const runs = [];
    for (let i = 0; i < 20; i++) {
      runs.push(ini.execute(Cdb.read10(i * 8, 8), i === 7 ? { signal: abort.signal } : {}));
    }
    abort.abort();
    const results = await Promise.all(runs);
    for (const [i, r] of results.entries()) {
      if (i === 7) {
        assert.equal(r.status, 'aborted');
        continue;
      }
      assert.equal(r.status, 'good');
      assert.ok(r.data!.equals(image.subarray(i * 4096, (i + 1) * 4096)), `command ${i}`);
    }
    // Never two commands at once: a CBW is only submitted after the previous CSW completed.
    let open = 0;
    for (const e of tap.events.filter((x) => !x.includes('ctl'))) {
      if (e === 'submit out2' && open === 0) open = 3;
      else if (e.startsWith('submit')) assert.ok(open > 0 || e === 'submit out2');
      if (e.startsWith('complete')) open--;
      assert.ok(open >= 0);
    }
    await dev.close();
  });

  it('pipelined: submits CBW, data and CSW back to back, one round trip per command', async () => {
    const { dev } = disk();
    const tap = new TapDevice(dev, 20);
    const ini = await BotInitiator.open(tap, { pipelined: true });
    tap.events.length = 0;
    const started = performance.now();
    for (let i = 0; i < 4; i++) assert.equal((await ini.execute(Cdb.read10(i, 1))).status, 'good');
    const perCommand = (performance.now() - started) / 4;
    for (let i = 0; i < 4; i++) {
      assert.deepEqual(tap.events.slice(i * 6, i * 6 + 3), ['submit out2', 'submit in1', 'submit in1'], `command ${i}`);
    }
    // Three sequential stages would take 60 ms at least.
    assert.ok(perCommand < 45, `${perCommand.toFixed(1)} ms per command with 20 ms per completion`);
    await dev.close();
  });

  it('by default each phase waits for the previous one (QEMU usb-storage STALLs an IN before its CBW)', async () => {
    const { dev } = disk();
    const tap = new TapDevice(dev, 5);
    const ini = await BotInitiator.open(tap);
    tap.events.length = 0;
    assert.equal((await ini.execute(Cdb.read10(0, 1))).status, 'good');
    assert.deepEqual(tap.events.slice(0, 6), [
      'submit out2',
      'complete out2',
      'submit in1',
      'complete in1',
      'submit in1',
      'complete in1',
    ]);
    await dev.close();
  });

  it('a data stage stalled by a phase error ends in reset recovery and a CHECK CONDITION saying so', async () => {
    const { image, dev } = disk();
    const ini = await BotInitiator.open(dev);
    // Host says data-out, the device wants to send: case 10 (Ho <> Di), phase error.
    const r = await ini.execute(Cdb.read10(0, 1), { direction: 'out', dataOut: Buffer.alloc(512) });
    assert.equal(r.status, 'check-condition');
    assert.match(r.transportError!, /phase error/);
    assert.equal(parseSense(r.sense!)?.asc, Sense.DataPhaseError.asc);
    const next = await ini.execute(Cdb.read10(0, 2));
    assert.equal(next.status, 'good');
    assert.ok(next.data!.equals(image.subarray(0, 1024)));
    await dev.close();
  });

  it('an invalid CSW leads to reset recovery; the next command works', async () => {
    const { image, dev } = disk();
    const tap = new TapDevice(dev);
    const ini = await BotInitiator.open(tap);
    let corrupt = true;
    tap.onComplete = (t) => {
      if (corrupt && t.isIn && t.actualLength === 13 && t.data.readUInt32LE(0) === 0x53425355) {
        corrupt = false;
        t.data = Buffer.from(t.data);
        t.data[0] = 0;
      }
    };
    const r = await ini.execute(Cdb.read10(3, 1));
    assert.equal(r.status, 'check-condition');
    assert.match(r.transportError!, /invalid CSW/);
    assert.ok(tap.events.filter((e) => e === 'submit ctl0').length >= 3, 'class reset + 2 clear halts');
    const next = await ini.execute(Cdb.read10(3, 1));
    assert.equal(next.status, 'good');
    assert.ok(next.data!.equals(image.subarray(1536, 2048)));
    await dev.close();
  });

  it('a stalled data stage is cleared and the CSW still read', async () => {
    const { dev } = disk();
    const tap = new TapDevice(dev);
    const ini = await BotInitiator.open(tap);
    let stall = true;
    tap.onComplete = (t) => {
      if (stall && t.isIn && t.length === 4096) {
        stall = false;
        t.fail(TransferStatus.Stall);
      }
    };
    const r = await ini.execute(Cdb.read10(0, 8));
    assert.equal(r.status, 'good');
    assert.equal(r.data?.length, 0);
    assert.equal((await ini.execute(Cdb.read10(0, 8))).data?.length, 4096);
    await dev.close();
  });

  it('a device that never answers times out into reset recovery', async () => {
    const { dev } = disk();
    const tap = new TapDevice(dev);
    const ini = await BotInitiator.open(tap, { timeoutMs: 50 });
    let swallow = true;
    tap.swallow = (t) => {
      if (!swallow || !t.isIn || t.length !== 13) return false;
      swallow = false;
      return true;
    };
    const keepAlive = setTimeout(() => {}, 5000); // the initiator's timer does not hold the process
    const r = await ini.execute(Cdb.testUnitReady());
    assert.equal(r.status, 'check-condition');
    assert.match(r.transportError!, /timed out/);
    clearTimeout(keepAlive);
    assert.equal((await ini.execute(Cdb.testUnitReady())).status, 'good');
    await dev.close();
  });
});
