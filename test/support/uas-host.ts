import { UAS_COMMAND, UAS_STATUS } from '../../src/devices/mass-storage/uas-target-port.js';
import { type DeviceIu, decodeDeviceIu, encodeCommandIu } from '../../src/devices/mass-storage/uas-wire.js';
import type { UsbDevice } from '../../src/usb/device.js';
import { TransferStatus } from '../../src/usb/status.js';
import { Transfer } from '../../src/usb/transfer.js';
import { control, setConfiguration } from './drive.js';

export const DATA_IN = 0x81;
export const DATA_OUT = 0x02;

export interface UasReply {
  status: number;
  sense: Buffer;
  data: Buffer;
}

function submit(dev: UsbDevice, init: ConstructorParameters<typeof Transfer>[0]): Transfer & { done: Promise<void> } {
  const t = new Transfer(init) as Transfer & { done: Promise<void> };
  t.done = dev.submit(t);
  return t;
}

/** Configure, select the UAS alternate setting and, with `streams`, allocate them like Linux uas does. */
export async function uasConnect(dev: UsbDevice, streams?: number): Promise<number> {
  await setConfiguration(dev, 1);
  await control(dev, { bmRequestType: 0x01, bRequest: 11, wValue: 1, wIndex: 0, wLength: 0 });
  if (!streams) return 0;
  const granted = await dev.allocStreams!([UAS_STATUS, DATA_IN, DATA_OUT], streams);
  if (typeof granted !== 'number') throw new Error(`allocStreams: ${granted}`);
  return granted;
}

/** One command the way Linux uas submits it with streams: status, data, command back to back. */
export async function streamCommand(
  dev: UsbDevice,
  tag: number,
  cdb: Buffer,
  data: { in?: number; out?: Buffer } = {},
): Promise<UasReply> {
  const status = submit(dev, { type: 'bulk', endpoint: UAS_STATUS, length: 1024, streamId: tag });
  const din = data.in ? submit(dev, { type: 'bulk', endpoint: DATA_IN, length: data.in, streamId: tag }) : undefined;
  const dout = data.out ? submit(dev, { type: 'bulk', endpoint: DATA_OUT, data: data.out, streamId: tag }) : undefined;
  submit(dev, { type: 'bulk', endpoint: UAS_COMMAND, data: encodeCommandIu(tag, cdb) });
  await status.done;
  const iu = decodeDeviceIu(status.data.subarray(0, status.actualLength));
  if (iu.kind !== 'sense') throw new Error(`tag ${tag}: expected SENSE IU, got ${JSON.stringify(iu)}`);
  // The host unlinks data URBs of a failed command (uas_stat_cmplt).
  if (din && iu.status !== 0) dev.cancel(din);
  if (dout && iu.status !== 0) dev.cancel(dout);
  await din?.done;
  await dout?.done;
  return {
    status: iu.status,
    sense: iu.sense,
    data: din?.status === TransferStatus.Ok ? din.data.subarray(0, din.actualLength) : Buffer.alloc(0),
  };
}

/**
 * A high-speed (no streams) UAS initiator: keeps status transfers posted, answers READ READY /
 * WRITE READY with the data transfer, as Linux uas does (uas_stat_cmplt → uas_xfer_data).
 */
export class ReadyModeHost {
  readonly #dev: UsbDevice;
  readonly #pending = new Map<number, { in?: number; out?: Buffer; resolve: (r: UasReply) => void; data: Buffer }>();
  readonly ius: DeviceIu[] = [];
  #closed = false;

  constructor(dev: UsbDevice) {
    this.#dev = dev;
  }

  command(tag: number, cdb: Buffer, data: { in?: number; out?: Buffer } = {}): Promise<UasReply> {
    return new Promise((resolve) => {
      this.#pending.set(tag, { ...data, resolve, data: Buffer.alloc(0) });
      this.#postStatus();
      submit(this.#dev, { type: 'bulk', endpoint: UAS_COMMAND, data: encodeCommandIu(tag, cdb) });
    });
  }

  raw(iu: Buffer): void {
    this.#postStatus();
    submit(this.#dev, { type: 'bulk', endpoint: UAS_COMMAND, data: iu });
  }

  close(): void {
    this.#closed = true;
  }

  #postStatus(): void {
    const t = submit(this.#dev, { type: 'bulk', endpoint: UAS_STATUS, length: 1024 });
    void t.done.then(() => {
      if (this.#closed || t.status !== TransferStatus.Ok) return;
      const iu = decodeDeviceIu(t.data.subarray(0, t.actualLength));
      this.ius.push(iu);
      if (iu.kind === 'bad') return;
      const p = this.#pending.get(iu.tag);
      if (!p) return;
      if (iu.kind === 'read-ready') {
        this.#postStatus();
        const d = submit(this.#dev, { type: 'bulk', endpoint: DATA_IN, length: p.in ?? 0 });
        void d.done.then(() => (p.data = d.data.subarray(0, d.actualLength)));
      } else if (iu.kind === 'write-ready') {
        this.#postStatus();
        submit(this.#dev, { type: 'bulk', endpoint: DATA_OUT, data: p.out ?? Buffer.alloc(0) });
      } else if (iu.kind === 'sense' || iu.kind === 'response') {
        this.#pending.delete(iu.tag);
        const reply =
          iu.kind === 'sense'
            ? { status: iu.status, sense: iu.sense }
            : { status: -1 - iu.code, sense: Buffer.alloc(0) };
        // Data completions are reported before the status (one event-loop turn apart at most).
        setImmediate(() => p.resolve({ ...reply, data: p.data }));
      }
    });
  }
}
