// Faults with nothing lost: a guest writes with O_DIRECT|O_SYNC (guest/tools/dwlog.c) and logs
// each write it saw complete to the 9p share while its path to usbwire breaks. After each fault
// the host checks the image byte for byte at every logged offset, that nothing outside the
// written ranges changed, that usbwire let go of the device within seconds, and that the next
// client gets it and reads the data back.
//
// One usbwire exports a.img as 1-1 (USB/IP) and b.img as 1-2 (usbredir). Guest 1 has both:
// 1-1 through vhci-hcd (guestfwd → relay.c → a cutter relay in this process → usbwire) and 1-2
// through QEMU's usb-redir on qemu-xhci (chardev reconnect=1, through another cutter). Steps
// (host-driven, GuestShell):
//   1. USB/IP connection cut (the cutter sends RST both ways) during writes to 1-1;
//      usbwire releases 1-1, the guest attaches it again and reads every logged write back.
//      The same for the usbredir connection during writes to 1-2: QEMU reconnects by itself.
//   2. usbwire SIGKILLed during writes to both disks; a new usbwire on the same ports: QEMU
//      reconnects by itself and the guest's usb-redir disk comes back; vhci attaches again.
//   3. QEMU SIGKILLed during writes to 1-2; usbwire releases 1-2.
// Guest 2 (a new QEMU) gets 1-2 and reads back everything written over usbredir.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { MiB } from './disk-checks.js';
import { type Cutter, startCutter } from './faults-cut.js';
import { assertLoggedWritesInImage, countLogged, readWriteLog, touchedRange, type WriteLog } from './faults-log.js';
import { GuestShell } from './guest-shell.js';
import {
  firstDiffOutside,
  freePort,
  type GuestHandle,
  interopFile,
  makePatternImage,
  type Range,
  readKV,
  sleep,
  startGuest,
  startUsbwire,
  type UsbwireServer,
  usbRedirArgs,
} from './rig.js';

const file = interopFile('faults');
const { skip, work, servers } = file;

const SIZE = 96 * MiB;
// Writer regions in each image: [1 MiB, 32 MiB), [32 MiB, 63 MiB), [64 MiB, 95 MiB).
const LOW = 1 * MiB;
const HIGH = 32 * MiB;
const TOP = 64 * MiB;
/** usb-redir's qemu-xhci: its disks' sysfs paths contain this. */
const REDIR_PCI = '0000:00:0b.0';
const MODULES = ['vhci-hcd', 'xhci_pci', 'usb_storage', 'sd_mod'];

interface Writer {
  name: string;
  seed: number;
  start: number;
}
const W1: Writer = { name: 'w1', seed: 1, start: LOW }; // a.img, USB/IP cut
const W1B: Writer = { name: 'w1b', seed: 5, start: TOP }; // b.img, usbredir cut
const W2A: Writer = { name: 'w2a', seed: 2, start: HIGH }; // a.img, usbwire killed
const W2B: Writer = { name: 'w2b', seed: 3, start: LOW }; // b.img, usbwire killed
const W3: Writer = { name: 'w3', seed: 4, start: HIGH }; // b.img, QEMU killed

async function waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<number> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timeout (${timeoutMs} ms) waiting for ${what}`);
    await sleep(20);
  }
  return Date.now() - t0;
}

/** Guest command: start dwlog in the background on the disk named in /tmp/DISK; rc lands in /tmp/NAME.rc. */
function startWriter(w: Writer, disk: 'A' | 'B'): string {
  return `rm -f /tmp/${w.name}.rc
(dwlog write /dev/$(cat /tmp/${disk}) /mnt/host/${w.name}.log ${w.seed} ${w.start} ${w.start + 31 * MiB}; echo $? > /tmp/${w.name}.rc) > /mnt/host/${w.name}.out 2>&1 &`;
}

/** Guest command: wait until the writers ended (the fault reached them) and the disk went away. */
function awaitWritersAndGone(names: string[], disks: ('A' | 'B')[]): string {
  const waits = names.map(
    (n) => `rig_wait_file /tmp/${n}.rc 60 || fail "writer ${n} still running 60 s after the fault"`,
  );
  const gone = disks.map(
    (d) =>
      `rig_wait_disk_gone $(cat /tmp/${d}) 60 || fail "disk ${d} ($(cat /tmp/${d})) still there 60 s after the fault"`,
  );
  const report = `echo "writers ended (exit status 3 = a write failed):${names.map((n) => ` ${n} $(cat /tmp/${n}.rc)`).join('')}"`;
  return [...waits, ...gone, report].join('\n');
}

const ATTACH_A = `usbip attach -r 10.0.2.100 -b 1-1 || fail "usbip attach 1-1"
A=$(rig_wait_disk_via vhci_hcd 60) || fail "no vhci disk"
echo $A > /tmp/A`;
const WAIT_B = `B=$(rig_wait_disk_via ${REDIR_PCI} 90) || fail "no usb-redir disk"
echo $B > /tmp/B`;
const verify = (w: Writer, disk: 'A' | 'B') =>
  `dwlog verify /dev/$(cat /tmp/${disk}) /mnt/host/${w.name}.log ${w.seed} || fail "read-back of ${w.name}"`;

/** The writer's log; `survived`: the guest lived on, so the writer logged the write that failed. */
function checkLog(g: GuestHandle, w: Writer, what: string, survived: boolean): WriteLog {
  const log = readWriteLog(g.path(`${w.name}.log`));
  assert.ok(!log.full, `${w.name}: the writer reached the end of its region before ${what}`);
  assert.ok(log.done.length > 0, `${w.name}: no write completed before ${what}`);
  if (survived) assert.ok(log.failed, `${w.name}: no failed write logged after ${what}`);
  return log;
}

function verifiedCount(out: string, w: Writer): number {
  const m = /verified (\d+) writes/.exec(out);
  assert.ok(m, `${w.name}: dwlog verify printed no count:\n${out}`);
  return Number(m[1]);
}

test('faults: USB/IP and usbredir cuts, usbwire SIGKILL, QEMU SIGKILL during O_DIRECT|O_SYNC writes; nothing the guest saw complete is lost', {
  skip,
  timeout: 600_000,
}, async (t) => {
  const imgA = join(work, 'a.img');
  const imgB = join(work, 'b.img');
  makePatternImage(imgA, SIZE, 'faults-a');
  makePatternImage(imgB, SIZE, 'faults-b');
  const pu = await freePort();
  const pr = await freePort();
  const args = ['--usbip', `127.0.0.1:${pu}`, '--usbredir', `127.0.0.1:${pr}=1-2`, '--disk', imgA, '--disk', imgB];
  const serve = () => {
    const s = startUsbwire(args, { readyPattern: /^usbredir: listening/ });
    servers.push(s);
    return s;
  };
  const notes: string[] = [];
  const note = (text: string) => {
    const s = text.trim();
    notes.push(s);
    t.diagnostic(s);
  };
  let srv: UsbwireServer = serve();
  let cutter: Cutter | undefined;
  let redirCutter: Cutter | undefined;
  const logs = new Map<Writer, WriteLog>();
  let g1: GuestHandle | undefined;
  try {
    await srv.ready;
    cutter = await startCutter(pu);
    redirCutter = await startCutter(pr);
    g1 = startGuest({
      modules: MODULES,
      guestfwd: [{ guestPort: 3240, hostPort: cutter.port }],
      qemuArgs: usbRedirArgs([redirCutter.port], { pciAddr: '0b' }),
      timeoutMs: 420_000,
      script: 'rig_command_loop\nlog "guest 1 done"',
    });
    const g = g1;
    const sh = new GuestShell(g);
    const cache = await sh.ok(`${ATTACH_A}\n${WAIT_B}\ndmesg | grep -o 'Write cache: .*' | sort -u`, 120_000);
    note(`guest: ${cache}`);

    // 1. The USB/IP connection is cut while the guest writes to 1-1.
    await sh.ok(startWriter(W1, 'A'));
    await waitFor(() => countLogged(g.path('w1.log')) >= 100, 90_000, 'w1: 100 writes');
    let mark = srv.output().length;
    let t0 = Date.now();
    assert.equal(cutter.cut(), 1, 'one USB/IP connection cut');
    const freedCut = await waitFor(
      () => /released 1-1/.test(srv.output().slice(mark)),
      15_000,
      'usbwire releasing 1-1',
    );
    note(`USB/IP cut: usbwire released 1-1 after ${freedCut} ms`);
    note(`USB/IP cut: ${await sh.ok(awaitWritersAndGone(['w1'], ['A']))}`);
    const log1 = checkLog(g, W1, 'the cut', true);
    logs.set(W1, log1);
    const bytes1 = await assertLoggedWritesInImage(imgA, log1, W1.seed);
    t0 = Date.now();
    const out1 = await sh.ok(`${ATTACH_A}\n${verify(W1, 'A')}`, 120_000);
    assert.equal(verifiedCount(out1, W1), log1.done.length);
    note(
      `USB/IP cut: ${log1.done.length} writes (${bytes1} bytes) logged, all in a.img; in flight at the cut: ${log1.failed ? `write ${log1.failed.id}, errno ${log1.failed.errno}` : 'none logged'}; attached again and read back in ${Date.now() - t0} ms`,
    );

    // 1b. The usbredir connection is cut while the guest writes to 1-2; QEMU reconnects by itself.
    await sh.ok(startWriter(W1B, 'B'));
    await waitFor(() => countLogged(g.path('w1b.log')) >= 100, 90_000, 'w1b: 100 writes');
    mark = srv.output().length;
    t0 = Date.now();
    assert.equal(redirCutter.cut(), 1, 'one usbredir connection cut');
    await waitFor(() => /connection closed/.test(srv.output().slice(mark)), 15_000, 'usbwire releasing 1-2');
    note(`usbredir cut: usbwire released 1-2 after ${Date.now() - t0} ms`);
    note(`usbredir cut: ${await sh.ok(awaitWritersAndGone(['w1b'], ['B']))}`);
    const log1b = checkLog(g, W1B, 'the cut', true);
    logs.set(W1B, log1b);
    const bytes1b = await assertLoggedWritesInImage(imgB, log1b, W1B.seed);
    const out1b = await sh.ok(`${WAIT_B}\n${verify(W1B, 'B')}`, 120_000);
    assert.equal(verifiedCount(out1b, W1B), log1b.done.length);
    note(
      `usbredir cut: ${log1b.done.length} writes (${bytes1b} bytes) logged, all in b.img; QEMU reconnected by itself and the guest read them back ${Date.now() - t0} ms after the cut`,
    );

    // 2. usbwire is SIGKILLed while the guest writes to both disks.
    await sh.ok(`${startWriter(W2A, 'A')}\n${startWriter(W2B, 'B')}`);
    await waitFor(
      () => countLogged(g.path('w2a.log')) >= 50 && countLogged(g.path('w2b.log')) >= 50,
      90_000,
      'w2a and w2b: 50 writes each',
    );
    const killed = await srv.kill();
    assert.equal(killed.signal, 'SIGKILL');
    note(`usbwire SIGKILL: ${await sh.ok(awaitWritersAndGone(['w2a', 'w2b'], ['A', 'B']))}`);
    for (const [w, img] of [
      [W2A, imgA],
      [W2B, imgB],
    ] as const) {
      const log = checkLog(g, w, 'usbwire was killed', true);
      logs.set(w, log);
      const bytes = await assertLoggedWritesInImage(img, log, w.seed);
      note(`usbwire SIGKILL: ${w.name} ${log.done.length} writes (${bytes} bytes) logged, all in the image`);
    }
    t0 = Date.now();
    srv = serve();
    await srv.ready;
    const restartMs = Date.now() - t0;
    const outB = await sh.ok(`${WAIT_B}\n${verify(W2B, 'B')}`, 120_000);
    assert.equal(verifiedCount(outB, W2B), logs.get(W2B)!.done.length);
    note(
      `usbwire SIGKILL: restarted in ${restartMs} ms; QEMU reconnected and the guest read w2b back ${Date.now() - t0} ms after the restart`,
    );
    const outA = await sh.ok(`${ATTACH_A}\n${verify(W2A, 'A')}\nusbip detach -p $(rig_usbip_port_of 1-1)`, 120_000);
    assert.equal(verifiedCount(outA, W2A), logs.get(W2A)!.done.length);

    // 3. QEMU is SIGKILLed while the guest writes to 1-2.
    await sh.ok(startWriter(W3, 'B'));
    await waitFor(() => countLogged(g.path('w3.log')) >= 100, 90_000, 'w3: 100 writes');
    mark = srv.output().length;
    t0 = Date.now();
    g.kill();
    await g.done;
    await waitFor(() => /connection closed/.test(srv.output().slice(mark)), 15_000, 'usbwire releasing 1-2');
    const freedKill = Date.now() - t0;
    note(`QEMU SIGKILL: usbwire released 1-2 ${freedKill} ms after the kill`);
    const log3 = checkLog(g, W3, 'QEMU was killed', false);
    logs.set(W3, log3);
    const bytes3 = await assertLoggedWritesInImage(imgB, log3, W3.seed);
    note(`QEMU SIGKILL: w3 ${log3.done.length} writes (${bytes3} bytes) logged, all in b.img`);
  } catch (e) {
    file.failed = true;
    g1?.kill();
    const res = await g1?.done;
    process.stderr.write(`--- usbwire output ---\n${srv.output()}\n`);
    throw new Error(`${(e as Error).message}\n${res?.describe() ?? ''}`);
  } finally {
    await cutter?.close();
    await redirCutter?.close();
  }
  (await g1!.done).cleanup();

  // The next QEMU gets 1-2 and reads back everything written over usbredir.
  const files: Record<string, Buffer> = {};
  for (const w of [W1B, W2B, W3]) files[`${w.name}.log`] = Buffer.from(readLogText(logs.get(w)!));
  const g2 = startGuest({
    modules: MODULES,
    qemuArgs: usbRedirArgs([pr], { pciAddr: '0b' }),
    timeoutMs: 180_000,
    files,
    script: `${WAIT_B}
rig_result seen $(cut -d' ' -f1 /proc/uptime)
${verify(W1B, 'B')}
${verify(W2B, 'B')}
${verify(W3, 'B')}
log "guest 2 done"`,
  });
  const r2 = await g2.done;
  if (r2.rc !== 0) {
    file.failed = true;
    process.stderr.write(`--- usbwire output ---\n${srv.output()}\n`);
  }
  assert.equal(r2.rc, 0, r2.describe());
  const counts = [...r2.log.matchAll(/verified (\d+) writes/g)].map((m) => Number(m[1]));
  assert.deepEqual(
    counts,
    [W1B, W2B, W3].map((w) => logs.get(w)!.done.length),
    r2.log,
  );
  note(
    `second QEMU: disk seen ${readKV(r2.shareDir).seen} s after boot, w1b, w2b, w3 read back (${counts.join(' + ')} writes)`,
  );
  r2.cleanup();

  // Nothing outside the ranges the writers touched changed.
  const untouched = (img: string, seed: string, ws: Writer[]) => {
    const ranges: Range[] = ws.map((w) => touchedRange(logs.get(w)!, w.start));
    const at = firstDiffOutside(img, seed, SIZE, ranges);
    assert.equal(at, -1, `${img} changed outside the written ranges, first at offset ${at}`);
  };
  untouched(imgA, 'faults-a', [W1, W2A]);
  untouched(imgB, 'faults-b', [W1B, W2B, W3]);
  assert.equal(srv.proc.exitCode, null, 'usbwire still running');
  process.stderr.write(`faults interop:\n  ${notes.join('\n  ')}\n`);
});

/** A log as dwlog writes it (only the W lines matter to verify). */
function readLogText(log: WriteLog): string {
  return log.done.map((w) => `W ${w.id} ${w.offset} ${w.length}\n`).join('');
}
