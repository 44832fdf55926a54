// Interop rig harness: boots a Debian kernel under QEMU (TCG) so the real USB clients
// (kernel vhci-hcd + usbip, QEMU usb-redir + the guest's usb-storage) talk to a usbwire
// server on this host's loopback. setup.sh builds what this needs; see
// /work/shared/rig/README.md for the facts behind the QEMU flags.
//
// Typical use:
//   const gate = interopGate(); test('x', { skip: gate.skip }, async () => { ... })
//   const srv = startUsbwire(['--usbip', `127.0.0.1:${port}`, '--disk', img]); await srv.ready;
//   const res = await bootGuest({ script, guestfwd: [{ guestPort: 3240, hostPort: port }] });

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { open as openAsync } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after } from 'node:test';
import { fileURLToPath } from 'node:url';

// ---------------------------------------------------------------------------------------
// Locations

/** Repository root (the folder with usbwire's package.json), found from this file. */
export const repoRoot: string = (() => {
  let d = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    const pj = join(d, 'package.json');
    if (existsSync(pj)) {
      try {
        if (JSON.parse(readFileSync(pj, 'utf8')).name === 'usbwire') return d;
      } catch {
        /* keep looking */
      }
    }
    d = dirname(d);
  }
  return process.cwd();
})();

/** Source folder of the rig (test/interop), also when running from dist/. */
export const rigSrcDir = join(repoRoot, 'test', 'interop');

export function rigDir(): string {
  return process.env.USBWIRE_RIG_DIR || '/var/cache/usbwire-rig';
}

export interface RigInfo {
  kernelVersion: string;
  kernelPackage: string;
  vmlinux: string;
  initrd: string;
  relay: string;
  qemu: string;
  sourcesHash: string;
}

export function rigInfo(): RigInfo | null {
  try {
    const info = JSON.parse(readFileSync(join(rigDir(), 'rig.json'), 'utf8')) as RigInfo;
    for (const f of [info.vmlinux, info.initrd, info.relay, info.qemu]) if (!existsSync(f)) return null;
    return info;
  } catch {
    return null;
  }
}

/** Hash of the rig sources, as setup.sh records it in rig.json. */
function sourcesHash(): string | null {
  try {
    const h = createHash('sha256');
    for (const f of ['setup.sh', 'guest/init.sh', 'rig-now.c', 'relay.c', ...extraSources()]) {
      h.update(readFileSync(f.startsWith('/') ? f : join(rigSrcDir, f)));
    }
    return h.digest('hex');
  } catch {
    return null;
  }
}

/** guest/tools/*.c and setup.d/*.sh, sorted as setup.sh's rig_extra_sources lists them. */
function extraSources(): string[] {
  const list = (dir: string, ext: string) =>
    existsSync(join(rigSrcDir, dir))
      ? readdirSync(join(rigSrcDir, dir))
          .filter((f) => f.endsWith(ext))
          .map((f) => join(rigSrcDir, dir, f))
      : [];
  return [...list('guest/tools', '.c'), ...list('setup.d', '.sh')].sort(byteOrder);
}

function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** setup.sh has been run (kernel, initramfs, relay and QEMU are there). */
export function rigReady(): boolean {
  return rigInfo() !== null;
}

/** The rig was built from other sources than those in the tree (setup.sh should re-run). */
export function rigStale(): boolean {
  const info = rigInfo();
  const h = sourcesHash();
  return info !== null && h !== null && info.sourcesHash !== h;
}

/** Run setup.sh when the rig is missing or stale (cheap when nothing changed). */
export function ensureRig(opts: { quiet?: boolean } = {}): RigInfo {
  if (!rigReady() || rigStale()) {
    const r = spawnSync('bash', [join(rigSrcDir, 'setup.sh')], {
      stdio: ['ignore', opts.quiet ? 'ignore' : 'inherit', opts.quiet ? 'pipe' : 'inherit'],
      encoding: 'utf8',
    });
    if (r.status !== 0) {
      throw new Error(`test/interop/setup.sh failed (status ${r.status})${r.stderr ? `:\n${r.stderr}` : ''}`);
    }
  }
  const info = rigInfo();
  if (!info) throw new Error('setup.sh ran but the rig is not ready');
  return info;
}

/**
 * Gate for interop tests. Rig ready (and refreshed if its sources changed) → run. Rig
 * missing: with CI set → throws (CI must run setup.sh first, or set USBWIRE_RIG_SETUP=1);
 * without CI → skip with a message saying how to set it up. USBWIRE_RIG_SETUP=1 runs
 * setup.sh on demand instead.
 */
export function interopGate(): { skip: string | false } {
  if (rigReady() || process.env.USBWIRE_RIG_SETUP === '1') {
    ensureRig({ quiet: true });
    return { skip: false };
  }
  if (process.env.CI) {
    throw new Error(
      `interop rig not set up in ${rigDir()}: run 'bash test/interop/setup.sh' (as root) before the interop tests, or set USBWIRE_RIG_SETUP=1`,
    );
  }
  return {
    skip: `interop rig not set up (${rigDir()}): run 'sudo bash test/interop/setup.sh' or set USBWIRE_RIG_SETUP=1`,
  };
}

// ---------------------------------------------------------------------------------------
// Guests

export interface GuestFwd {
  /** port on the guest-visible address 10.0.2.100 */
  guestPort: number;
  /** port on 127.0.0.1 of this host */
  hostPort: number;
}

/** QEMU user-net hostfwd: host 127.0.0.1:hostPort → guest 10.0.2.15:guestPort (works with restrict=on). */
export interface HostFwd {
  hostPort: number;
  guestPort: number;
}

export interface BootOptions {
  /** guest.sh body (busybox sh). lib.sh is sourced before it unless `lib: false`. */
  script: string;
  lib?: boolean;
  /** extra files written into the share (relative names) */
  files?: Record<string, string | Buffer>;
  /** QEMU user networking (eth0 = 10.0.2.15/24). Implied by guestfwd and hostfwd. */
  net?: boolean;
  /** guest 10.0.2.100:guestPort → host 127.0.0.1:hostPort through the relay */
  guestfwd?: GuestFwd[];
  /** host 127.0.0.1:hostPort → guest :guestPort, so the host reaches a server in the guest */
  hostfwd?: HostFwd[];
  /**
   * Fast network instead of QEMU's user net: a tap device inside a network namespace made
   * with createNetns(); QEMU runs in that namespace, the guest is netns.guestIp.
   */
  netns?: Netns;
  /** more QEMU arguments (USB controllers, usb-redir chardevs, drives...) */
  qemuArgs?: string[];
  /** modules /init loads besides the 9p/virtio ones (one modprobe call) */
  modules?: string[];
  /** extra kernel command line */
  append?: string;
  memoryMiB?: number;
  /** whole-run timeout; QEMU is killed after it (default 180 s) */
  timeoutMs?: number;
  /** share folder to use (default: a new temp folder) */
  shareDir?: string;
  /** called with serial console output as it arrives */
  onSerial?: (text: string) => void;
}

/** QEMU's usb-redir on `controller` (bus usbc), one device per port, each connecting out to usbwire. */
export function usbRedirArgs(
  ports: number[],
  opts: { controller?: 'qemu-xhci' | 'usb-ehci'; deviceOptions?: string; pciAddr?: string } = {},
): string[] {
  const addr = opts.pciAddr ? `,addr=${opts.pciAddr}` : '';
  const args = ['-device', `${opts.controller ?? 'qemu-xhci'},id=usbc${addr}`];
  ports.forEach((port, i) => {
    args.push('-chardev', `socket,id=ur${i},host=127.0.0.1,port=${port},reconnect=1,nodelay=on`);
    args.push('-device', `usb-redir,chardev=ur${i},bus=usbc.0${opts.deviceOptions ?? ''}`);
  });
  return args;
}

export interface GuestResult {
  /** guest.sh exit status; null when the guest did not finish (timeout, killed, crash) */
  rc: number | null;
  /** guest.sh stdout+stderr */
  log: string;
  /** serial console */
  serial: string;
  /** QEMU's own stderr (usb-redir warnings land here) */
  qemuStderr: string;
  /** guest kernel log at the end of the run (empty if the guest did not finish) */
  dmesg: string;
  shareDir: string;
  timedOut: boolean;
  killed: boolean;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  durationMs: number;
  /** remove the share folder */
  cleanup(): void;
  /** a short multi-line description for assertion messages */
  describe(): string;
}

export interface GuestHandle {
  shareDir: string;
  proc: ChildProcess;
  done: Promise<GuestResult>;
  /** kill QEMU (SIGKILL) */
  kill(): void;
  /** wait until the guest created stage-NAME in the share (rig_stage NAME) */
  waitStage(name: string, timeoutMs?: number): Promise<void>;
  /** create host-NAME in the share (the guest waits with rig_wait_host NAME) */
  signal(name: string): void;
  /** path of a file in the share */
  path(name: string): string;
}

function readOr(path: string, dflt = ''): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return dflt;
  }
}

/** The QEMU argument list for a guest (exported for debugging and the benchmarks). */
export function qemuArgs(info: RigInfo, opts: BootOptions, shareDir: string): string[] {
  const append = ['console=ttyS0', 'quiet', 'panic=-1'];
  if (opts.modules?.length) append.push(`rig.modules=${opts.modules.join(',')}`);
  const useNet = opts.net || (opts.guestfwd?.length ?? 0) > 0 || (opts.hostfwd?.length ?? 0) > 0;
  if (opts.netns) append.push(`rig.ip=${opts.netns.guestIp}/24`);
  else if (!useNet) append.push('rig.net=0');
  if (opts.append) append.push(opts.append);
  const args = [
    '-machine',
    'q35',
    '-accel',
    'tcg',
    '-cpu',
    'max',
    '-m',
    String(opts.memoryMiB ?? 512),
    '-smp',
    '1',
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-vga',
    'none',
    '-no-reboot',
    '-serial',
    'stdio',
    '-kernel',
    info.vmlinux,
    '-initrd',
    info.initrd,
    '-append',
    append.join(' '),
    '-virtfs',
    `local,path=${shareDir},mount_tag=host0,security_model=none,id=fs0`,
  ];
  if (opts.netns) {
    args.push(
      '-netdev',
      `tap,id=n0,ifname=${opts.netns.tap},script=no,downscript=no`,
      '-device',
      'virtio-net-pci,netdev=n0,romfile=',
    );
  } else if (useNet) {
    let nd = 'user,id=n0,restrict=on';
    for (const f of opts.guestfwd ?? []) {
      nd += `,guestfwd=tcp:10.0.2.100:${f.guestPort}-cmd:${info.relay} ${f.hostPort}`;
    }
    for (const f of opts.hostfwd ?? []) nd += `,hostfwd=tcp:127.0.0.1:${f.hostPort}-:${f.guestPort}`;
    args.push('-netdev', nd, '-device', 'virtio-net-pci,netdev=n0,romfile=');
  }
  args.push(...(opts.qemuArgs ?? []));
  return args;
}

/** Start a guest; returns at once with a handle (the run ends when the guest powers off). */
export function startGuest(opts: BootOptions): GuestHandle {
  const info = rigInfo();
  if (!info) throw new Error(`interop rig not set up in ${rigDir()} (run test/interop/setup.sh)`);
  const shareDir = opts.shareDir ?? mkdtempSync(join(tmpdir(), 'usbwire-guest-'));
  copyFileSync(join(rigSrcDir, 'guest', 'lib.sh'), join(shareDir, 'lib.sh'));
  const prologue = opts.lib === false ? '' : '. /mnt/host/lib.sh\n';
  writeFileSync(join(shareDir, 'guest.sh'), `${prologue}${opts.script}\n`);
  for (const [name, content] of Object.entries(opts.files ?? {})) writeFileSync(join(shareDir, name), content);
  for (const stale of ['guest.rc', 'guest.log', 'dmesg.log']) rmSync(join(shareDir, stale), { force: true });

  const started = Date.now();
  const argv = [info.qemu, ...qemuArgs(info, opts, shareDir)];
  if (opts.netns) argv.unshift('ip', 'netns', 'exec', opts.netns.name);
  const proc = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let serial = '';
  let qemuStderr = '';
  proc.stdout?.setEncoding('utf8').on('data', (s: string) => {
    serial += s;
    opts.onSerial?.(s);
  });
  proc.stderr?.setEncoding('utf8').on('data', (s: string) => {
    qemuStderr += s;
  });
  let timedOut = false;
  let killed = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.kill('SIGKILL');
  }, opts.timeoutMs ?? 180_000);

  const done = new Promise<GuestResult>((resolvePromise) => {
    const finish = (exitCode: number | null, signal: NodeJS.Signals | null) => {
      clearTimeout(timer);
      const rcText = readOr(join(shareDir, 'guest.rc')).trim();
      const rc = rcText === '' || timedOut || killed ? null : Number(rcText);
      const res: GuestResult = {
        rc,
        log: readOr(join(shareDir, 'guest.log')),
        serial,
        qemuStderr,
        dmesg: readOr(join(shareDir, 'dmesg.log')),
        shareDir,
        timedOut,
        killed,
        exitCode,
        signal,
        durationMs: Date.now() - started,
        cleanup: () => {
          if (!process.env.USBWIRE_RIG_KEEP) rmSync(shareDir, { recursive: true, force: true });
        },
        describe: () =>
          [
            `guest rc=${rc} timedOut=${timedOut} killed=${killed} qemu exit=${exitCode} signal=${signal} ` +
              `(${((Date.now() - started) / 1000).toFixed(1)} s, share ${shareDir})`,
            '--- guest.log (tail) ---',
            tail(res.log, 60),
            '--- qemu stderr ---',
            tail(qemuStderr, 20),
            '--- serial (tail) ---',
            tail(serial, 20),
            '--- dmesg (tail) ---',
            tail(res.dmesg, 40),
          ].join('\n'),
      };
      resolvePromise(res);
    };
    proc.on('exit', (code, sig) => {
      // let the stdio streams drain
      setImmediate(() => finish(code, sig));
    });
    proc.on('error', (err) => {
      qemuStderr += `\nspawn error: ${err.message}`;
      finish(null, null);
    });
  });

  return {
    shareDir,
    proc,
    done,
    kill: () => {
      killed = true;
      proc.kill('SIGKILL');
    },
    waitStage: (name, timeoutMs = 120_000) =>
      waitForFile(join(shareDir, `stage-${name}`), timeoutMs, done, `guest stage ${name}`),
    signal: (name) => writeFileSync(join(shareDir, `host-${name}`), ''),
    path: (name) => join(shareDir, name),
  };
}

/** Boot a guest, run the script, return when it powered off (or timed out). */
export function bootGuest(opts: BootOptions): Promise<GuestResult> {
  return startGuest(opts).done;
}

function tail(s: string, lines: number): string {
  const a = s.split('\n');
  return a.slice(Math.max(0, a.length - lines)).join('\n');
}

/** Poll for a file; rejects on timeout or when `abort` settles first (e.g. the guest ended). */
export async function waitForFile(
  path: string,
  timeoutMs: number,
  abort?: Promise<unknown>,
  what = path,
): Promise<void> {
  let ended = false;
  abort?.then(
    () => {
      ended = true;
    },
    () => {
      ended = true;
    },
  );
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(path)) {
    if (ended) throw new Error(`guest ended before ${what}`);
    if (Date.now() > deadline) throw new Error(`timeout waiting for ${what}`);
    await sleep(50);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Parse "KEY VALUE" lines (results.txt / times.txt written by rig_result / rig_time). */
export function readKV(shareDir: string, name = 'results.txt'): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readOr(join(shareDir, name)).split('\n')) {
    const m = /^(\S+)\s+(.*)$/.exec(line.trim());
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// The usbwire server

export interface UsbwireServer {
  proc: ChildProcess;
  /** resolves when `readyCount` stdout lines matched `readyPattern` */
  ready: Promise<void>;
  /** stdout + stderr so far */
  output(): string;
  /** SIGTERM, then SIGKILL after 5 s; resolves when the process is gone */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILL at once */
  kill(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface UsbwireOptions {
  /** default /listening/i */
  readyPattern?: RegExp;
  /** how many matching lines to wait for (default 1) */
  readyCount?: number;
  readyTimeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  /** echo the server's output to this process's stderr */
  echo?: boolean;
  /** run the server inside this network namespace (createNetns) */
  netns?: Netns;
}

/** Run `node bin/usbwire.js serve ...args` from the repository root. */
export function startUsbwire(args: string[], opts: UsbwireOptions = {}): UsbwireServer {
  // Without --control, every server would compete for the default control socket.
  const control = args.includes('--control') ? [] : ['--control', 'none'];
  const argv = [process.execPath, join(repoRoot, 'bin', 'usbwire.js'), 'serve', ...args, ...control];
  // `ip netns exec` execs the command in place: the pid (and signals) are the server's.
  if (opts.netns) argv.unshift('ip', 'netns', 'exec', opts.netns.name);
  const proc = spawn(argv[0]!, argv.slice(1), {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...opts.env },
  });
  let out = '';
  const pattern = opts.readyPattern ?? /listening/i;
  const need = opts.readyCount ?? 1;
  let seen = 0;
  let lineBuf = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => {
    proc.on('exit', (code, signal) => r({ code, signal }));
    proc.on('error', () => r({ code: null, signal: null }));
  });
  const ready = new Promise<void>((resolveReady, rejectReady) => {
    const timer = setTimeout(
      () => rejectReady(new Error(`usbwire not ready after ${opts.readyTimeoutMs ?? 15000} ms; output:\n${out}`)),
      opts.readyTimeoutMs ?? 15000,
    );
    proc.stdout?.setEncoding('utf8').on('data', (s: string) => {
      out += s;
      if (opts.echo) process.stderr.write(s);
      lineBuf += s;
      const lines = lineBuf.split('\n');
      lineBuf = lines.pop() ?? '';
      for (const l of lines) {
        if (pattern.test(l) && ++seen === need) {
          clearTimeout(timer);
          resolveReady();
        }
      }
    });
    proc.stderr?.setEncoding('utf8').on('data', (s: string) => {
      out += s;
      if (opts.echo) process.stderr.write(s);
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      rejectReady(new Error(`usbwire exited (code ${code}, signal ${signal}) before ready; output:\n${out}`));
    });
  });
  ready.catch(() => {}); // callers that never await ready must not crash the process
  const stopWith = async (sig: NodeJS.Signals) => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill(sig);
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      const r = await exited;
      clearTimeout(t);
      return r;
    }
    return exited;
  };
  return {
    proc,
    ready,
    output: () => out,
    stop: () => stopWith('SIGTERM'),
    kill: () => stopWith('SIGKILL'),
    exited,
  };
}

/** The usbwire CLI is built (dist/src/cli/main.js exists). */
export function usbwireBuilt(): boolean {
  return existsSync(join(repoRoot, 'dist', 'src', 'cli', 'main.js'));
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolvePort(port));
    });
  });
}

// ---------------------------------------------------------------------------------------
// Network namespace with a tap device (fast USB/IP path; needs root)

export interface Netns {
  name: string;
  tap: string;
  /** the namespace's address on the tap (servers listen here) */
  hostIp: string;
  /** the guest's address */
  guestIp: string;
  destroy(): void;
}

let netnsCount = 0;

/**
 * Create a network namespace with lo up and a tap device 10.211.0.1/24 (the guest gets
 * 10.211.0.2). Traffic stays inside the namespace. Call destroy() when done.
 */
export function createNetns(): Netns {
  const name = `usbwire-rig-${process.pid}-${netnsCount++}`;
  const run = (...a: string[]) => {
    const r = spawnSync('ip', a, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`ip ${a.join(' ')} failed: ${r.stderr}`);
  };
  run('netns', 'add', name);
  try {
    run('netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up');
    run('netns', 'exec', name, 'ip', 'tuntap', 'add', 'dev', 'tap0', 'mode', 'tap');
    run('netns', 'exec', name, 'ip', 'addr', 'add', '10.211.0.1/24', 'dev', 'tap0');
    run('netns', 'exec', name, 'ip', 'link', 'set', 'tap0', 'up');
  } catch (e) {
    spawnSync('ip', ['netns', 'del', name]);
    throw e;
  }
  return {
    name,
    tap: 'tap0',
    hostIp: '10.211.0.1',
    guestIp: '10.211.0.2',
    destroy: () => {
      spawnSync('ip', ['netns', 'del', name]);
    },
  };
}

// ---------------------------------------------------------------------------------------
// Disk images

/** Deterministic pseudo-random bytes (AES-128-CTR keystream of `seed`). */
export function patternBytes(seed: string, offset: number, length: number): Buffer {
  if (offset % 16 !== 0) {
    const start = offset - (offset % 16);
    return patternBytes(seed, start, length + (offset - start)).subarray(offset - start);
  }
  const key = createHash('sha256').update(`usbwire-rig:${seed}`).digest().subarray(0, 16);
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64BE(BigInt(offset / 16), 8);
  const c = createCipheriv('aes-128-ctr', key, iv);
  return Buffer.concat([c.update(Buffer.alloc(length)), c.final()]);
}

/** Create (overwrite) a raw image of `size` bytes filled with patternBytes(seed). */
export function makePatternImage(path: string, size: number, seed: string): void {
  const fd = openSync(path, 'w');
  try {
    const chunk = 4 << 20;
    for (let off = 0; off < size; off += chunk) {
      const n = Math.min(chunk, size - off);
      writeSync(fd, patternBytes(seed, off, n), 0, n, off);
    }
  } finally {
    closeSync(fd);
  }
}

/** Create (overwrite) a zero-filled raw image. */
export function makeZeroImage(path: string, size: number): void {
  const fd = openSync(path, 'w');
  try {
    if (size > 0) writeSync(fd, Buffer.alloc(1), 0, 1, size - 1);
  } finally {
    closeSync(fd);
  }
}

export function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

export function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** Read `length` bytes at `offset` of a file. */
export async function readAt(path: string, offset: number, length: number): Promise<Buffer> {
  const fh = await openAsync(path, 'r');
  try {
    const b = Buffer.alloc(length);
    const { bytesRead } = await fh.read(b, 0, length, offset);
    return b.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

export interface Range {
  offset: number;
  length: number;
}

/**
 * Compare an image with the pattern it was made from, outside `exclude` ranges. Returns
 * the offset of the first differing byte, or -1 when everything outside matches.
 */
export function firstDiffOutside(path: string, seed: string, size: number, exclude: Range[]): number {
  const data = readFileSync(path);
  if (data.length !== size) return Math.min(data.length, size);
  const chunk = 4 << 20;
  const ex = [...exclude].sort((a, b) => a.offset - b.offset);
  for (let off = 0; off < size; off += chunk) {
    const n = Math.min(chunk, size - off);
    const want = patternBytes(seed, off, n);
    const got = data.subarray(off, off + n);
    if (want.equals(got)) continue;
    for (let i = 0; i < n; i++) {
      if (want[i] === got[i]) continue;
      const abs = off + i;
      if (ex.some((r) => abs >= r.offset && abs < r.offset + r.length)) continue;
      return abs;
    }
  }
  return -1;
}

/** Absolute path helper for args given relative to the repo root. */
export function fromRoot(...p: string[]): string {
  return resolve(repoRoot, ...p);
}

/**
 * Shared set-up of an interop test file: the skip reason, a work folder (removed after a clean
 * run unless USBWIRE_RIG_KEEP is set), and servers stopped when the file's tests end. Set
 * `failed` to keep the folder for a look.
 */
export interface InteropFile {
  skip: string | false;
  work: string;
  servers: UsbwireServer[];
  failed: boolean;
}

export function interopFile(name: string): InteropFile {
  const gate = interopGate();
  const file: InteropFile = {
    skip: gate.skip || (!usbwireBuilt() && !process.env.CI ? 'usbwire CLI not built (dist/src/cli/main.js)' : false),
    work: mkdtempSync(join(tmpdir(), `usbwire-${name}-`)),
    servers: [],
    failed: false,
  };
  after(async () => {
    for (const s of file.servers) await s.stop();
    if (!file.failed && !process.env.USBWIRE_RIG_KEEP) rmSync(file.work, { recursive: true, force: true });
    else process.stderr.write(`${name} interop: files kept in ${file.work}\n`);
  });
  return file;
}
