import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { createLogger, type Logger } from '../../../util/log.js';

/**
 * Image locks compatible with QEMU's (block/file-posix.c): open-file-description (OFD) fcntl read
 * locks on single bytes, 100 + bit for a permission held and 200 + bit for a permission not
 * shared with others. A conflict is someone else's lock on a byte we test (F_OFD_GETLK with a
 * write lock): their "not shared" byte for a permission we take, their "held" byte for one we
 * do not share. Both usbwire and QEMU see each other this way.
 */
const PERM_BASE = 100;
const SHARED_BASE = 200;
const Perm = { ConsistentRead: 0, Write: 1, Resize: 3 } as const;

/** Like a QEMU disk device: reads; writes unless read-only; shares neither writing nor resizing. */
function lockPlan(readOnly: boolean): { lock: number[]; test: number[] } {
  const held = readOnly ? [Perm.ConsistentRead] : [Perm.ConsistentRead, Perm.Write];
  const unshared = [Perm.Write, Perm.Resize];
  return {
    lock: [...held.map((b) => PERM_BASE + b), ...unshared.map((b) => SHARED_BASE + b)],
    test: [...held.map((b) => SHARED_BASE + b), ...unshared.map((b) => PERM_BASE + b)],
  };
}

/**
 * Node has no fcntl: a perl child (perl is Essential on Debian) opens the image, takes the locks
 * and holds them until its stdin closes, which also happens when usbwire dies. It answers one
 * line: "locked", "busy BYTE" or "error WHY". struct flock on 64-bit Linux: s s x4 q q i x4.
 * F_OFD_GETLK = 36, F_OFD_SETLK = 37; F_RDLCK = 0, F_WRLCK = 1, F_UNLCK = 2.
 */
const HELPER_NAME = 'usbwire-image-lock';
const HOLDER_SCRIPT = `
use strict; use Errno;
my ($path, $locks, $tests) = @ARGV;
$0 = "${HELPER_NAME} $path";
$| = 1;
open(my $fh, '<', $path) or do { print "error open: $!\\n"; exit 0 };
for my $b (split /,/, $locks) {
  my $fl = pack('s s x4 q q i x4', 0, 0, $b, 1, 0);
  next if fcntl($fh, 37, $fl);
  if ($!{EAGAIN} || $!{EACCES}) { print "busy $b\\n" } else { print "error lock byte $b: $!\\n" }
  exit 0;
}
for my $b (split /,/, $tests) {
  my $fl = pack('s s x4 q q i x4', 1, 0, $b, 1, 0);
  fcntl($fh, 36, $fl) or do { print "error test byte $b: $!\\n"; exit 0 };
  my ($type) = unpack('s', $fl);
  if ($type != 2) { print "busy $b\\n"; exit 0 }
}
print "locked\\n";
1 while sysread(STDIN, my $buf, 4096);
`;

export class ImageBusyError extends Error {
  override name = 'ImageBusyError';
}

/** Held locks on an image; `release` drops them (the holder process exits). */
export interface ImageLock {
  release(): void;
}

const NO_LOCK: ImageLock = { release() {} };

interface HeldImage {
  writable: boolean;
  users: number;
  lock: ImageLock;
}

/**
 * Images this process has locked, by device and inode: exports of one image within a process
 * share one holder (serve decides what it allows there), so they never conflict with themselves.
 */
const held = new Map<string, HeldImage>();

/**
 * Lock `path` for a read-only or writable export. Throws ImageBusyError naming the holder when
 * another process (usbwire, QEMU) conflicts. Without perl, or on a file system without OFD
 * locks, exports unlocked with a warning.
 */
export function lockImage(path: string, readOnly: boolean, log: Logger = defaultLog()): Promise<ImageLock> {
  // One at a time, so two exports of one image opened together share one holder.
  const result = pending.then(() => lockShared(path, readOnly, log));
  pending = result.catch(() => {});
  return result;
}

let pending: Promise<unknown> = Promise.resolve();

async function lockShared(path: string, readOnly: boolean, log: Logger): Promise<ImageLock> {
  let key: string;
  try {
    const st = statSync(path);
    key = `${st.dev}:${st.ino}`;
  } catch {
    return takeLock(path, readOnly, log);
  }
  let entry = held.get(key);
  if (!entry) {
    entry = { writable: !readOnly, users: 0, lock: await takeLock(path, readOnly, log) };
    held.set(key, entry);
  } else if (!readOnly && !entry.writable) {
    // Upgrade: our own read lock would conflict with the write lock, so it goes first.
    entry.lock.release();
    try {
      entry.lock = await takeLock(path, false, log);
      entry.writable = true;
    } catch (err) {
      entry.lock = await takeLock(path, true, log).catch(() => NO_LOCK);
      throw err;
    }
  }
  entry.users++;
  const shared = entry;
  let released = false;
  return {
    release: () => {
      if (released) return;
      released = true;
      if (--shared.users > 0) return;
      shared.lock.release();
      held.delete(key);
    },
  };
}

async function takeLock(path: string, readOnly: boolean, log: Logger): Promise<ImageLock> {
  const plan = lockPlan(readOnly);
  let child: ChildProcessWithoutNullStreams;
  try {
    child = spawn('perl', ['-e', HOLDER_SCRIPT, path, plan.lock.join(','), plan.test.join(',')]);
  } catch (err) {
    log.warn(`${path}: cannot lock the image (${(err as Error).message}); exporting it without a lock`);
    return NO_LOCK;
  }
  const answer = await firstLine(child);
  if (answer === 'locked') {
    // The holder must not keep usbwire running: the pipes are sockets underneath.
    child.unref();
    for (const pipe of [child.stdin, child.stdout, child.stderr]) (pipe as { unref?: () => void }).unref?.();
    return { release: () => child.stdin.end() };
  }
  child.stdin.end();
  const busy = /^busy (\d+)$/.exec(answer);
  if (busy) {
    const what = readOnly ? 'read-only' : 'writable';
    throw new ImageBusyError(`${path} is ${describeHolder(path, Number(busy[1]))}: refusing to export it ${what}`);
  }
  log.warn(`${path}: cannot lock the image (${answer}); exporting it without a lock`);
  return NO_LOCK;
}

function firstLine(child: ChildProcessWithoutNullStreams): Promise<string> {
  return new Promise((resolve) => {
    let out = '';
    const done = (line: string) => {
      child.stdout.removeAllListeners('data');
      resolve(line);
    };
    child.once('error', (err: NodeJS.ErrnoException) =>
      done(err.code === 'ENOENT' ? 'error perl not found' : `error ${err.message}`),
    );
    child.once('exit', (code) => done(out.includes('\n') ? out.split('\n')[0]! : `error lock helper exited (${code})`));
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('\n')) done(out.split('\n')[0]!);
    });
  });
}

/** "in use by pid 1234 (qemu-system-x86_64 -drive ...)", from the lock lines of /proc/PID/fdinfo. */
function describeHolder(path: string, byte: number): string {
  const holder = findLockHolder(path, byte);
  if (!holder) return `locked by another process (lock byte ${byte}; QEMU and usbwire lock images they use)`;
  return `in use by pid ${holder.pid} (${holder.command})`;
}

export function findLockHolder(path: string, byte?: number): { pid: number; command: string } | undefined {
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(path);
  } catch {
    return undefined;
  }
  const dev = Number(st.dev);
  const major = (dev >> 8) & 0xfff;
  const minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
  const id = `${hex2(major)}:${hex2(minor)}:${st.ino}`;
  let fallback: number | undefined;
  for (const pid of listPids()) {
    for (const range of lockRanges(pid, id)) {
      fallback ??= pid;
      if (byte === undefined || (byte >= range[0] && byte <= range[1])) return processInfo(pid);
    }
  }
  return fallback === undefined ? undefined : processInfo(fallback);
}

/** The process, or for another usbwire's lock helper the usbwire process that runs it. */
function processInfo(pid: number): { pid: number; command: string } {
  const command = commandOf(pid);
  if (!command.startsWith(HELPER_NAME)) return { pid, command };
  const parent = /^PPid:\s*(\d+)/m.exec(readOr(`/proc/${pid}/status`, ''))?.[1];
  return parent ? { pid: Number(parent), command: commandOf(Number(parent)) } : { pid, command };
}

function readOr(file: string, fallback: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return fallback;
  }
}

function listPids(): number[] {
  try {
    return readdirSync('/proc')
      .filter((n) => /^\d+$/.test(n))
      .map(Number)
      .filter((pid) => pid !== process.pid);
  } catch {
    return [];
  }
}

/** Byte ranges this process has locked on the file `id` (maj:min:inode as /proc shows it). */
function lockRanges(pid: number, id: string): [number, number][] {
  const ranges: [number, number][] = [];
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fdinfo`);
  } catch {
    return ranges;
  }
  for (const fd of fds) {
    let info: string;
    try {
      info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
    } catch {
      continue;
    }
    for (const m of info.matchAll(/^lock:.*\s(\S+:\S+:\d+)\s+(\d+)\s+(\d+|EOF)\s*$/gm)) {
      if (m[1] !== id) continue;
      ranges.push([Number(m[2]), m[3] === 'EOF' ? Number.MAX_SAFE_INTEGER : Number(m[3])]);
    }
  }
  return ranges;
}

function commandOf(pid: number): string {
  try {
    const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
    const text = args || readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    return text.length > 120 ? `${text.slice(0, 117)}...` : text;
  } catch {
    return 'unknown command';
  }
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0');
}

let log: Logger | undefined;
function defaultLog(): Logger {
  log ??= createLogger('image-lock');
  return log;
}
