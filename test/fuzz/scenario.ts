/**
 * The devices the fuzzer exports and the exercise a well-behaved client runs on each: used to
 * capture the seed streams and, under a deadline, by the client targets against a hostile server.
 */
import {
  createGadgetZero,
  GZERO_SOURCE_SINK_CONFIG,
  SS_BULK_IN,
  SS_BULK_OUT,
} from '../../src/devices/gadget-zero/index.js';
import { SS_ISO_IN, SS_ISO_OUT } from '../../src/devices/gadget-zero/source-sink.js';
import { createKeyboard } from '../../src/devices/hid/index.js';
import { MemoryBackend } from '../../src/devices/mass-storage/backend/index.js';
import { BOT_IN, BOT_OUT } from '../../src/devices/mass-storage/bot-function.js';
import { CSW_SIZE, encodeCbw } from '../../src/devices/mass-storage/bot-wire.js';
import { createBotDisk } from '../../src/devices/mass-storage/index.js';
import { DeviceRegistry } from '../../src/server/registry.js';
import type { UsbDevice } from '../../src/usb/device.js';
import type { SetupPacket } from '../../src/usb/setup.js';
import { TransferStatus } from '../../src/usb/status.js';
import { Transfer, type TransferInit } from '../../src/usb/transfer.js';

export type DeviceKind = 'disk' | 'gadget' | 'keyboard';
export const FUZZ_KINDS: readonly DeviceKind[] = ['disk', 'gadget', 'keyboard'];

export const DISK_BYTES = 1 << 20;

export interface FuzzDevices {
  registry: DeviceRegistry;
  /** busid of each fuzzed device ("1-1" disk, "1-2" gadget zero, "1-3" keyboard). */
  busid: Record<DeviceKind, string>;
  /** Disks reserved for the well-behaved clients (busids 1-4 and 1-5). */
  goodUsbip: { busid: string; backend: MemoryBackend };
  goodUsbredir: { busid: string; backend: MemoryBackend };
  keyboard: ReturnType<typeof createKeyboard>;
}

/** The same busids in the capture and in the live server, so captured imports name real devices. */
export function buildDevices(): FuzzDevices {
  const registry = new DeviceRegistry();
  const disk = registry.add(createBotDisk(new MemoryBackend(DISK_BYTES), { name: 'fuzz disk' }));
  const gadget = registry.add(createGadgetZero({ name: 'fuzz gadget zero', isocMaxPacket: 256 }));
  const keyboard = createKeyboard();
  const kbd = registry.add(keyboard);
  const a = new MemoryBackend(DISK_BYTES);
  const b = new MemoryBackend(DISK_BYTES);
  const goodA = registry.add(createBotDisk(a, { name: 'good usbip disk' }));
  const goodB = registry.add(createBotDisk(b, { name: 'good usbredir disk' }));
  return {
    registry,
    busid: { disk: disk.busid, gadget: gadget.busid, keyboard: kbd.busid },
    goodUsbip: { busid: goodA.busid, backend: a },
    goodUsbredir: { busid: goodB.busid, backend: b },
    keyboard,
  };
}

export class DeadlineError extends Error {
  override name = 'DeadlineError';
}

/**
 * Submit with a deadline: past `waitMs` the transfer is cancelled, and the cancel itself must
 * finish within `cancelMs` (a UsbDevice promises that), else DeadlineError.
 */
export async function submitBounded(dev: UsbDevice, t: Transfer, waitMs: number, cancelMs: number): Promise<Transfer> {
  const done = dev.submit(t);
  let timer: NodeJS.Timeout | undefined;
  const late = await Promise.race([
    done.then(() => false),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), waitMs);
    }),
  ]);
  clearTimeout(timer);
  if (!late) return t;
  dev.cancel(t);
  await withDeadline(done, cancelMs, `cancel of ${t.describe()}`);
  return t;
}

export async function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new DeadlineError(`${what}: not done within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

export interface ExerciseOptions {
  /** Longest wait for one transfer before it is cancelled. */
  waitMs: number;
  /** Longest wait for a cancelled transfer to finish. */
  cancelMs: number;
  /** Stop at the first transfer that fails (capture); the fuzzer goes on whatever happens. */
  strict: boolean;
  /** Capture: press a key on the exported keyboard (while its first report is awaited). */
  press?: () => void;
}

class Steps {
  constructor(
    readonly dev: UsbDevice,
    readonly o: ExerciseOptions,
  ) {}

  async run(opts: TransferInit): Promise<Transfer> {
    const t = await submitBounded(this.dev, new Transfer(opts), this.o.waitMs, this.o.cancelMs);
    if (this.o.strict && t.status !== TransferStatus.Ok) throw new Error(`${t.describe()}: ${t.status}`);
    return t;
  }

  control(setup: SetupPacket, data?: Buffer): Promise<Transfer> {
    const isIn = (setup.bmRequestType & 0x80) !== 0;
    return this.run({
      type: 'control',
      endpoint: isIn ? 0x80 : 0,
      setup,
      length: setup.wLength,
      ...(data ? { data } : {}),
    });
  }

  setConfiguration(value: number): Promise<Transfer> {
    return this.control({ bmRequestType: 0, bRequest: 9, wValue: value, wIndex: 0, wLength: 0 });
  }
}

/** What a host does first with each device, then a little of its class traffic. */
export async function exercise(kind: DeviceKind, dev: UsbDevice, o: ExerciseOptions): Promise<void> {
  const s = new Steps(dev, o);
  switch (kind) {
    case 'disk': {
      await s.setConfiguration(1);
      const block = Buffer.alloc(512);
      for (let i = 0; i < block.length; i++) block[i] = (i * 7 + 3) & 0xff;
      await bot(s, 1, cdb10(0x2a, 8, 1), block);
      await bot(s, 2, cdb10(0x28, 8, 1), 512);
      return;
    }
    case 'gadget': {
      await s.setConfiguration(GZERO_SOURCE_SINK_CONFIG);
      await s.control({ bmRequestType: 1, bRequest: 11, wValue: 1, wIndex: 0, wLength: 0 });
      await s.run({ type: 'bulk', endpoint: SS_BULK_IN, length: 512 });
      await s.run({ type: 'bulk', endpoint: SS_BULK_OUT, data: Buffer.alloc(512) });
      await s.control({ bmRequestType: 0x40, bRequest: 0x5b, wValue: 0, wIndex: 0, wLength: 8 }, Buffer.alloc(8, 9));
      await s.control({ bmRequestType: 0xc0, bRequest: 0x5c, wValue: 0, wIndex: 0, wLength: 8 });
      const packets = (n: number, len: number) =>
        Array.from({ length: n }, (_, i) => ({
          offset: i * len,
          length: len,
          actualLength: 0,
          status: TransferStatus.Ok,
        }));
      await s.run({ type: 'isochronous', endpoint: SS_ISO_IN, length: 3 * 256, isoPackets: packets(3, 256) });
      await s.run({
        type: 'isochronous',
        endpoint: SS_ISO_OUT,
        data: Buffer.alloc(2 * 256),
        isoPackets: packets(2, 256),
      });
      return;
    }
    case 'keyboard': {
      await s.setConfiguration(1);
      // HID report descriptor, addressed to the interface.
      await s.control({ bmRequestType: 0x81, bRequest: 6, wValue: 0x2200, wIndex: 0, wLength: 128 });
      // SET_IDLE, then one report (the capture types a key first) and one that is cancelled.
      await s.control({ bmRequestType: 0x21, bRequest: 0x0a, wValue: 0, wIndex: 0, wLength: 0 });
      if (o.press) setTimeout(o.press, 20);
      await s.run({ type: 'interrupt', endpoint: 0x81, length: 8 });
      const pending = new Transfer({ type: 'interrupt', endpoint: 0x81, length: 8 });
      await submitBounded(dev, pending, Math.min(o.waitMs, 50), o.cancelMs);
      return;
    }
  }
}

async function bot(s: Steps, tag: number, cdb: Buffer, data: Buffer | number): Promise<void> {
  const dataIn = typeof data === 'number';
  const length = dataIn ? data : data.length;
  const cbw = encodeCbw({ tag, dataTransferLength: length, dataIn, lun: 0, cdb });
  await s.run({ type: 'bulk', endpoint: BOT_OUT, data: cbw });
  if (dataIn) await s.run({ type: 'bulk', endpoint: BOT_IN, length });
  else await s.run({ type: 'bulk', endpoint: BOT_OUT, data });
  await s.run({ type: 'bulk', endpoint: BOT_IN, length: CSW_SIZE });
}

export function cdb10(op: number, lba: number, blocks: number): Buffer {
  const cdb = Buffer.alloc(10);
  cdb[0] = op;
  cdb.writeUInt32BE(lba, 2);
  cdb.writeUInt16BE(blocks, 7);
  return cdb;
}
