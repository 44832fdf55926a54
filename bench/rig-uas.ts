// (f) Storage that hides latency, measured with the real clients in one TCG guest (issue 10):
//   A. one reader, 16 KiB direct reads in sequence (`dd bs=16k count=5000 iflag=direct`),
//   B. 8 concurrent random 16 KiB direct readers (8 processes, fixed count each),
//   C. sequential 1 MiB direct reads (`dd bs=1M iflag=direct`) through the delay proxy at
//      RTT 0, 1, 5, 10, 20 ms for BOT, BOT with read-ahead (a bridge next to the guest),
//      UAS and BOT presented as UAS.
// Every device sits on the same guest's qemu-xhci at once, each on its own root port; a
// measurement reads one device while the others are idle, and the devices take turns, so each
// table compares figures taken side by side in one run:
//   port 1  QEMU's built-in usb-storage (in-process BOT; SuperSpeed on xHCI): the reference (1.00)
//   port 9  QEMU's built-in usb-uas + scsi-hd (in-process UAS with streams): what UAS itself costs
//           this guest per command, the ceiling for usbwire's UAS in A and B
//   port 2  usbwire --disk IMG (BOT, high speed) over usb-redir
//   port 3  usbwire --disk IMG,uas,speed=super over usb-redir (streams)
//   port 10 usbwire --disk IMG,as-uas=super over usb-redir (the BOT disk behind a UAS front end)
//   port 4  usb-redir → DelayProxy → usbwire --disk IMG (BOT, high speed)
//   port 5  usb-redir → usbwire B --remote usbip://PROXY/1-1,read-ahead → DelayProxy →
//           usbwire A --usbip --disk IMG (the read-ahead sits next to the guest)
//   port 11 the same with read-ahead=pipelined (prefetch CBW, data and CSW sent in one go)
//   port 6  usb-redir → DelayProxy → usbwire --disk IMG,uas,speed=super
//   port 7  usb-redir → DelayProxy → usbwire --disk IMG,as-uas=super (a BOT disk wrapped as UAS on the
//           device's side of the link)
//   port 8  usb-redir → DelayProxy → usbwire --disk IMG,speed=super (BOT with 1 MiB commands:
//           the best plain BOT can do; port 4's high-speed BOT gets 120 KiB commands)
// The proxies share one link setting, changed between the RTT points while they are idle, so
// one boot serves every point. A device whose options this build does not know is left out
// (its column says so). The guest times its reads with test/interop/guest/tools/randread.c
// (the clock runs inside the reader, not across an exec); `-s ... 1 COUNT BS` reads exactly
// what `dd if=DEV of=/dev/null bs=BS count=COUNT iflag=direct` reads. Part A also runs busybox
// dd itself, timed by the shell (exec included), beside it. A and B also give the CPU time QEMU
// and usbwire spent per MB (/proc/PID/stat), steadier than clocks on a loaded machine. Every
// run's data check value is compared with the same tool run on the host over the image file: a
// device that returned wrong data fails its cell. The delay proxies run in this process
// (DelayProxy); the 0 ms point has the proxy in the path with no delay.
//
// Standalone: node dist/bench/rig-uas.js [--quick] [--rtts 0,10] [--rounds N] [--trace DIR]
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LinkOptions } from '../src/transport/delay-pipe.js';
import { DelayProxy } from '../src/transport/delay-proxy.js';
import { setLogSink } from '../src/util/log.js';
import { type CommandResult, GuestShell } from '../test/interop/guest-shell.js';
import {
  ensureRig,
  freePort,
  makePatternImage,
  rigDir,
  rigReady,
  startGuest,
  startUsbwire,
  type UsbwireServer,
} from '../test/interop/rig.js';
import { summarise } from './trace-summary.js';

const MiB = 1 << 20;
const DISK_BYTES = 128 * MiB;
const SEED = 'rig-uas-bench';

export interface RigUasOptions {
  quick?: boolean;
  /** RTT points of part C in ms (default 0, 1, 5, 10, 20; quick: 0, 10) */
  rtts?: number[];
  /** rounds of parts A and B (median; default 5, quick 3 shorter ones) */
  rounds?: number;
  /** USBWIRE_TRACE the servers of ports 2, 3 and 10 into this folder, summarised after the tables */
  traceDir?: string;
}

/** A device in the guest: where it sits, how it is served, whether it came up. */
interface Device {
  port: number;
  label: string;
  /** why it is not there (this build lacks the option, or its server failed) */
  missing?: string;
  /** the port QEMU's usb-redir connects to */
  redirPort?: number;
  /** QEMU's own device (no usbwire) */
  builtin?: boolean;
  /** the usbwire processes serving it */
  pids: number[];
  /** filled in once the guest has it */
  disk?: string;
  driver?: string;
  speed?: string;
  /** the guest's largest command (max_sectors_kb) and SCSI queue depth */
  maxKb?: string;
  depth?: string;
}

interface Reading {
  seconds: number;
  bytes: number;
  mbps: number;
  /** CPU time QEMU (the guest's whole work, usb-redir included) and usbwire spent meanwhile, ms */
  qemuCpuMs?: number;
  usbwireCpuMs?: number;
  /** undefined when the data matched; else what went wrong */
  error?: string;
}

/** The guest side: finds the disk on an xHCI root port, runs the reader. */
const GUEST_HELPERS = `
# port_disk N: the sd disk of the USB device on root port N (bus 1 at high speed, 2 at SuperSpeed).
port_disk() {
  for _b in /sys/block/sd*; do
    [ -e "$_b" ] || continue
    case "$(readlink -f "$_b")" in */[0-9]-$1/*) ;; *) continue ;; esac
    [ "$(cat "$_b/size" 2>/dev/null || echo 0)" -gt 0 ] && [ -b "/dev/\${_b##*/}" ] || continue
    echo "\${_b##*/}"
    return 0
  done
  return 1
}
# port_info N TIMEOUT_S: "disk D driver X speed S" once port N has a disk.
port_info() {
  _n=0
  until _d="$(port_disk "$1")"; do
    _n=$((_n + 1))
    [ "$_n" -gt $(($2 * 10)) ] && { echo "none"; return 1; }
    rig_nap 0.1
  done
  _u="$(cd /sys/bus/usb/devices && for x in [0-9]-$1; do [ -e "$x" ] && echo "$x"; done | head -1)"
  _drv="$(basename "$(readlink "/sys/bus/usb/devices/$_u:1.0/driver")")"
  echo "disk $_d driver $_drv speed $(cat "/sys/bus/usb/devices/$_u/speed")" \
    "maxkb $(cat "/sys/block/$_d/queue/max_sectors_kb") depth $(cat "/sys/block/$_d/device/queue_depth" 2>/dev/null || echo -)"
}
`;

type Log = (line: string) => void;

type Run = (script: string, timeoutMs: number) => Promise<CommandResult>;

class Bench {
  readonly #run: Run;
  readonly #hostReader: string;
  readonly #img: string;
  readonly #expected = new Map<string, string>();

  readonly #qemuPid: number;

  constructor(run: Run, hostReader: string, img: string, qemuPid: number) {
    this.#run = run;
    this.#qemuPid = qemuPid;
    this.#hostReader = hostReader;
    this.#img = img;
  }

  /** The reader's check value over the image file itself (what every device must return). */
  #expect(args: string[]): string {
    const onImage = [...args.slice(0, -4), this.#img, ...args.slice(-3)];
    const key = onImage.join(' ');
    let v = this.#expected.get(key);
    if (v === undefined) {
      const r = spawnSync(this.#hostReader, onImage, { encoding: 'utf8' });
      const m = /check (\S+)/.exec(r.stdout);
      if (r.status !== 0 || !m) throw new Error(`randread on the host image failed: ${r.stderr}`);
      v = m[1]!;
      this.#expected.set(key, v);
    }
    return v;
  }

  /** `randread [-s] /dev/DISK PROCS COUNT BS` in the guest, checked against the image. */
  async read(dev: Device, mode: 'seq' | 'random', procs: number, count: number, bs: number): Promise<Reading> {
    const args = [...(mode === 'seq' ? ['-s'] : []), `/dev/${dev.disk}`, String(procs), String(count), String(bs)];
    const cpu0 = [cpuMs([this.#qemuPid]), cpuMs(dev.pids)];
    const r = await this.#run(`randread ${args.join(' ')}`, 600_000);
    const cpu1 = [cpuMs([this.#qemuPid]), cpuMs(dev.pids)];
    const m = /bytes (\d+) seconds (\S+) mbps (\S+) check (\S+)/.exec(r.out);
    if (r.rc !== 0 || !m) return { seconds: Number.NaN, bytes: 0, mbps: Number.NaN, error: `failed: ${r.out.trim()}` };
    const reading: Reading = {
      bytes: Number(m[1]),
      seconds: Number(m[2]),
      mbps: Number(m[3]),
      // Includes the guest command's start and end around the timed reads: the same for every device.
      qemuCpuMs: cpu1[0]! - cpu0[0]!,
      usbwireCpuMs: cpu1[1]! - cpu0[1]!,
    };
    const want = this.#expect(args);
    return m[4] === want ? reading : { ...reading, error: `data mismatch (check ${m[4]}, image ${want})` };
  }

  /** busybox dd itself, timed by the guest shell around the exec (as test/interop's rig_time does). */
  async dd(dev: Device, bs: string, count: number): Promise<number> {
    const r = await this.#run(
      `a=$(rig-now); dd if=/dev/${dev.disk} of=/dev/null bs=${bs} count=${count} iflag=direct 2>/dev/null || exit 1; b=$(rig-now)
awk -v a="$a" -v b="$b" 'BEGIN { printf "%.6f\\n", b - a }'`,
      600_000,
    );
    return r.rc === 0 ? Number(r.out.trim()) : Number.NaN;
  }
}

const TICK_MS = 1000 / 100; // USER_HZ

/** User + system CPU time of these processes (all threads), ms. */
function cpuMs(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]); // fields 14 and 15: utime, stime
    } catch {
      /* gone */
    }
  }
  return ticks * TICK_MS;
}

function median(xs: number[]): number {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const fmt = (x: number, digits = 1) => (Number.isNaN(x) ? '—' : x.toFixed(digits));
const ratio = (x: number, ref: number) => (Number.isNaN(x) || Number.isNaN(ref) ? '—' : `×${(x / ref).toFixed(2)}`);

/** Start a usbwire server; undefined (with the reason in dev.missing) when it does not come up. */
async function serve(
  args: string[],
  dev: Device,
  servers: UsbwireServer[],
  env?: NodeJS.ProcessEnv,
): Promise<UsbwireServer | undefined> {
  const srv = startUsbwire(args, { env });
  servers.push(srv);
  try {
    await srv.ready;
    if (srv.proc.pid) dev.pids.push(srv.proc.pid);
    return srv;
  } catch {
    const text = srv.output();
    const option = /unknown option "[^"]*"/.exec(text);
    dev.missing = option
      ? `not in this build (${option[0]})`
      : `did not start: ${text.trim().split('\n').pop()?.slice(0, 120) ?? ''}`;
    return undefined;
  }
}

export async function rigUasBench(opts: RigUasOptions = {}): Promise<string> {
  const quick = opts.quick ?? false;
  const rtts = opts.rtts ?? (quick ? [0, 10] : [0, 1, 5, 10, 20]);
  const rounds = opts.rounds ?? (quick ? 3 : 5);
  if (!rigReady() && !process.env.USBWIRE_RIG_DIR) {
    return '(f) skipped: the interop rig is not set up (bash test/interop/setup.sh)';
  }
  ensureRig({ quiet: true });
  setLogSink('silent');
  const work = mkdtempSync(join(tmpdir(), 'usbwire-rig-uas-'));
  const img = join(work, 'disk.img');
  const qemuImg = join(work, 'qemu.img');
  makePatternImage(img, DISK_BYTES, SEED);
  copyFileSync(img, qemuImg);
  const servers: UsbwireServer[] = [];
  const proxies: DelayProxy[] = [];
  const nearGuest = new Map<Device, UsbwireServer>();
  const out: string[] = [];
  const log: Log = (l) => {
    out.push(l);
    if (process.env.USBWIRE_BENCH_VERBOSE) process.stderr.write(`${l}\n`);
  };
  // Shared by every proxy (DelayedDirection reads delayMs at each chunk): one knob for all of C.
  const link: LinkOptions = { delayMs: 0 };
  const proxy = async (to: number) => {
    const p = new DelayProxy({
      listen: { host: '127.0.0.1', port: 0 },
      to: { host: '127.0.0.1', port: to },
      up: link,
      down: link,
    });
    proxies.push(p);
    return (await p.listen()).port;
  };
  // Each server gets its own copy: usbwire refuses an image another process holds writable.
  const copy = (name: string) => {
    const path = join(work, `${name}.img`);
    copyFileSync(img, path);
    return path;
  };
  const redir = async (port: number, label: string, disk: string, proxied: boolean): Promise<Device> => {
    const dev: Device = { port, label, pids: [] };
    const args = ['--disk', disk.replace('IMG', copy(`port${port}`))];
    const p = await freePort();
    const trace = opts.traceDir && !proxied ? { USBWIRE_TRACE: join(opts.traceDir, `port${port}.tsv`) } : undefined;
    if (await serve(['--usbredir', `127.0.0.1:${p}`, ...args], dev, servers, trace)) {
      dev.redirPort = proxied ? await proxy(p) : p;
    }
    return dev;
  };

  try {
    const ref: Device = { port: 1, label: "QEMU's usb-storage (in-process BOT)", builtin: true, pids: [] };
    const refUas: Device = { port: 9, label: "QEMU's usb-uas (in-process UAS)", builtin: true, pids: [] };
    const bot = await redir(2, 'usbwire BOT, usb-redir', 'IMG', false);
    const uas = await redir(3, 'usbwire UAS (SuperSpeed), usb-redir', 'IMG,uas,speed=super', false);
    const asUas = await redir(10, 'usbwire BOT-as-UAS (SuperSpeed), usb-redir', 'IMG,as-uas=super', false);
    const botL = await redir(4, 'BOT (high speed)', 'IMG', true);
    const bridge = await bridgeDevice(5, 'read-ahead', copy('port5'), servers, proxy, nearGuest);
    const bridgeP = await bridgeDevice(11, 'read-ahead=pipelined', copy('port11'), servers, proxy, nearGuest);
    const uasL = await redir(6, 'UAS (SuperSpeed, streams)', 'IMG,uas,speed=super', true);
    const asUasL = await redir(7, 'BOT-as-UAS (SuperSpeed)', 'IMG,as-uas=super', true);
    const botSsL = await redir(8, 'BOT (SuperSpeed)', 'IMG,speed=super', true);
    const all = [ref, refUas, bot, uas, asUas, botL, bridge, bridgeP, uasL, asUasL, botSsL];

    const qemuArgs = [
      '-device',
      'qemu-xhci,id=usbc,p2=11,p3=11',
      '-drive',
      `if=none,id=d0,file=${qemuImg},format=raw,cache=writeback`,
      '-device',
      'usb-storage,drive=d0,bus=usbc.0,port=1',
      '-drive',
      `if=none,id=d1,file=${copy('port9')},format=raw,cache=writeback`,
      '-device',
      'usb-uas,id=uas9,bus=usbc.0,port=9',
      '-device',
      'scsi-hd,bus=uas9.0,scsi-id=0,lun=0,drive=d1',
    ];
    for (const d of all) {
      if (d.redirPort === undefined) continue;
      qemuArgs.push('-chardev', `socket,id=ur${d.port},host=127.0.0.1,port=${d.redirPort},reconnect=1,nodelay=on`);
      qemuArgs.push('-device', `usb-redir,chardev=ur${d.port},bus=usbc.0,port=${d.port}`);
    }
    const g = startGuest({
      script: `. /mnt/host/bench.sh\nrig_command_loop`,
      files: { 'bench.sh': GUEST_HELPERS },
      modules: ['xhci_pci', 'usb_storage', 'uas', 'sd_mod'],
      qemuArgs,
      timeoutMs: 40 * 60_000,
    });
    const sh = new GuestShell(g);
    // Every command sources the helpers (each runs in its own subshell).
    const hostReader = join(rigDir(), 'bin', 'guest', 'randread');
    const bench = new Bench((s, t) => sh.run(`. /mnt/host/bench.sh\n${s}`, t), hostReader, img, g.proc.pid ?? 0);
    try {
      for (const d of all) {
        if (d.missing || (d.redirPort === undefined && !d.builtin)) continue;
        const r = await sh.run(`. /mnt/host/bench.sh\nport_info ${d.port} 120`, 180_000);
        const m = /disk (\S+) driver (\S+) speed (\S+) maxkb (\S+) depth (\S+)/.exec(r.out);
        if (r.rc !== 0 || !m) d.missing = `no disk in the guest (${r.out.trim()})`;
        else [d.disk, d.driver, d.speed, d.maxKb, d.depth] = [m[1]!, m[2]!, m[3]!, m[4]!, m[5]!];
      }
      log(describeDevices(all));
      // Warm up each device (the guest's queues, usbwire's JIT) with reads outside every table.
      for (const d of present(all)) await bench.read(d, 'seq', 1, 500, 16384);
      const ab = [ref, refUas, bot, uas, asUas];
      log(await partA(bench, ab, rounds, quick));
      log(await partB(bench, ab, rounds, quick));
      log(await partC(bench, [botL, botSsL, bridge, bridgeP, uasL, asUasL], link, rtts, quick));
    } catch (e) {
      log(`(f) stopped: ${(e as Error).message}`);
    } finally {
      sh.exit();
      const t = setTimeout(() => g.kill(), 60_000);
      await g.done;
      clearTimeout(t);
    }
  } finally {
    for (const p of proxies) await p.close();
    for (const s of servers) await s.stop();
    rmSync(work, { recursive: true, force: true });
  }
  // The read-ahead logs its hit rate when its device closes: over the warm-up and every point of C.
  for (const [dev, srv] of nearGuest) {
    const line = /read-ahead hit rate .*/.exec(srv.output());
    log(`(f) ${dev.label}: ${line ? line[0] : 'no hit rate in its log'}`);
  }
  for (const port of opts.traceDir ? [2, 3, 10] : []) {
    const file = join(opts.traceDir!, `port${port}.tsv`);
    if (existsSync(file))
      log(`(f) trace of port ${port} (A, B and the warm-up; µs)\n${summarise(readFileSync(file, 'utf8'))}`);
  }
  return out.join('\n\n');
}

/** Port `port`: usbwire B (usb-redir, the read-ahead) → DelayProxy → usbwire A (--usbip, the disk). */
/**
 * Port `port`: usbwire B (usb-redir, with `option` on its --remote: the read-ahead next to the guest)
 * → DelayProxy → usbwire A (--usbip, the disk). B's server is kept in `nearGuest` for its log.
 */
async function bridgeDevice(
  port: number,
  option: string,
  img: string,
  servers: UsbwireServer[],
  proxy: (to: number) => Promise<number>,
  nearGuest: Map<Device, UsbwireServer>,
): Promise<Device> {
  const dev: Device = { port, label: `BOT + ${option} bridge`, pids: [] };
  const a = await freePort();
  if (!(await serve(['--usbip', `127.0.0.1:${a}`, '--disk', img], dev, servers))) return dev;
  const via = await proxy(a);
  const b = await freePort();
  const srv = await serve(
    ['--usbredir', `127.0.0.1:${b}`, '--remote', `usbip://127.0.0.1:${via}/1-1,${option}`],
    dev,
    servers,
  );
  if (srv) {
    dev.redirPort = b;
    nearGuest.set(dev, srv);
  }
  return dev;
}

function describeDevices(all: Device[]): string {
  const lines = [
    '(f) devices in the guest (qemu-xhci, one root port each)',
    '| port | device | guest disk | driver | speed | largest command | queue depth |',
  ];
  lines.push('| --- | --- | --- | --- | --- | --- | --- |');
  for (const d of all) {
    lines.push(
      d.missing || !d.disk
        ? `| ${d.port} | ${d.label} | ${d.missing ?? 'not attached'} | | | | |`
        : `| ${d.port} | ${d.label} | ${d.disk} | ${d.driver} | ${d.speed} Mbit/s | ${d.maxKb} KiB | ${d.depth} |`,
    );
  }
  return lines.join('\n');
}

const present = (devs: Device[]) => devs.filter((d) => d.disk !== undefined && !d.missing);

/** `rounds` turns over the devices, interleaved so they all see the same machine noise. */
async function takeTurns<T>(
  devs: Device[],
  rounds: number,
  measure: (d: Device) => Promise<T>,
): Promise<Map<Device, T[]>> {
  const all = new Map<Device, T[]>();
  for (let i = 0; i < rounds; i++) {
    for (const d of present(devs)) all.set(d, [...(all.get(d) ?? []), await measure(d)]);
  }
  return all;
}

/** Median of a reading's field; NaN when any reading failed (its error is shown instead). */
const medianOf = (rs: Reading[] | undefined, key: 'seconds' | 'mbps') =>
  !rs || rs.some((r) => r.error) ? Number.NaN : median(rs.map((r) => r[key]));
const errorOf = (rs: Reading[] | undefined) => rs?.find((r) => r.error)?.error;

/** "QEMU ms / usbwire ms" of CPU per MB read (medians): the cost, less swayed by the machine's load than clocks. */
function cpuCell(rs: Reading[] | undefined): string {
  if (!rs || rs.some((r) => r.error)) return '—';
  const per = (key: 'qemuCpuMs' | 'usbwireCpuMs') => median(rs.map((r) => (r[key] ?? Number.NaN) / (r.bytes / 1e6)));
  return `${fmt(per('qemuCpuMs'))} / ${fmt(per('usbwireCpuMs'))}`;
}
const CPU_HEAD = 'CPU ms per MB: QEMU / usbwire';

async function partA(bench: Bench, devs: Device[], rounds: number, quick: boolean): Promise<string> {
  const count = quick ? 1000 : 5000;
  const runs = await takeTurns(devs, rounds, async (d) => ({
    reader: await bench.read(d, 'seq', 1, count, 16384),
    dd: await bench.dd(d, '16k', count),
  }));
  const reader = new Map([...runs].map(([d, rs]) => [d, rs.map((r) => r.reader)]));
  const dd = new Map([...runs].map(([d, rs]) => [d, median(rs.map((r) => r.dd))]));
  const bytes = count * 16384;
  const refR = medianOf(reader.get(devs[0]!), 'seconds');
  const refD = dd.get(devs[0]!) ?? Number.NaN;
  const lines = [
    `(f) A. one reader, 16 KiB direct reads in sequence × ${count} (= dd bs=16k count=${count} iflag=direct), median of ${rounds}; ×N = throughput vs QEMU's usb-storage`,
    `| device | timed in the reader | MB/s | vs QEMU | ${CPU_HEAD} | busybox dd, shell-timed (exec included) | vs QEMU |`,
    '| --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const d of devs) {
    if (!present([d]).length) {
      lines.push(`| ${d.label} | ${d.missing ?? 'not attached'} | | | | | |`);
      continue;
    }
    const s = medianOf(reader.get(d), 'seconds');
    const t = dd.get(d) ?? Number.NaN;
    const err = errorOf(reader.get(d));
    lines.push(
      `| ${d.label} | ${err ?? `${fmt(s, 3)} s`} | ${fmt(bytes / s / 1e6)} | ${ratio(refR, s)} | ${cpuCell(reader.get(d))} | ${fmt(t, 3)} s | ${ratio(refD, t)} |`,
    );
  }
  return lines.join('\n');
}

async function partB(bench: Bench, devs: Device[], rounds: number, quick: boolean): Promise<string> {
  const count = quick ? 150 : 500;
  const mbps = await takeTurns(devs, rounds, (d) => bench.read(d, 'random', 8, count, 16384));
  const ref = medianOf(mbps.get(devs[0]!), 'mbps');
  const lines = [
    `(f) B. 8 processes × ${count} random 16 KiB direct reads each (O_DIRECT, aligned, same offsets on every device), total MB/s, median of ${rounds}`,
    `| device | MB/s | vs QEMU | ${CPU_HEAD} |`,
    '| --- | --- | --- | --- |',
  ];
  for (const d of devs) {
    if (!present([d]).length) {
      lines.push(`| ${d.label} | ${d.missing ?? 'not attached'} | | |`);
      continue;
    }
    const v = medianOf(mbps.get(d), 'mbps');
    lines.push(`| ${d.label} | ${errorOf(mbps.get(d)) ?? fmt(v)} | ${ratio(v, ref)} | ${cpuCell(mbps.get(d))} |`);
  }
  return lines.join('\n');
}

async function partC(bench: Bench, devs: Device[], link: LinkOptions, rtts: number[], quick: boolean): Promise<string> {
  const targetS = quick ? 3 : 6;
  const results = new Map<number, Map<Device, Reading>>();
  for (const rtt of rtts) {
    link.delayMs = rtt / 2;
    const row = new Map<Device, Reading>();
    results.set(rtt, row);
    for (const d of present(devs)) {
      // Probes size the run (about targetS seconds): grown until one takes 0.4 s, since a short
      // probe underestimates a fast device.
      let probe = await bench.read(d, 'seq', 1, 2, MiB);
      for (let n = 8; !probe.error && probe.seconds < 0.4 && n <= 512; n *= 4) {
        probe = await bench.read(d, 'seq', 1, n, MiB);
      }
      if (probe.error) {
        row.set(d, probe);
        continue;
      }
      const count = Math.max(4, Math.min(4096, Math.round((targetS * probe.mbps * 1e6) / MiB)));
      row.set(d, await bench.read(d, 'seq', 1, count, MiB));
    }
  }
  link.delayMs = 0;
  // Ratios against both plain BOTs: high speed (120 KiB commands) and SuperSpeed (1 MiB).
  const [hs, ss] = [devs[0]!, devs[1]!];
  const head = devs.map((d) => d.label);
  const secs = [...results.values()].flatMap((row) => [...row.values()].map((r) => r.seconds));
  const lines = [
    `(f) C. sequential 1 MiB direct reads (= dd bs=1M iflag=direct; each point ${fmt(Math.min(...secs))}–${fmt(Math.max(...secs))} s), MB/s through the delay proxy (RTT = twice the one-way delay; 0 = proxy without delay); ×a / ×b = vs ${hs.label} / vs ${ss.label}`,
    `| RTT | ${head.join(' | ')} |`,
    `| --- | ${head.map(() => '---').join(' | ')} |`,
  ];
  for (const [rtt, row] of results) {
    const vs = (r: Reading, base: Device) => {
      const b = row.get(base);
      return !b || b.error ? '—' : ratio(r.mbps, b.mbps);
    };
    const cells = devs.map((d) => {
      if (!present([d]).length) return d.missing ?? 'not attached';
      const r = row.get(d)!;
      if (r.error) return r.error;
      const x = d === hs || d === ss ? '' : ` ${vs(r, hs)} / ${vs(r, ss)}`;
      return `${fmt(r.mbps, r.mbps < 10 ? 2 : 1)}${x}`;
    });
    lines.push(`| ${rtt} ms | ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const argv = process.argv.slice(2);
  const o: RigUasOptions = { quick: argv.includes('--quick') };
  const at = (f: string) => {
    const i = argv.indexOf(f);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  if (at('--rtts')) o.rtts = at('--rtts')!.split(',').map(Number);
  if (at('--rounds')) o.rounds = Number(at('--rounds'));
  if (at('--trace')) o.traceDir = at('--trace');
  rigUasBench(o).then(
    (t) => process.stdout.write(`${t}\n`),
    (e) => {
      process.stderr.write(`${(e as Error).stack}\n`);
      process.exitCode = 1;
    },
  );
}
