// CDC-ACM serial interop: one usbwire exports two `--serial tcp:` ports; in one guest boot the
// first is attached by QEMU's usb-redir on qemu-xhci, the second by `usbip attach` (vhci-hcd).
// For each, Linux cdc-acm's /dev/ttyACMn talks to a TCP client in this test: 1 MiB each way
// byte-exact, the line coding the guest sets shows on the host, a host end that stops
// reading blocks the guest's write until it reads again, with nothing dropped, and the
// guest's modem lines (TIOCMGET) follow the host-end client through SERIAL_STATE.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import {
  freePort,
  type GuestHandle,
  interopFile,
  readKV,
  sha256,
  startGuest,
  startUsbwire,
  type UsbwireServer,
  usbRedirArgs,
} from './rig.js';
import { SerialHostClient, waitStable } from './serial-host.js';

const file = interopFile('serial');
const { skip, servers } = file;

const MiB = 1024 * 1024;
/** More than every buffer between the guest's write() and a paused reader (loopback TCP ~4 MB). */
const BACKPRESSURE_BYTES = 6 * MiB;

interface Port {
  name: 'redir' | 'usbip';
  busid: string;
  baud: number;
  g2h: Buffer;
  h2g: Buffer;
  bp: Buffer;
}

const guestScript = (ports: Port[]) => `
tty_for() {
  for d in /sys/class/tty/ttyACM*; do
    [ -e "$d" ] || continue
    case "$(readlink -f "$d/device")" in *vhci*) k=usbip ;; *) k=redir ;; esac
    [ "$k" = "$1" ] && [ -c "/dev/\${d##*/}" ] && { echo "/dev/\${d##*/}"; return 0; }
  done
  return 1
}
wait_tty() {
  n=0
  until tty_for "$1"; do n=$((n + 1)); [ $n -gt 300 ] && return 1; sleep 0.1; done
}
A=$(wait_tty redir) || { rig_dmesg redir; fail "no ttyACM from usb-redir"; }
usbip --tcp-port 3240 attach -r 10.0.2.100 -b 1-2 || { rig_dmesg attach; fail "usbip attach"; }
B=$(wait_tty usbip) || { rig_dmesg usbip; fail "no ttyACM from usbip"; }
rig_result tty_redir $A
rig_result tty_usbip $B
run_port() { # NAME DEV BAUD
  serialio raw $2 $3 || fail "serialio raw $2 $3"
  rig_time g2h_$1 serialio send $2 /mnt/host/g2h-$1.bin > /dev/null || fail "send to $1"
  rig_stage sent-$1
  rig_time h2g_$1 serialio recv $2 ${MiB} /tmp/h2g-$1.bin /mnt/host/stage-recv-$1 > /dev/null || fail "recv from $1"
  rig_result h2g_sha_$1 $(rig_sha256 /tmp/h2g-$1.bin)
  rig_stage bp-$1
  rig_time bp_$1 serialio send $2 /mnt/host/bp-$1.bin /mnt/host/progress-$1 > /dev/null || fail "back-pressure send to $1"
  rig_stage bp-done-$1
  stty -F $2 19200 cs7 parenb cstopb || fail "stty $2"
  rig_stage stty-$1
  serialio modem $2 1 || fail "$1: no DCD/DSR while the host end is connected"
  rig_stage carrier-$1
  serialio modem $2 0 || fail "$1: DCD/DSR still on after the host end left"
  rig_result carrier_$1 on-off
}
${ports.map((p) => `run_port ${p.name} $${p.name === 'redir' ? 'A' : 'B'} ${p.baud}`).join('\n')}
rig_result done yes
`;

test('serial: CDC-ACM over usb-redir (xHCI) and USB/IP in one guest: 1 MiB each way, line coding, back-pressure', {
  skip,
  timeout: 300_000,
}, async (t) => {
  const [usbipPort, redirPort, tcpA, tcpB] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  const ports: Port[] = [
    { name: 'redir', busid: '1-1', baud: 115200, g2h: randomBytes(MiB), h2g: randomBytes(MiB), bp: randomBytes(0) },
    { name: 'usbip', busid: '1-2', baud: 57600, g2h: randomBytes(MiB), h2g: randomBytes(MiB), bp: randomBytes(0) },
  ];
  for (const p of ports) p.bp = randomBytes(BACKPRESSURE_BYTES);
  let srv: UsbwireServer | undefined;
  let guest: GuestHandle | undefined;
  const clients: SerialHostClient[] = [];
  try {
    srv = startUsbwire(
      [
        '--usbip',
        `127.0.0.1:${usbipPort}`,
        '--usbredir',
        `127.0.0.1:${redirPort}=1-1`,
        '--serial',
        `tcp:127.0.0.1:${tcpA}`,
        '--serial',
        `tcp:127.0.0.1:${tcpB}`,
      ],
      { readyCount: 3 },
    );
    servers.push(srv);
    await srv.ready;
    clients.push(await SerialHostClient.connect(tcpA), await SerialHostClient.connect(tcpB));
    const files: Record<string, Buffer> = {};
    for (const p of ports) {
      files[`g2h-${p.name}.bin`] = p.g2h;
      files[`bp-${p.name}.bin`] = p.bp;
    }
    guest = startGuest({
      script: guestScript(ports),
      files,
      modules: ['vhci_hcd', 'xhci_pci', 'cdc_acm'],
      guestfwd: [{ guestPort: 3240, hostPort: usbipPort }],
      qemuArgs: usbRedirArgs([redirPort]),
      timeoutMs: 240_000,
    });
    const blockedAt: Record<string, number> = {};
    for (const [i, p] of ports.entries()) {
      const c = clients[i]!;
      const got = await c.take(MiB, 120_000, `${p.name}: guest → host`);
      assert.equal(sha256(got), sha256(p.g2h), `${p.name}: guest → host bytes differ`);
      // Stop reading before the back-pressure step starts writing.
      c.pause();
      await guest.waitStage(`recv-${p.name}`, 60_000);
      await c.write(p.h2g);
      await guest.waitStage(`bp-${p.name}`, 120_000);
      const progress = guest.path(`progress-${p.name}`);
      const done = guest.path(`stage-bp-done-${p.name}`);
      blockedAt[p.name] = await waitStable(progress, 3000, 120_000, () => existsSync(done));
      assert.ok(blockedAt[p.name]! < BACKPRESSURE_BYTES, `${p.name}: the guest wrote everything while paused`);
      c.resume();
      const bp = await c.take(BACKPRESSURE_BYTES, 120_000, `${p.name}: back-pressure bytes`);
      assert.equal(sha256(bp), sha256(p.bp), `${p.name}: bytes after back-pressure differ`);
      await guest.waitStage(`stty-${p.name}`, 60_000);
      // SERIAL_STATE: the guest saw DCD/DSR on; the client leaves and the guest must see them drop.
      await guest.waitStage(`carrier-${p.name}`, 60_000);
      c.close();
    }
    const res = await guest.done;
    assert.equal(res.rc, 0, res.describe());
    const kv = readKV(res.shareDir);
    const times = readKV(res.shareDir, 'times.txt');
    const out = srv.output();
    for (const p of ports) {
      assert.equal(kv[`h2g_sha_${p.name}`], sha256(p.h2g), `${p.name}: host → guest bytes differ`);
      assert.equal(kv[`carrier_${p.name}`], 'on-off', `${p.name}: DCD/DSR as the guest's TIOCMGET sees them`);
      assert.match(out, new RegExp(`serial ${p.busid}: line coding ${p.baud} 8N1`), `${p.name}: raw-mode line coding`);
      assert.match(out, new RegExp(`serial ${p.busid}: line coding 19200 7E2`), `${p.name}: stty line coding`);
      assert.match(out, new RegExp(`serial ${p.busid}: DTR on, RTS on`), `${p.name}: DTR/RTS raised on open`);
      const rate = (k: string, bytes: number) => `${((bytes / Number(times[k])) * 1e-6).toFixed(2)} MB/s`;
      t.diagnostic(
        `${p.name} (${kv[`tty_${p.name}`]}): guest → host ${rate(`g2h_${p.name}`, MiB)}, host → guest ${rate(`h2g_${p.name}`, MiB)}, ` +
          `writer blocked at ${blockedAt[p.name]} of ${BACKPRESSURE_BYTES} bytes while the host end did not read`,
      );
    }
    res.cleanup();
    t.diagnostic(`one guest boot for both protocols: ${(res.durationMs / 1000).toFixed(1)} s`);
  } catch (e) {
    file.failed = true;
    if (srv) process.stderr.write(`--- usbwire output ---\n${srv.output()}\n`);
    throw e;
  } finally {
    for (const c of clients) c.close();
    if (guest && guest.proc.exitCode === null) guest.kill();
  }
});
