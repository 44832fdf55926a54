// Storage throughput through the interop rig: the same dd suite inside a TCG guest against
// a 128 MiB disk reached three ways:
//   qemu-usb-storage  QEMU's built-in usb-storage (BOT) on qemu-xhci, in-process (reference)
//   usbwire-usbip     usbwire serve --usbip, guest vhci-hcd via QEMU user net + relay
//   usbwire-usbip-tap the same over a tap device in a network namespace made for the run
//                     (no slirp, no relay; needs root)
//   usbwire-usbredir  usbwire serve --usbredir, QEMU usb-redir on qemu-xhci
//   usbwire-usbredir-uas  the same with --disk IMG,uas,speed=super: the guest binds uas (streams)
//   usbwire-usbip-uas usbwire serve --usbip --disk IMG,uas (high speed: uas with READ/WRITE READY
//                     over vhci-hcd, user net + relay); not in the default list
//   bridge-usbip-to-usbredir   usbwire A --usbip serves the disk; usbwire B imports it
//                     (--remote usbip://) and serves it to QEMU usb-redir
//   bridge-usbredir-to-usbip   usbwire A --usbredir serves the disk; usbwire B imports it
//                     (--remote usbredir://) and serves it to the guest's vhci-hcd
// The suite (busybox dd, direct I/O, timed in the guest with CLOCK_MONOTONIC):
//   read16k  dd if=/dev/sdX of=/dev/null bs=16k count=5000 iflag=direct
//   read1m   dd if=/dev/sdX of=/dev/null bs=1M count=64 iflag=direct
//   write16k dd if=/dev/zero of=/dev/sdX bs=16k count=2000 oflag=direct
// Disk image cache mode: QEMU's drive uses cache=writeback (page cache, flushes honoured),
// which is what usbwire's file backend does (page cache + fdatasync on SYNCHRONIZE CACHE).
//
// Standalone: node dist/bench/rig-storage.js [--runs N] [--setups a,b,c]

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type BootOptions,
  bootGuest,
  createNetns,
  ensureRig,
  freePort,
  makePatternImage,
  type Netns,
  readKV,
  startUsbwire,
  type UsbwireServer,
  usbRedirArgs,
} from '../test/interop/rig.js';
import { waitListed } from '../test/interop/usbip-wait.js';

export type StorageSetup =
  | 'qemu-usb-storage'
  | 'usbwire-usbip'
  | 'usbwire-usbip-tap'
  | 'usbwire-usbip-tap-ss'
  | 'usbwire-usbredir'
  | 'usbwire-usbredir-ss'
  | 'usbwire-usbredir-uas'
  | 'usbwire-usbip-uas'
  | 'bridge-usbip-to-usbredir'
  | 'bridge-usbredir-to-usbip';
/** `-ss` setups export the disk at SuperSpeed (`--disk IMG,speed=super`): usb-storage then sends 1 MiB commands instead of 120 KiB. */
export const STORAGE_SETUPS: StorageSetup[] = [
  'qemu-usb-storage',
  'usbwire-usbip',
  'usbwire-usbip-tap',
  'usbwire-usbip-tap-ss',
  'usbwire-usbredir',
  'usbwire-usbredir-ss',
  'usbwire-usbredir-uas',
  'bridge-usbip-to-usbredir',
  'bridge-usbredir-to-usbip',
];
const ALL_SETUPS: StorageSetup[] = [...STORAGE_SETUPS, 'usbwire-usbip-uas'];

export interface DdSuiteOptions {
  setup: StorageSetup;
  /** raw image to use (default: a fresh 128 MiB pattern image in a temp folder) */
  image?: string;
  timeoutMs?: number;
  /** print the server's and guest's output on failure (default true) */
  verbose?: boolean;
}

export interface DdSuiteResult {
  setup: StorageSetup;
  /** seconds */
  read16k: number;
  read1m: number;
  write16k: number;
  /** the guest driver bound to the disk's interface (usb-storage or uas) */
  driver: string;
  /** whole guest run (boot to poweroff), ms */
  guestMs: number;
}

const SUITE = `
rig_time read16k dd if=/dev/$D of=/dev/null bs=16k count=5000 iflag=direct || fail "read16k"
rig_time read1m dd if=/dev/$D of=/dev/null bs=1M count=64 iflag=direct || fail "read1m"
rig_time write16k dd if=/dev/zero of=/dev/$D bs=16k count=2000 oflag=direct || fail "write16k"
`;

export async function runDdSuite(opts: DdSuiteOptions): Promise<DdSuiteResult> {
  ensureRig({ quiet: true });
  const tmp = mkdtempSync(join(tmpdir(), 'usbwire-bench-'));
  const img = opts.image ?? join(tmp, 'disk.img');
  if (!opts.image) makePatternImage(img, 128 << 20, 'bench');
  let srv: UsbwireServer | undefined;
  /** The device side of a bridge setup (srv is the bridge). */
  let origin: UsbwireServer | undefined;
  let netns: Netns | undefined;
  try {
    let boot: BootOptions;
    let attach = '';
    const base = { timeoutMs: opts.timeoutMs ?? 300_000 };
    const disk = opts.setup.endsWith('-ss')
      ? `${img},speed=super`
      : opts.setup === 'usbwire-usbredir-uas'
        ? `${img},uas,speed=super`
        : opts.setup === 'usbwire-usbip-uas'
          ? `${img},uas`
          : img;
    const modules = ['usb_storage', 'uas', 'sd_mod'];
    switch (opts.setup) {
      case 'qemu-usb-storage':
        boot = {
          ...base,
          script: '',
          modules: ['xhci_pci', ...modules],
          qemuArgs: [
            '-device',
            'qemu-xhci,id=usbc',
            '-drive',
            `if=none,id=d0,file=${img},format=raw,cache=writeback`,
            '-device',
            'usb-storage,drive=d0,bus=usbc.0',
          ],
        };
        break;
      case 'usbwire-usbip':
      case 'usbwire-usbip-uas': {
        const port = await freePort();
        srv = startUsbwire(['--usbip', `127.0.0.1:${port}`, '--disk', disk]);
        await srv.ready;
        boot = {
          ...base,
          script: '',
          modules: ['vhci_hcd', ...modules],
          guestfwd: [{ guestPort: 3240, hostPort: port }],
        };
        attach = 'usbip --tcp-port 3240 attach -r 10.0.2.100 -b 1-1 || fail "usbip attach"';
        break;
      }
      case 'usbwire-usbip-tap':
      case 'usbwire-usbip-tap-ss': {
        netns = createNetns();
        srv = startUsbwire(['--usbip', `${netns.hostIp}:3240`, '--disk', disk], { netns });
        await srv.ready;
        boot = { ...base, script: '', modules: ['vhci_hcd', ...modules], netns };
        attach = `usbip attach -r ${netns.hostIp} -b 1-1 || fail "usbip attach"`;
        break;
      }
      case 'usbwire-usbredir':
      case 'usbwire-usbredir-ss':
      case 'usbwire-usbredir-uas': {
        const port = await freePort();
        srv = startUsbwire(['--usbredir', `127.0.0.1:${port}`, '--disk', disk]);
        await srv.ready;
        boot = { ...base, script: '', modules: ['xhci_pci', ...modules], qemuArgs: usbRedirArgs([port]) };
        break;
      }
      case 'bridge-usbip-to-usbredir': {
        const [a, b] = [await freePort(), await freePort()];
        origin = startUsbwire(['--usbip', `127.0.0.1:${a}`, '--disk', disk]);
        await origin.ready;
        srv = startUsbwire(['--usbredir', `127.0.0.1:${b}`, '--remote', `usbip://127.0.0.1:${a}/1-1`]);
        await srv.ready;
        boot = { ...base, script: '', modules: ['xhci_pci', ...modules], qemuArgs: usbRedirArgs([b]) };
        break;
      }
      case 'bridge-usbredir-to-usbip': {
        const [a, b] = [await freePort(), await freePort()];
        origin = startUsbwire(['--usbredir', `127.0.0.1:${a}`, '--disk', disk]);
        await origin.ready;
        srv = startUsbwire(['--usbip', `127.0.0.1:${b}`, '--remote', `usbredir://127.0.0.1:${a}`]);
        await srv.ready;
        await waitListed(b, ['1-1']);
        boot = {
          ...base,
          script: '',
          modules: ['vhci_hcd', ...modules],
          guestfwd: [{ guestPort: 3240, hostPort: b }],
        };
        attach = 'usbip --tcp-port 3240 attach -r 10.0.2.100 -b 1-1 || fail "usbip attach"';
        break;
      }
      default:
        throw new Error(`unknown setup ${String(opts.setup)}`);
    }
    boot.script = `
${attach}
D=$(rig_wait_disk 60) || fail "no disk"
rig_result driver "$(basename "$(readlink -f /sys/block/$D/device/../../../driver)")"
${SUITE}
`;
    const res = await bootGuest(boot);
    if (res.rc !== 0) {
      const extra =
        opts.verbose === false
          ? ''
          : `\n${res.describe()}${srv ? `\n--- usbwire ---\n${srv.output()}` : ''}${origin ? `\n--- usbwire (device side) ---\n${origin.output()}` : ''}`;
      throw new Error(`dd suite failed on ${opts.setup}${extra}`);
    }
    const t = readKV(res.shareDir, 'times.txt');
    const driver = readKV(res.shareDir).driver ?? '?';
    res.cleanup();
    return {
      setup: opts.setup,
      read16k: Number(t.read16k),
      read1m: Number(t.read1m),
      write16k: Number(t.write16k),
      driver,
      guestMs: res.durationMs,
    };
  } finally {
    if (srv) await srv.stop();
    if (origin) await origin.stop();
    netns?.destroy();
    rmSync(tmp, { recursive: true, force: true });
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Run each setup `runs` times (median) and format a side-by-side table. */
export async function ddTable(setups: StorageSetup[] = STORAGE_SETUPS, runs = 1): Promise<string> {
  const rows: { setup: string; r: Omit<DdSuiteResult, 'setup' | 'guestMs'> | null; err?: string }[] = [];
  for (const setup of setups) {
    try {
      const all: DdSuiteResult[] = [];
      for (let i = 0; i < runs; i++) all.push(await runDdSuite({ setup }));
      rows.push({
        setup,
        r: {
          read16k: median(all.map((a) => a.read16k)),
          read1m: median(all.map((a) => a.read1m)),
          write16k: median(all.map((a) => a.write16k)),
          driver: [...new Set(all.map((a) => a.driver))].join('/'),
        },
      });
    } catch (e) {
      rows.push({ setup, r: null, err: (e as Error).message.split('\n')[0] });
    }
  }
  const ref = rows.find((r) => r.setup === 'qemu-usb-storage')?.r ?? null;
  const MB = (bytes: number, s: number) => (bytes / s / 1e6).toFixed(1);
  const cell = (key: 'read16k' | 'read1m' | 'write16k', bytes: number, r: NonNullable<(typeof rows)[0]['r']>) => {
    // Throughput relative to the reference: 0.90 = 90 % of QEMU's speed.
    const ratio = ref ? ` ×${(ref[key] / r[key]).toFixed(2)}` : '';
    return `${r[key].toFixed(3)} s (${MB(bytes, r[key])} MB/s)${ratio}`;
  };
  const lines = [
    `dd suite in a TCG guest, 128 MiB disk, ${runs} run(s) each (median); ×N = throughput relative to QEMU's built-in usb-storage (its time / ours; 1.00 = as fast)`,
    '| setup | guest driver | 16 KiB × 5000 direct read | 1 MiB × 64 direct read | 16 KiB × 2000 direct write |',
    '| --- | --- | --- | --- | --- |',
  ];
  for (const row of rows) {
    if (!row.r) {
      lines.push(`| ${row.setup} | | failed: ${row.err} | | |`);
      continue;
    }
    lines.push(
      `| ${row.setup} | ${row.r.driver} | ${cell('read16k', 16384 * 5000, row.r)} | ${cell('read1m', 64 << 20, row.r)} | ${cell('write16k', 16384 * 2000, row.r)} |`,
    );
  }
  return lines.join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const argv = process.argv.slice(2);
  let runs = 1;
  let setups = STORAGE_SETUPS;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--runs') runs = Number(argv[++i]);
    else if (argv[i] === '--setups') setups = argv[++i]!.split(',') as StorageSetup[];
    else {
      process.stderr.write(`usage: node dist/bench/rig-storage.js [--runs N] [--setups ${ALL_SETUPS.join(',')}]\n`);
      process.exit(2);
    }
  }
  ddTable(setups, runs).then(
    (t) => process.stdout.write(`${t}\n`),
    (e) => {
      process.stderr.write(`${(e as Error).stack}\n`);
      process.exitCode = 1;
    },
  );
}
