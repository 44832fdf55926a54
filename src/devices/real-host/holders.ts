import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { HostRoot, HostUsbDevice } from './sysfs.js';
import { REAL_HOST, readAttr } from './sysfs.js';

/** A block device (disk or partition) that belongs to a USB device. */
export interface BlockNode {
  name: string;
  /** "major:minor" */
  dev: string;
  /** Its sysfs folder. */
  dir: string;
}

const MAX_DEPTH = 10;

/** The disks and partitions below a USB device in sysfs (usb-storage / uas → SCSI → block). */
export function blockNodesOf(device: HostUsbDevice): BlockNode[] {
  const nodes: BlockNode[] = [];
  const walk = (dir: string, depth: number) => {
    if (depth > MAX_DEPTH) return;
    let entries: import('node:fs').Dirent[];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      // Real folders only: sysfs links (subsystem, driver, port...) lead back up and loop.
      if (!e.isDirectory()) continue;
      const sub = join(dir, e.name);
      if (e.name === 'block') {
        for (const disk of safeList(sub)) addDisk(join(sub, disk), disk);
      } else walk(sub, depth + 1);
    }
  };
  const addDisk = (dir: string, name: string) => {
    const dev = readAttr(dir, 'dev');
    if (dev) nodes.push({ name, dev, dir });
    for (const part of safeList(dir)) {
      const partDir = join(dir, part);
      const partDev = readAttr(partDir, 'partition') !== undefined ? readAttr(partDir, 'dev') : undefined;
      if (partDev) nodes.push({ name: part, dev: partDev, dir: partDir });
    }
  };
  walk(device.sysfsDir, 0);
  return nodes;
}

/**
 * Why a USB device must not be taken from the host ("try disconnect"): its disks or partitions
 * are mounted, used by another block device (device mapper, md, loop), or open in a process.
 * Empty when nothing holds it.
 */
export function whatHolds(device: HostUsbDevice, host: HostRoot = REAL_HOST): string[] {
  const nodes = blockNodesOf(device);
  if (nodes.length === 0) return [];
  const reasons: string[] = [];
  const byDev = new Map(nodes.map((n) => [n.dev, n]));
  for (const m of mounts(host)) {
    const n = byDev.get(m.dev);
    if (n) reasons.push(`/dev/${n.name} is mounted on ${m.mountPoint}`);
  }
  for (const n of nodes) {
    for (const holder of safeList(join(n.dir, 'holders'))) reasons.push(`/dev/${n.name} is used by /dev/${holder}`);
  }
  const names = new Map(nodes.map((n) => [`/dev/${n.name}`, n]));
  for (const { pid, comm, path } of openFiles(host)) {
    if (names.has(path)) reasons.push(`${path} is open in process ${pid} (${comm})`);
  }
  return [...new Set(reasons)];
}

interface Mount {
  dev: string;
  mountPoint: string;
}

/** /proc/self/mountinfo: "36 35 8:1 / /mnt rw,relatime shared:1 - ext4 /dev/sda1 rw". */
function mounts(host: HostRoot): Mount[] {
  let text: string;
  try {
    text = readFileSync(join(host.root, '/proc/self/mountinfo'), 'utf8');
  } catch {
    return [];
  }
  const out: Mount[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length < 5) continue;
    out.push({ dev: f[2]!, mountPoint: unescapeMount(f[4]!) });
  }
  return out;
}

/** mountinfo escapes space, tab, newline and backslash as \\ooo. */
function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

function* openFiles(host: HostRoot): Generator<{ pid: number; comm: string; path: string }> {
  const proc = join(host.root, '/proc');
  for (const pid of safeList(proc)) {
    if (!/^\d+$/.test(pid)) continue;
    const fdDir = join(proc, pid, 'fd');
    const fds = safeList(fdDir);
    if (fds.length === 0) continue;
    const comm = readAttr(join(proc, pid), 'comm') ?? '?';
    for (const fd of fds) {
      let path: string;
      try {
        path = readlinkSync(join(fdDir, fd));
      } catch {
        continue;
      }
      if (path.startsWith('/dev/')) yield { pid: Number(pid), comm, path };
    }
  }
}

function safeList(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
