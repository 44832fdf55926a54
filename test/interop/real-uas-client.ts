// Runs inside the guest (node from the share): a UAS initiator on our own usbredir client. It
// imports the real usb-uas disk that usbwire exports over usbredir on 127.0.0.1:PORT, allocates
// 16 streams on the status / data-in / data-out pipes, and drives SCSI over them with one stream
// per tag, several tags in flight: INQUIRY, READ CAPACITY, the whole disk read (sha256), pattern
// writes at known offsets read back, a stream id beyond the grant refused, the streams freed.
// Results go to the share's results.txt as "key value" lines (as rig_result writes them).
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { appendFileSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { UsbredirClientConnection } from '../../src/client/usbredir/connection.js';
import type { RemoteUsbredirDevice } from '../../src/client/usbredir/remote-device.js';
import { TransferStatus } from '../../src/usb/status.js';
import { hasStreams } from '../../src/usb/streams.js';
import { Transfer } from '../../src/usb/transfer.js';
import { createLogger } from '../../src/util/log.js';

const [port, share, writesJson, tag] = process.argv.slice(2) as [string, string, string, string];
const writes = JSON.parse(writesJson) as { name: string; offset: number; length: number }[];
const result = (key: string, value: string | number) => appendFileSync(join(share, 'results.txt'), `${key} ${value}\n`);

const COMMAND = 0x01;
const STATUS = 0x82;
const DATA_IN = 0x83;
const DATA_OUT = 0x04;
const STREAMS = 16;

function commandIu(tagNo: number, cdb: number[]): Buffer {
  const iu = Buffer.alloc(32);
  iu[0] = 0x01; // COMMAND IU
  iu.writeUInt16BE(tagNo, 2);
  Buffer.from(cdb).copy(iu, 16);
  return iu;
}

function rw10(op: number, lba: number, blocks: number): number[] {
  return [op, 0, lba >>> 24, (lba >> 16) & 0xff, (lba >> 8) & 0xff, lba & 0xff, 0, blocks >> 8, blocks & 0xff, 0];
}

class Uas {
  readonly #free: number[] = [];
  readonly #waiters: ((t: number) => void)[] = [];

  constructor(readonly dev: RemoteUsbredirDevice) {
    for (let t = 1; t <= STREAMS; t++) this.#free.push(t);
  }

  async #tag(): Promise<number> {
    const t = this.#free.shift();
    return t ?? new Promise((resolve) => this.#waiters.push(resolve));
  }

  #release(t: number): void {
    const w = this.#waiters.shift();
    if (w) w(t);
    else this.#free.push(t);
  }

  /** One SCSI command on its own stream (tag = stream id): status, data, then the command IU. */
  async scsi(cdb: number[], io: { in?: number; out?: Buffer } = {}): Promise<Buffer> {
    const t = await this.#tag();
    try {
      const status = new Transfer({ type: 'bulk', endpoint: STATUS, length: 64, streamId: t });
      const data = io.in
        ? new Transfer({ type: 'bulk', endpoint: DATA_IN, length: io.in, streamId: t })
        : io.out
          ? new Transfer({ type: 'bulk', endpoint: DATA_OUT, data: io.out, streamId: t })
          : undefined;
      const statusDone = this.dev.submit(status);
      const dataDone = data ? this.dev.submit(data) : Promise.resolve();
      const cmd = new Transfer({ type: 'bulk', endpoint: COMMAND, data: commandIu(t, cdb) });
      await this.dev.submit(cmd);
      if (cmd.status !== TransferStatus.Ok) throw new Error(`command IU on tag ${t}: ${cmd.status}`);
      await Promise.all([statusDone, dataDone]);
      const iu = status.data.subarray(0, status.actualLength);
      if (status.status !== TransferStatus.Ok || iu[0] !== 0x03 || iu.readUInt16BE(2) !== t) {
        throw new Error(`status on stream ${t}: ${status.status} iu ${iu.toString('hex')}`);
      }
      if (iu[6] !== 0) throw new Error(`SCSI status ${iu[6]} for opcode 0x${cdb[0]!.toString(16)} (tag ${t})`);
      if (data && data.status !== TransferStatus.Ok) throw new Error(`data on stream ${t}: ${data.status}`);
      return data?.isIn ? data.data.subarray(0, data.actualLength) : Buffer.alloc(0);
    } finally {
      this.#release(t);
    }
  }
}

async function main(): Promise<void> {
  const socket = net.connect({ host: '127.0.0.1', port: Number(port) });
  await once(socket, 'connect');
  const conn = new UsbredirClientConnection(socket, {
    where: 'uas client',
    logger: createLogger('uas'),
    timeoutMs: 20_000,
  });
  const ready = once(conn, 'device') as Promise<[RemoteUsbredirDevice]>;
  conn.start();
  const [dev] = await ready;
  result('speed', dev.speed);
  result('max_streams', dev.maxStreams(DATA_IN));
  if (!hasStreams(dev)) throw new Error('usbwire did not announce bulk_streams');
  // As the kernel's uas driver: select the UAS alt setting, then the streams.
  const setIf = new Transfer({
    type: 'control',
    endpoint: 0,
    setup: { bmRequestType: 0x01, bRequest: 11, wValue: 0, wIndex: 0, wLength: 0 },
  });
  await dev.submit(setIf);
  result('set_interface', setIf.status);
  const granted = await dev.allocStreams([STATUS, DATA_IN, DATA_OUT], STREAMS);
  result('streams', granted);
  const uas = new Uas(dev);

  const inquiries = await Promise.all([1, 2, 3].map(() => uas.scsi([0x12, 0, 0, 0, 36, 0], { in: 36 })));
  result('inquiry', inquiries.map((b) => b.subarray(8, 16).toString('latin1').trim()).join(','));
  const cap = await uas.scsi([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], { in: 8 });
  const blocks = cap.readUInt32BE(0) + 1;
  const blockSize = cap.readUInt32BE(4);
  result('capacity', `${blocks} ${blockSize}`);

  // The whole disk, 64 KiB per command, eight commands (streams) in flight.
  const chunk = 65536 / blockSize;
  const parts: Buffer[] = [];
  const started = Date.now();
  let next = 0;
  const reader = async () => {
    while (next < blocks) {
      const lba = next;
      const n = Math.min(chunk, blocks - lba);
      next += n;
      parts[lba / chunk] = await uas.scsi(rw10(0x28, lba, n), { in: n * blockSize });
    }
  };
  await Promise.all(Array.from({ length: 8 }, reader));
  const hash = createHash('sha256');
  for (const p of parts) hash.update(p);
  result('disk_sha', hash.digest('hex'));
  result('read_ms', Date.now() - started);

  for (const w of writes) {
    const data = readFileSync(join(share, `pat-${tag}-${w.name}.bin`));
    await uas.scsi(rw10(0x2a, w.offset / blockSize, w.length / blockSize), { out: data });
    const back = await uas.scsi(rw10(0x28, w.offset / blockSize, w.length / blockSize), { in: w.length });
    result(`readback_${w.name}`, back.equals(data) ? 'ok' : 'differs');
  }
  await uas.scsi([0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // SYNCHRONIZE CACHE

  const beyond = new Transfer({ type: 'bulk', endpoint: DATA_IN, length: 512, streamId: STREAMS + 1 });
  await dev.submit(beyond);
  result('beyond_grant', beyond.status);
  result('freed', await dev.freeStreams([STATUS, DATA_IN, DATA_OUT]));
  await conn.close();
  result('client_done', 'yes');
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    result('client_error', String(err instanceof Error ? err.message : err).replace(/\s+/g, ' '));
    process.exit(1);
  },
);
