// The real servers the bridge imports from, run in the rig's guest: the kernel's usbip-host +
// usbipd, and Debian's usbredirect (usbredir 0.13's usbredirhost), both exporting QEMU's emulated
// usb-storage. QEMU's hostfwd lets the host reach them; guestfwd lets usbredirect --to reach the
// host. Also the host-side probes that check these peers with usbwire's own client code.
import { spawnSync } from 'node:child_process';
import { connect, createServer, type Socket } from 'node:net';
import { UsbipClient } from '../../src/client/usbip/index.js';
import { GUEST_CAPS } from '../../src/client/usbredir/index.js';
import { CSW_SIGNATURE, CSW_SIZE, encodeCbw } from '../../src/devices/mass-storage/bot-wire.js';
import type { UsbipDevlistEntry } from '../../src/protocol/usbip/op.js';
import { encodePacket } from '../../src/protocol/usbredir/codec.js';
import { PacketType as T } from '../../src/protocol/usbredir/constants.js';
import { capsFrom, Negotiation } from '../../src/protocol/usbredir/negotiation.js';
import type {
  DeviceConnectPacket,
  EpInfoPacket,
  HelloPacket,
  InterfaceInfoPacket,
  Packet,
} from '../../src/protocol/usbredir/packets.js';
import { UsbredirParser } from '../../src/protocol/usbredir/parser.js';
import { parseConfiguration } from '../../src/usb/descriptors.js';
import type { UsbDevice } from '../../src/usb/device.js';
import { TransferStatus } from '../../src/usb/status.js';
import { Transfer } from '../../src/usb/transfer.js';

/** QEMU's usb-storage: VID:PID 46f4:0001, BOT, SuperSpeed on qemu-xhci. */
export const QEMU_STORAGE = { vid: '46f4', pid: '0001' } as const;

export interface EmulatedDisk {
  /** QEMU drive id */
  id: string;
  img: string;
  /** USB serial number: tells the guest which device is which (both are 46f4:0001) */
  serial: string;
}

/** QEMU's usb-storage devices for `disks` on their own qemu-xhci (id `xs`, PCI slot 0x0a). */
export function emulatedStorageArgs(disks: EmulatedDisk[]): string[] {
  const args = ['-device', `qemu-xhci,id=xs,addr=${STORAGE_HC_SLOT}`];
  for (const d of disks) {
    args.push('-drive', `if=none,id=${d.id},file=${d.img},format=raw,cache=writethrough`);
    args.push('-device', `usb-storage,drive=${d.id},bus=xs.0,serial=${d.serial}`);
  }
  return args;
}
const STORAGE_HC_SLOT = '0x0a';
/** What the sysfs path of a disk on the emulated storage controller contains. */
export const STORAGE_HC_PATH = `0000:00:${STORAGE_HC_SLOT.slice(2)}.0`;

/** Guest commands: busid of the emulated disk with `serial` into $BUSID (fails if absent). */
export function guestBusidOf(serial: string): string {
  return `BUSID=$(rig_usb_busid ${QEMU_STORAGE.vid} ${QEMU_STORAGE.pid} ${serial})
[ -n "$BUSID" ] || fail "no ${QEMU_STORAGE.vid}:${QEMU_STORAGE.pid} with serial ${serial}"`;
}

/** Guest commands: usbipd running, the disk with `serial` bound to usbip-host; prints the busid. */
export function guestUsbipExport(serial: string): string {
  return `${guestBusidOf(serial)}
pidof usbipd > /dev/null || usbipd -D || fail "usbipd -D"
usbip bind -b "$BUSID" || fail "usbip bind -b $BUSID"
[ "$(basename "$(readlink -f /sys/bus/usb/devices/$BUSID/driver)")" = usbip-host ] || fail "$BUSID not bound to usbip-host"
echo "$BUSID"`;
}

/**
 * Guest commands: wait until usbip-host is done with BUSID (after a client disconnects the stub
 * resets the device: usbip_status goes back to 1, available), then give it back to the kernel.
 */
export function guestUsbipUnexport(busid: string): string {
  return `_n=0
until [ "$(cat /sys/bus/usb/devices/${busid}/usbip_status 2>/dev/null)" = 1 ]; do
  _n=$((_n + 1))
  [ $_n -gt 200 ] && fail "usbip-host still busy with ${busid} after 20 s (usbip_status $(cat /sys/bus/usb/devices/${busid}/usbip_status))"
  rig_nap 0.1
done
usbip unbind -b ${busid} || fail "usbip unbind -b ${busid}"`;
}

/**
 * Guest commands: start usbredirect on the disk with `serial` (which must be the only
 * 46f4:0001 in the guest: usbredirect opens the first device with that VID:PID) and wait until
 * it holds the device (its interface bound to usbfs) and, with --as, listens. `target` is
 * `--as 0.0.0.0:PORT` or `--to 10.0.2.100:PORT`. usbredirect serves one connection and exits.
 */
export function guestStartUsbredirect(serial: string, target: string, log: string): string {
  const port = target.split(':').pop();
  const listening = target.startsWith('--as') ? `netstat -ltn | grep -q ":${port} "` : 'true';
  return `${guestBusidOf(serial)}
[ "$(rig_usb_count ${QEMU_STORAGE.vid} ${QEMU_STORAGE.pid})" = 1 ] || fail "more than one ${QEMU_STORAGE.vid}:${QEMU_STORAGE.pid}: usbredirect could open the wrong one"
usbredirect --device ${QEMU_STORAGE.vid}:${QEMU_STORAGE.pid} ${target} > ${log} 2>&1 &
echo $! > ${log}.pid
_n=0
until [ "$(basename "$(readlink -f /sys/bus/usb/devices/$BUSID:1.0/driver)")" = usbfs ] && ${listening}; do
  _n=$((_n + 1))
  [ $_n -gt 100 ] && { cat ${log}; fail "usbredirect did not take $BUSID within 10 s"; }
  kill -0 $! 2>/dev/null || { cat ${log}; fail "usbredirect exited"; }
  rig_nap 0.1
done
echo "usbredirect $! holds $BUSID"`;
}

// ---------------------------------------------------------------------------------------
// Host-side probes

/** `usbip --tcp-port PORT list -r 127.0.0.1` with the host's usbip tool. */
export function hostUsbipList(port: number): { status: number | null; text: string; stdout: string } {
  const r = spawnSync('usbip', ['--tcp-port', String(port), 'list', '-r', '127.0.0.1'], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  return { status: r.status, text: `${r.stdout}${r.stderr}`, stdout: r.stdout };
}

export async function listWithClient(port: number): Promise<UsbipDevlistEntry[]> {
  return new UsbipClient({ timeoutMs: 20_000 }).listDevices({ host: '127.0.0.1', port });
}

export async function importWithClient(port: number, busid: string): Promise<UsbDevice & { info?: unknown }> {
  return new UsbipClient({ timeoutMs: 20_000 }).importDevice({ host: '127.0.0.1', port }, busid);
}

/** Bulk-only transport: bulk endpoints of the first mass storage interface. */
function botEndpoints(dev: UsbDevice): { bulkIn: number; bulkOut: number } {
  const config = parseConfiguration(dev.descriptors.configurations[0] ?? Buffer.alloc(0));
  for (const iface of config.interfaces) {
    const alt = iface.alternates.find((a) => a.interfaceClass === 8 && a.interfaceProtocol === 0x50);
    if (!alt) continue;
    const bulkIn = alt.endpoints.find((e) => e.type === 'bulk' && e.address & 0x80)?.address;
    const bulkOut = alt.endpoints.find((e) => e.type === 'bulk' && !(e.address & 0x80))?.address;
    if (bulkIn !== undefined && bulkOut !== undefined) return { bulkIn, bulkOut };
  }
  throw new Error(`${dev.name}: no bulk-only mass storage interface`);
}

async function transfer(dev: UsbDevice, t: Transfer, what: string): Promise<Transfer> {
  await dev.submit(t);
  if (t.status !== TransferStatus.Ok) throw new Error(`${what}: ${t.status}`);
  return t;
}

let botTag = 1;

/** One BOT command: CBW, data IN of `dataIn` bytes (if any), CSW. Returns the data and CSW status. */
async function botCommand(dev: UsbDevice, cdb: number[], dataIn: number): Promise<{ data: Buffer; cswStatus: number }> {
  const { bulkIn, bulkOut } = botEndpoints(dev);
  const tag = botTag++;
  const cbw = encodeCbw({ tag, dataTransferLength: dataIn, dataIn: dataIn > 0, lun: 0, cdb: Buffer.from(cdb) });
  await transfer(dev, new Transfer({ type: 'bulk', endpoint: bulkOut, data: cbw }), 'CBW');
  let data: Buffer = Buffer.alloc(0);
  if (dataIn > 0) {
    const t = await transfer(dev, new Transfer({ type: 'bulk', endpoint: bulkIn, length: dataIn }), 'data IN');
    data = t.data.subarray(0, t.actualLength);
  }
  const csw = await transfer(dev, new Transfer({ type: 'bulk', endpoint: bulkIn, length: CSW_SIZE }), 'CSW');
  const b = csw.data.subarray(0, csw.actualLength);
  if (b.length !== CSW_SIZE || b.readUInt32LE(0) !== CSW_SIGNATURE || b.readUInt32LE(4) !== tag) {
    throw new Error(`bad CSW for tag ${tag}: ${b.toString('hex')}`);
  }
  return { data, cswStatus: b[12]! };
}

/**
 * SCSI READ(10) of `blocks` 512-byte blocks at `lba` over bulk-only transport, straight on a
 * UsbDevice (no kernel). TEST UNIT READY + REQUEST SENSE first clear the unit attention a reset
 * leaves behind.
 */
export async function botRead10(dev: UsbDevice, lba: number, blocks: number): Promise<Buffer> {
  if (dev.configuration === 0) throw new Error(`${dev.name} is not configured`);
  for (let i = 0; ; i++) {
    const tur = await botCommand(dev, [0, 0, 0, 0, 0, 0], 0);
    if (tur.cswStatus === 0) break;
    await botCommand(dev, [0x03, 0, 0, 0, 18, 0], 18);
    if (i === 3) throw new Error(`TEST UNIT READY still fails (CSW status ${tur.cswStatus})`);
  }
  const cdb = [0x28, 0, (lba >>> 24) & 0xff, (lba >>> 16) & 0xff, (lba >>> 8) & 0xff, lba & 0xff, 0];
  cdb.push((blocks >> 8) & 0xff, blocks & 0xff, 0);
  const r = await botCommand(dev, cdb, blocks * 512);
  if (r.cswStatus !== 0) throw new Error(`READ(10) of ${blocks} blocks at LBA ${lba}: CSW status ${r.cswStatus}`);
  return r.data;
}

export interface UsbredirGreeting {
  hello: HelloPacket;
  interfaces: InterfaceInfoPacket;
  endpoints: EpInfoPacket;
  connect: DeviceConnectPacket;
  /** every packet type received, in order */
  types: number[];
}

/**
 * Speak usbredir as the guest side (QEMU's role) on `socket`: send our hello, collect the host's
 * hello, interface_info, ep_info and device_connect (usbredirhost sends the device only after our
 * hello). Rejects on a protocol error, on close, or after `timeoutMs`.
 */
export function usbredirGreeting(socket: Socket, timeoutMs = 20_000): Promise<UsbredirGreeting> {
  const neg = new Negotiation('guest', capsFrom(GUEST_CAPS));
  return new Promise((resolve, reject) => {
    const got: Partial<UsbredirGreeting> = { types: [] };
    const timer = setTimeout(
      () => reject(new Error(`usbredir greeting incomplete after ${timeoutMs} ms: got ${got.types}`)),
      timeoutMs,
    );
    const parser = new UsbredirParser(neg, (p: Packet) => {
      got.types!.push(p.type);
      if (p.type === T.Hello) got.hello = p;
      else if (p.type === T.InterfaceInfo) got.interfaces = p;
      else if (p.type === T.EpInfo) got.endpoints = p;
      else if (p.type === T.DeviceConnect) {
        got.connect = p;
        clearTimeout(timer);
        resolve(got as UsbredirGreeting);
      }
    });
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      try {
        parser.push(chunk);
      } catch (err) {
        clearTimeout(timer);
        reject(err);
      }
    });
    socket.on('error', (err) => reject(err));
    socket.on('close', () => {
      clearTimeout(timer);
      reject(new Error(`connection closed; got packet types ${got.types}`));
    });
    for (const b of encodePacket(
      { type: T.Hello, id: 0n, version: 'usbwire rig probe', caps: [...neg.ourCaps] },
      neg,
    )) {
      socket.write(b);
    }
  });
}

/** Connect to a usbredir host that listens (usbredirect --as) through hostfwd. */
export function connectTo(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

/** Listen on 127.0.0.1 for one connection (usbredirect --to through the guestfwd relay). */
export function acceptOne(port: number, timeoutMs = 30_000): { socket: Promise<Socket>; close(): void } {
  const srv = createServer();
  let timer: NodeJS.Timeout | undefined;
  const socket = new Promise<Socket>((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`no connection on ${port} within ${timeoutMs} ms`)), timeoutMs);
    srv.once('connection', (s) => {
      clearTimeout(timer);
      srv.close();
      resolve(s);
    });
    srv.once('error', reject);
  });
  socket.catch(() => {}); // a caller that gave up early must not leave an unhandled rejection
  srv.listen(port, '127.0.0.1');
  return {
    socket,
    close: () => {
      clearTimeout(timer);
      srv.close();
    },
  };
}
