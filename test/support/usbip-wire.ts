import net from 'node:net';
import {
  encodeCmdSubmit,
  encodeCmdUnlink,
  encodeReqImport,
  type UsbipPacket,
  UsbipParser,
} from '../../src/protocol/usbip/index.js';
import type { HostPort } from '../../src/util/host-port.js';

export const DEVID_1_1 = 0x00010001;

/** Raw USB/IP CMD_SUBMIT bytes for a bulk or interrupt IN of `length` on endpoint `ep`. */
export function inSubmit(seqnum: number, ep: number, length: number): Buffer[] {
  return encodeCmdSubmit({
    seqnum,
    devid: DEVID_1_1,
    direction: 1,
    ep,
    transferFlags: 0,
    transferBufferLength: length,
    startFrame: 0,
    numberOfPackets: 0,
    interval: 0,
  });
}

export function unlink(seqnum: number, target: number): Buffer[] {
  return encodeCmdUnlink({ seqnum, devid: DEVID_1_1, direction: 0, ep: 0, unlinkSeqnum: target });
}

/** A USB/IP client speaking raw PDUs: imports 1-1, then sends whatever the test builds. */
export class UsbipWire {
  readonly packets: UsbipPacket[] = [];
  closed = false;

  private constructor(readonly socket: net.Socket) {
    // RET_SUBMIT shapes: every request of these tests is a non-ISO IN of at most 64 KiB.
    const parser: UsbipParser = new UsbipParser(
      { role: 'client', lookupRequest: () => ({ in: true, length: 65536, isoPackets: 0 }) },
      (p) => {
        this.packets.push(p);
        if (p.kind === 'op-rep-import') parser.startUrbPhase();
      },
    );
    socket.on('data', (c: Buffer) => parser.push(c));
    socket.on('close', () => {
      this.closed = true;
    });
    socket.on('error', () => {});
  }

  static async import(a: HostPort): Promise<UsbipWire> {
    const socket = net.connect(a.port, a.host);
    await new Promise((resolve) => socket.once('connect', resolve));
    const wire = new UsbipWire(socket);
    wire.send(encodeReqImport('1-1'));
    await until(() => wire.packets.length > 0, 'import reply');
    return wire;
  }

  send(pdus: Buffer[] | Buffer[][]): void {
    this.socket.write(Buffer.concat(pdus.flat()));
  }
}

export async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}
