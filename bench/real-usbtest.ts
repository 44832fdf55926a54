// A real device through libusb beside the kernel's usbip-host, in one guest boot per speed: two
// identical configfs SourceSink gadgets on one dummy_hcd, one exported by usbwire
// `serve --device BUSID` (LibusbDevice), the other by the kernel's usbip-host + usbipd, both
// attached to the same guest's vhci-hcd at once; testusb cases alternate between the two copies
// so both see the same machine noise. Per case: usbtest's own time; QEMU's CPU time on the host
// (schedstat of every QEMU thread, read when the guest marks the start and end of the case: the
// guest's whole work, not inflated when other processes take the host's CPUs, unlike any clock
// inside a TCG guest); the guest's busy jiffies (/proc/stat); for usbwire its own CPU
// (/proc/PID/stat) and voluntary context switches (event-loop sleeps). A NOP testusb run's figures
// are subtracted, and usbwire's idle CPU (its host-device poll) is measured over 5 s.
//
//   node dist/bench/real-usbtest.js [--quick] [--speeds high,super] [--rounds N] [--prof] [--no-kernel] [--icount]
// --prof also runs usbwire once more under `node --cpu-prof` (small cases only) and prints where
// its main thread spends time (by event-loop entry, layer and function); USBWIRE_BENCH_PROFILE_OUT=PREFIX
// keeps the .cpuprofile as PREFIX-SPEED.cpuprofile, USBWIRE_BENCH_LOG=PREFIX the guest log.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GUEST_HELPERS } from '../test/interop/gadget-zero-plan.js';
import { GUEST_NODE, prepareGadgetModules, prepareGuestNode, realDeviceSkip } from '../test/interop/real-guest-node.js';
import { type GuestHandle, readKV, sleep, startGuest, waitForFile } from '../test/interop/rig.js';
import { profileSummary } from './real-profile.js';

export type Speed = 'high' | 'super';

interface BenchCase {
  num: number;
  args: string;
  label: string;
  /** Bytes moved by one run (0 for control). */
  bytes: number;
  /** USB transfers (URBs) in one run. */
  transfers: number;
}

export function cases(quick: boolean): BenchCase[] {
  const small = quick ? 100 : 300;
  const ctrl = quick ? 10 : 30;
  const bulk = quick ? 16 : 40;
  return [
    {
      num: 1,
      args: `-c ${small} -s 4096`,
      label: '1: bulk OUT 4 KiB, one at a time',
      bytes: small * 4096,
      transfers: small,
    },
    {
      num: 2,
      args: `-c ${small} -s 4096`,
      label: '2: bulk IN 4 KiB, one at a time',
      bytes: small * 4096,
      transfers: small,
    },
    // usbtest's test_ctrl_queue: iterations × sglen requests, sglen queued at once.
    { num: 10, args: `-c ${ctrl} -s 512 -g 16`, label: '10: control, 16 queued', bytes: 0, transfers: ctrl * 16 },
    {
      num: 27,
      args: `-c ${bulk} -s 65536 -g 8`,
      label: '27: bulk OUT 64 KiB, 8 queued',
      bytes: bulk * 8 * 65536,
      transfers: bulk * 8,
    },
    {
      num: 28,
      args: `-c ${bulk} -s 65536 -g 8`,
      label: '28: bulk IN 64 KiB, 8 queued',
      bytes: bulk * 8 * 65536,
      transfers: bulk * 8,
    },
  ];
}

const PROF_CASES = [1, 2, 10];

/**
 * Two SourceSink gadgets on one dummy_hcd (num=2): one exported by usbwire, the other by the
 * kernel's usbip-host, both attached to the guest's vhci at once, so the cases alternate between
 * the two within seconds and share the machine's noise. While usbip-host runs a case, usbwire is
 * stopped (SIGSTOP): its idle work (the host-device poll) is not charged to the kernel.
 *
 * bench_case KEY DEV N ARGS: run_case plus the guest's busy jiffies, and when $WATCH is a pid,
 * that process's utime+stime jiffies and voluntary context switches (KEY_cpu, KEY_pcpu, KEY_vcs).
 */
const HELPERS = `
busy() { read _c u n s i w q sq _r < /proc/stat; echo $((u + n + s + q + sq)); }
pcpu() { [ -n "$WATCH" ] || { echo 0; return; }; awk '{ print $14 + $15 }' /proc/$WATCH/stat; }
vcs() { [ -n "$WATCH" ] || { echo 0; return; }; sed -n 's/^voluntary_ctxt_switches:[^0-9]*//p' /proc/$WATCH/status; }
# mark NAME: the host reads QEMU's CPU time, then lets the guest go on
mark() { : > "$RIG_SHARE/stage-$1"; rig_wait_file "$RIG_SHARE/host-$1" 600 || fail "host mark $1"; }
bench_case() {
  mark "$1-$3-b"
  _b0=$(busy); _p0=$(pcpu); _v0=$(vcs)
  run_case "$@"
  _b1=$(busy); _p1=$(pcpu); _v1=$(vcs)
  mark "$1-$3-e"
  rig_result $1_cpu$3 $((_b1 - _b0))
  rig_result $1_pcpu$3 $((_p1 - _p0))
  rig_result $1_vcs$3 $((_v1 - _v0))
}
# copies KIND: "DEV BUSID" of every 0525:a4a0 with usbtest bound, behind vhci (usbip) or not (gadget)
copies() {
  for _d in /sys/bus/usb/devices/*; do
    [ "$(cat $_d/idVendor 2>/dev/null)" = 0525 ] || continue
    [ "$(cat $_d/idProduct 2>/dev/null)" = a4a0 ] || continue
    [ -e "/sys/bus/usb/drivers/usbtest/\${_d##*/}:3.0" ] || continue
    case "$(readlink -f $_d)" in *vhci*) _k=usbip ;; *) _k=gadget ;; esac
    [ "$_k" = "$1" ] && printf '/dev/bus/usb/%03d/%03d %s\\n' $(cat $_d/busnum) $(cat $_d/devnum) \${_d##*/}
  done
}
# new_copy KIND NOT: the first copy whose busid is not NOT (wait 30 s)
new_copy() {
  _n=0
  while [ $_n -le 300 ]; do
    _r=$(copies $1 | grep -v " $2$" | head -1)
    [ -n "$_r" ] && { echo $_r; return 0; }
    _n=$((_n + 1)); sleep 0.1
  done
  return 1
}
# perf_serve BUSID LOG: real_serve (usbwire serve --device BUSID, 127.0.0.1:3240) and attach; W=its vhci copy
perf_serve() {
  real_serve $1 "$2"
  usbip --tcp-port 3240 attach -r 127.0.0.1 -b 1-1 || fail "usbip attach (usbwire)"
  W=$(new_copy usbip "\${KB:-none}") || { rig_dmesg; fail "usbwire's vhci copy did not enumerate"; }
  W=\${W% *}
}
make_gadget() { # NAME UDC
  _g=/sys/kernel/config/usb_gadget/$1
  mkdir $_g || fail "configfs gadget $1"
  echo 0x0525 > $_g/idVendor
  echo 0xa4a0 > $_g/idProduct
  mkdir $_g/strings/0x409 && echo usbwire-bench-$1 > $_g/strings/0x409/serialnumber
  mkdir $_g/functions/SourceSink.0 || fail "SourceSink function"
  mkdir $_g/configs/c.3
  ln -s $_g/functions/SourceSink.0 $_g/configs/c.3/
  echo $2 > $_g/UDC || fail "bind $2"
}
`;

function casesShell(list: BenchCase[], rounds: number, kernel: boolean): string {
  const lines: string[] = [];
  for (let r = 0; r < rounds; r++) {
    // testusb's NOP: what starting testusb and the shell's polling cost, subtracted from the CPU figures.
    lines.push(`WATCH=$SERVE; bench_case w${r} $W 0; WATCH=`);
    if (kernel) lines.push(`kill -STOP $SERVE; bench_case k${r} $K 0; kill -CONT $SERVE`);
    // usbwire first: usbip-host can crash (stub_rx_loop GPF, kernel 6.1) and take vhci down with it.
    for (const c of list) {
      lines.push(`WATCH=$SERVE; bench_case w${r} $W ${c.num} ${c.args}; WATCH=`);
      if (kernel) lines.push(`kill -STOP $SERVE; bench_case k${r} $K ${c.num} ${c.args}; kill -CONT $SERVE`);
    }
  }
  return lines.join('\n');
}

export function guestScript(speed: Speed, list: BenchCase[], o: Required<RunOptions>): string {
  const hcd = speed === 'super' ? 'is_super_speed=1' : 'is_high_speed=1';
  const profCases = list.filter((c) => PROF_CASES.includes(c.num));
  return `${GUEST_HELPERS}
${GUEST_NODE}
${HELPERS}
guest_gadget_modules ${hcd} num=2
mount -t configfs none /sys/kernel/config 2>/dev/null
make_gadget w dummy_udc.0
make_gadget k dummy_udc.1
n=0
until [ $(copies gadget | wc -l) -ge 2 ]; do n=$((n + 1)); [ $n -gt 300 ] && { rig_dmesg; fail "gadgets did not enumerate"; }; sleep 0.1; done
GW=$(copies gadget | sed -n '1s/.* //p')
GK=$(copies gadget | sed -n '2s/.* //p')
rig_result gadget_speed $(cat /sys/bus/usb/devices/$GW/speed)
RUN_CASE_LIMIT=120
${
  o.kernel
    ? `modprobe usbip-host || fail "usbip-host"
usbipd -D --tcp-port 3242 || fail "usbipd"
sleep 1
usbip bind -b $GK || fail "usbip bind $GK"
usbip --tcp-port 3242 attach -r 127.0.0.1 -b $GK || fail "usbip attach (usbip-host)"
K=$(new_copy usbip none) || { rig_dmesg; fail "usbip-host copy did not enumerate"; }
KB=\${K#* }
K=\${K% *}`
    : ''
}
perf_serve $GW "$RIG_SHARE/serve.log"
rig_result usbip_speed $(cat /sys/bus/usb/devices/$(copies usbip | grep "^$W " | sed 's/.* //')/speed)
# usbwire idle (attached, nothing to do) for 5 s: its own CPU
mark widle-5-b
WATCH=$SERVE; _p0=$(pcpu); sleep 5; rig_result w_idle5s $(($(pcpu) - _p0)); WATCH=
mark widle-5-e
${casesShell(list, o.rounds, o.kernel)}
stop_serve "$RIG_SHARE/serve.log" || log "usbwire did not stop cleanly"
${
  o.prof
    ? `until [ -e /sys/bus/usb/drivers/usbtest/$GW:3.0 ]; do n=$((n + 1)); [ $n -gt 50 ] && break; sleep 0.1; done
sleep 2
mkdir -p "$RIG_SHARE/prof"
# (--cpu-prof is not allowed in NODE_OPTIONS: it goes on the node command line)
PLAIN_NODE=$NODE
NODE="$NODE --cpu-prof --cpu-prof-dir=$RIG_SHARE/prof"
perf_serve $GW "$RIG_SHARE/serve-prof.log"
NODE=$PLAIN_NODE
${profCases.map((c) => `bench_case p $W ${c.num} ${c.args}`).join('\n')}
stop_serve "$RIG_SHARE/serve-prof.log" || log "usbwire (profiled) did not stop cleanly"
_n=0; while kill -0 $SERVE 2>/dev/null; do _n=$((_n + 1)); [ $_n -gt 300 ] && break; sleep 0.2; done`
    : ''
}
rig_result done yes
`;
}

export interface CaseFigures {
  secs: number;
  /** guest busy jiffies (USER_HZ = 100) */
  guestCpu: number;
  /** the server process's own jiffies (usbwire only) */
  procCpu: number;
  /** voluntary context switches of the server's main thread (usbwire only) */
  wakeups: number;
  /**
   * QEMU's CPU time on the host for the case (ms, less the NOP run's): the guest's whole work,
   * unlike the guest's own clocks not inflated when the host is busy with other processes.
   */
  qemuMs: number;
}

export interface SpeedResult {
  speed: Speed;
  cases: BenchCase[];
  /** best round per case, by protocol ('w' usbwire, 'k' kernel) */
  usbwire: Map<number, CaseFigures>;
  kernel: Map<number, CaseFigures>;
  icount: boolean;
  /** testusb's verdict of the first round where no round passed */
  failures: Map<string, string>;
  profile?: string;
  guestSecs: number;
  /** usbwire's own jiffies over 5 s attached and idle */
  idleJiffies5s?: number;
  /** QEMU's CPU ms per second while usbwire sits attached and idle (its host-device poll) */
  idleQemuMsPerSec?: number;
  error?: string;
}

function best(kv: Record<string, string>, proto: string, n: number, rounds: number): CaseFigures | undefined {
  let out: CaseFigures | undefined;
  for (let r = 0; r < rounds; r++) {
    const v = kv[`${proto}${r}_t${n}`];
    if (!v?.startsWith('pass ')) continue;
    const f: CaseFigures = {
      secs: Number(v.slice(5)),
      // Less the NOP run's (testusb start-up, the shell's 0.2 s polling), at least 0.
      guestCpu: Math.max(0, Number(kv[`${proto}${r}_cpu${n}`]) - Number(kv[`${proto}${r}_cpu0`] ?? 0)),
      procCpu: Number(kv[`${proto}${r}_pcpu${n}`]),
      wakeups: Number(kv[`${proto}${r}_vcs${n}`]),
      qemuMs: Math.max(0, Number(kv[`${proto}${r}_qemu${n}`]) - Number(kv[`${proto}${r}_qemu0`] ?? 0)),
    };
    if (!out || f.secs < out.secs) out = f;
  }
  return out;
}

/** The bench_case keys in the order the guest runs them (KEY-N), each marked -b and -e. */
function marksOf(list: BenchCase[], o: Required<RunOptions>): string[] {
  const keys: string[] = ['widle-5'];
  for (let r = 0; r < o.rounds; r++) {
    for (const n of [0, ...list.map((c) => c.num)]) {
      keys.push(`w${r}-${n}`);
      if (o.kernel) keys.push(`k${r}-${n}`);
    }
  }
  if (o.prof) for (const c of list.filter((c) => PROF_CASES.includes(c.num))) keys.push(`p-${c.num}`);
  return keys;
}

/** QEMU's CPU time (all threads, ns) from schedstat. */
function processCpuNs(pid: number): number {
  let ns = 0;
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // a thread that just ended
    }
  }
  return ns;
}

/** Answer the guest's marks; KEY_qemuN = QEMU ms between KEY-N-b and KEY-N-e. */
async function followMarks(guest: GuestHandle, keys: string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const pid = guest.proc.pid;
  if (pid === undefined) return out;
  try {
    for (const key of keys) {
      const at: number[] = [];
      for (const edge of ['b', 'e']) {
        await guest.waitStage(`${key}-${edge}`, 600_000);
        at.push(processCpuNs(pid));
        guest.signal(`${key}-${edge}`);
      }
      const [proto, n] = key.split('-');
      out[`${proto}_qemu${n}`] = ((at[1]! - at[0]!) / 1e6).toFixed(1);
    }
  } catch {
    // the guest ended early (a failure there is reported from its results)
  }
  return out;
}

export interface RunOptions {
  quick?: boolean;
  /** Each case this many times per server (best kept). */
  rounds?: number;
  /** Also profile usbwire (node --cpu-prof) on the small cases. */
  prof?: boolean;
  /** Run the kernel's usbip-host too (false: usbwire only, for quick iterations). */
  kernel?: boolean;
  /**
   * QEMU -icount shift=0: the guest's clock counts executed instructions (1 ns each), so testusb's
   * times measure work done, whatever else loads the host.
   */
  icount?: boolean;
}

export async function runRealUsbtest(speed: Speed, opts: RunOptions = {}): Promise<SpeedResult> {
  const o: Required<RunOptions> = {
    quick: opts.quick ?? false,
    rounds: opts.rounds ?? 2,
    prof: opts.prof ?? false,
    kernel: opts.kernel ?? true,
    icount: opts.icount ?? false,
  };
  const list = cases(o.quick);
  const rounds = o.rounds;
  const share = mkdtempSync(join(tmpdir(), 'usbwire-bench-real-'));
  const result: SpeedResult = {
    speed,
    cases: list,
    usbwire: new Map(),
    kernel: new Map(),
    failures: new Map(),
    guestSecs: 0,
    icount: o.icount,
  };
  try {
    prepareGuestNode(share);
    prepareGadgetModules(share);
    writeFileSync(join(share, 'results.txt'), '');
    const guest = startGuest({
      shareDir: share,
      net: false,
      memoryMiB: 1024,
      append: 'preempt=full loglevel=3',
      modules: ['vhci_hcd', 'usbtest'],
      timeoutMs: 900_000,
      script: guestScript(speed, list, o),
      qemuArgs: o.icount ? ['-icount', 'shift=0,sleep=on'] : [],
    });
    // A guest whose shutdown hangs behind a wedged driver is stopped 10 s after guest.sh ended.
    waitForFile(guest.path('guest.rc'), 900_000, guest.done)
      .then(() => sleep(10_000))
      .then(guest.kill, () => {});
    const qemuCpu = await followMarks(guest, marksOf(list, o));
    const res = await guest.done;
    result.guestSecs = res.durationMs / 1000;
    const kv = { ...readKV(share), ...qemuCpu };
    for (const c of list) {
      const w = best(kv, 'w', c.num, rounds);
      const k = best(kv, 'k', c.num, rounds);
      if (w) result.usbwire.set(c.num, w);
      else result.failures.set(`w${c.num}`, kv[`w0_t${c.num}`] ?? 'missing');
      if (k) result.kernel.set(c.num, k);
      else if (o.kernel) result.failures.set(`k${c.num}`, kv[`k0_t${c.num}`] ?? 'missing');
    }
    if (kv.w_idle5s !== undefined) result.idleJiffies5s = Number(kv.w_idle5s);
    if (kv.widle_qemu5 !== undefined) result.idleQemuMsPerSec = Number(kv.widle_qemu5) / 5;
    if (process.env.USBWIRE_BENCH_LOG)
      writeFileSync(
        `${process.env.USBWIRE_BENCH_LOG}-${speed}.log`,
        `${res.log}\n--- results ---\n${readFileSync(join(share, 'results.txt'), 'utf8')}`,
      );
    if (kv.done !== 'yes' || result.failures.size > 0) {
      result.error = `${kv.done === 'yes' ? '' : 'guest did not finish; '}guest log: ${res.log.trim().split('\n').slice(-12).join(' / ')}`;
    }
    const profDir = join(share, 'prof');
    if (existsSync(profDir)) {
      const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
      if (file) {
        const transfers = list.filter((c) => PROF_CASES.includes(c.num)).reduce((s, c) => s + c.transfers, 0);
        const text = readFileSync(join(profDir, file), 'utf8');
        if (process.env.USBWIRE_BENCH_PROFILE_OUT)
          writeFileSync(`${process.env.USBWIRE_BENCH_PROFILE_OUT}-${speed}.cpuprofile`, text);
        result.profile = profileSummary(JSON.parse(text), transfers);
      }
    }
  } finally {
    rmSync(share, { recursive: true, force: true });
  }
  return result;
}

const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : '–');

/** One table per speed: time and ratio, CPU per MB (or per transfer), wakeups per transfer. */
export function realUsbtestTable(r: SpeedResult): string {
  const lines = [
    `${r.speed} speed${r.icount ? ', QEMU -icount (times = executed instructions at 1 ns each)' : ''} (guest run ${r.guestSecs.toFixed(0)} s): two identical SourceSink gadgets on dummy_hcd, one exported by usbwire, one by usbip-host, ` +
      'both on the same vhci in one TCG guest, cases alternating; best of the rounds. ×N = usbwire / usbip-host (goal: time ≤ ×1.11 for 27/28, ≤ ×2 for 1/2/10). ' +
      "CPU per MB (per 100 transfers for 10), less a NOP testusb run's: QEMU = QEMU's host CPU ms (the guest's whole work; less swayed by the host's load than clocks inside the guest, still ±30 %), " +
      'guest = busy jiffies ×10 ms (inflated when the host is busy), node = usbwire alone',
    '| case | usbip-host | usbwire | time ×N | QEMU CPU usbip-host | QEMU CPU usbwire | CPU ×N | usbwire less its idle poll | guest CPU usbip-host | guest CPU usbwire (node) |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const c of r.cases) {
    const k = r.kernel.get(c.num);
    const w = r.usbwire.get(c.num);
    const per = c.bytes > 0 ? c.bytes / 1e6 : c.transfers / 100;
    const unit = c.bytes > 0 ? 'ms/MB' : 'ms/100';
    const qemu = (x: CaseFigures | undefined) => (x ? `${(x.qemuMs / per).toFixed(0)} ${unit}` : '–');
    // The poll's share of the case: its idle rate over the case's duration.
    const lessIdle = (x: CaseFigures | undefined, base: CaseFigures | undefined) => {
      if (!x || r.idleQemuMsPerSec === undefined) return '–';
      const ms = Math.max(0, x.qemuMs - r.idleQemuMsPerSec * x.secs);
      return `${(ms / per).toFixed(0)} ${unit}${base ? ` ×${f2(ms / base.qemuMs)}` : ''}`;
    };
    const guest = (x: CaseFigures | undefined) => (x ? `${((10 * x.guestCpu) / per).toFixed(0)}` : '–');
    const time = (x: CaseFigures | undefined, p: string) =>
      x ? `${x.secs.toFixed(3)} s` : (r.failures.get(`${p}${c.num}`) ?? '–');
    lines.push(
      `| ${c.label} (${c.args}) | ${time(k, 'k')} | ${time(w, 'w')} | ${k && w ? `×${f2(w.secs / k.secs)}` : '–'} | ` +
        `${qemu(k)} | ${qemu(w)} | ${k && w ? `×${f2(w.qemuMs / k.qemuMs)}` : '–'} | ${lessIdle(w, k)} | ${guest(k)} | ` +
        `${guest(w)}${w ? ` (${((10 * w.procCpu) / per).toFixed(0)})` : ''} |`,
    );
  }
  if (r.idleJiffies5s !== undefined) {
    lines.push(
      `usbwire attached and idle (its host-device poll): ${r.idleJiffies5s} jiffies in 5 s = ${r.idleJiffies5s / 5} % of the guest CPU` +
        (r.idleQemuMsPerSec !== undefined ? `, QEMU ${r.idleQemuMsPerSec.toFixed(0)} ms per s` : ''),
    );
  }
  if (r.error) lines.push(`(incomplete: ${r.error})`);
  if (r.profile) lines.push('', r.profile);
  return lines.join('\n');
}

/** For bench/run.ts: both speeds, or why it is skipped. */
export async function realUsbtestBench(opts: RunOptions & { speeds?: Speed[] } = {}) {
  const skip = realDeviceSkip();
  console.log("(c) real device (libusb) vs the kernel's usbip-host, usbtest in the rig");
  if (skip) {
    console.log(`skipped: ${skip}`);
    return;
  }
  for (const speed of opts.speeds ?? ['high', 'super']) {
    try {
      console.log(realUsbtestTable(await runRealUsbtest(speed, opts)));
    } catch (err) {
      console.log(`${speed} speed failed: ${(err as Error).message}`);
    }
    console.log('');
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const argv = process.argv.slice(2);
  const at = (flag: string) => {
    const i = argv.indexOf(flag);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  await realUsbtestBench({
    quick: argv.includes('--quick'),
    prof: argv.includes('--prof'),
    speeds: at('--speeds')?.split(',') as Speed[] | undefined,
    rounds: at('--rounds') ? Number(at('--rounds')) : undefined,
    kernel: !argv.includes('--no-kernel'),
    icount: argv.includes('--icount'),
  });
}
