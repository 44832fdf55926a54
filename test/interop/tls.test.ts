// TLS interop, one guest boot: QEMU's own TLS (GnuTLS, tls-creds-x509 / tls-creds-psk on the
// usb-redir chardev) against usbwire's TLS (Node's OpenSSL), in both connect directions, and the
// kernel's vhci-hcd through `usbwire tunnel` (plain in the guest, TLS to usbwire). Each path
// carries its own disk, told apart in the guest by size; two more chardevs with a certificate
// of another CA and a wrong pre-shared key must be refused before they learn anything: their
// bait disks never reach the guest and stay untouched.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { makePki, makePskFile } from '../support/tls-pki.js';
import {
  assertPatternsInImage,
  assertUnchangedOutside,
  guestPatternWrites,
  MiB,
  type PatternWrite,
  patternFiles,
  prepareImage,
} from './disk-checks.js';
import {
  freePort,
  interopFile,
  readKV,
  repoRoot,
  sha256File,
  startGuest,
  startUsbwire,
  type UsbwireServer,
} from './rig.js';

const file = interopFile('tls');
const { skip, work, servers } = file;

interface Disk {
  key: string;
  img: string;
  size: number;
  seed: string;
  writes: PatternWrite[];
  sha: string;
}

function disk(key: string, sizeMiB: number): Disk {
  const size = sizeMiB * MiB;
  const img = join(work, `${key}.img`);
  const seed = `tls-${key}`;
  const writes = [
    { name: 'first', offset: 0, length: 4096 },
    { name: 'mid', offset: 5 * MiB + 512, length: 130 * 1024 },
    { name: 'last', offset: size - 512, length: 512 },
  ];
  return { key, img, size, seed, writes, sha: prepareImage({ img, seed, size }) };
}

/** Guest: find the disk by its size, read it whole, write and read back the patterns. */
function guestDiskChecks(d: Disk): string {
  return `
D=$(tls_wait_size ${d.size / 512} 120) || fail "disk ${d.key} (${d.size} bytes) did not appear (have: $(rig_disks))"
log "disk ${d.key} is $D"
rig_result ${d.key}_bytes $(rig_disk_bytes $D)
rig_result ${d.key}_sha $(sha256sum /dev/$D | cut -d' ' -f1)
${guestPatternWrites(d.writes, d.key)}
`;
}

/** lib.sh has rig_wait_disk for "any new disk"; here each path's disk has its own size. */
const WAIT_SIZE = `
tls_wait_size() {
  _n=0
  while :; do
    for _b in /sys/block/sd*; do
      [ -e "$_b" ] || continue
      if [ "$(cat "$_b/size" 2>/dev/null)" = "$1" ] && [ -b "/dev/\${_b##*/}" ]; then echo "\${_b##*/}"; return 0; fi
    done
    _n=$((_n + 1)); [ "$_n" -gt $(($2 * 10)) ] && return 1
    sleep 0.1
  done
}
`;

function startTunnel(args: string[]): { proc: ChildProcess; output: () => string; stop: () => void } {
  const proc = spawn(process.execPath, [join(repoRoot, 'bin', 'usbwire.js'), 'tunnel', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout?.setEncoding('utf8').on('data', (s: string) => (out += s));
  proc.stderr?.setEncoding('utf8').on('data', (s: string) => (out += s));
  return { proc, output: () => out, stop: () => proc.kill('SIGTERM') };
}

test('TLS: QEMU usb-redir with x509 and PSK creds as client and as server (--usbredir-connect), vhci-hcd through the tunnel; a wrong certificate and a wrong key learn nothing', {
  skip,
  timeout: 480_000,
}, async (t) => {
  const pki = makePki(work, 'qemu-guest');
  const psk = makePskFile(join(work, 'psk'), ['qemu']);
  // QEMU's client dir with a client certificate of another CA. QEMU checks its own certificate
  // against its ca-cert.pem, and usbwire's against the same file: both CAs go in.
  const rogueDir = join(work, 'rogue-qemu');
  mkdirSync(rogueDir);
  writeFileSync(join(rogueDir, 'ca-cert.pem'), Buffer.concat([readFileSync(pki.ca), readFileSync(pki.rogue.ca)]));
  copyFileSync(pki.rogue.client.cert, join(rogueDir, 'client-cert.pem'));
  copyFileSync(pki.rogue.client.key, join(rogueDir, 'client-key.pem'));
  // The right identity with a wrong key.
  const wrongPskDir = join(work, 'wrong-psk');
  mkdirSync(wrongPskDir);
  writeFileSync(join(wrongPskDir, 'keys.psk'), `qemu:${'5a'.repeat(32)}\n`, { mode: 0o600 });

  // Sizes tell the disks apart in the guest.
  const a = disk('x509in', 16); // QEMU (x509 client) → usbwire --usbredir
  const c = disk('x509out', 17); // usbwire --usbredir-connect → QEMU (x509 server)
  const d = disk('vhci', 18); // vhci-hcd → tunnel → usbwire --usbip (mutual TLS)
  const e = disk('baitcert', 19); // QEMU with another CA's certificate → usbwire --usbredir
  const b = disk('psk', 20); // QEMU (PSK client) → usbwire --usbredir --psk-file
  const f = disk('baitpsk', 21); // QEMU with a wrong key → usbwire --usbredir --psk-file
  const h = disk('pskout', 22); // usbwire --usbredir-connect --psk-file → QEMU (PSK server)
  const [pA, pC, pD, pE, pB, pF, pT, pH] = await Promise.all(Array.from({ length: 8 }, () => freePort()));

  const x509 = startUsbwire(
    [
      ...['--tls-cert', pki.server.cert, '--tls-key', pki.server.key, '--tls-ca', pki.ca],
      ...['--disk', a.img, '--disk', c.img, '--disk', d.img, '--disk', e.img],
      ...['--usbredir', `127.0.0.1:${pA}=1-1`, '--usbredir', `127.0.0.1:${pE}=1-4`],
      ...['--usbip', `127.0.0.1:${pD}`, '--usbredir-connect', `127.0.0.1:${pC}=1-2`],
    ],
    { readyPattern: /usbredir: connecting to/ },
  );
  const pskSrv = startUsbwire(
    [
      ...['--psk-file', psk.path, '--disk', b.img, '--disk', f.img, '--disk', h.img],
      ...['--usbredir', `127.0.0.1:${pB}=1-1`, '--usbredir', `127.0.0.1:${pF}=1-2`],
      ...['--usbredir-connect', `127.0.0.1:${pH}=1-3`],
    ],
    { readyPattern: /usbredir: connecting to/ },
  );
  servers.push(x509, pskSrv);
  const tunnel = startTunnel([
    ...['--listen', `127.0.0.1:${pT}`, '--to', `tls://127.0.0.1:${pD}`],
    ...['--cert', pki.client.cert, '--key', pki.client.key, '--ca', pki.ca],
  ]);
  const all: (UsbwireServer | { output: () => string })[] = [x509, pskSrv, tunnel];
  const dump = () => all.map((s) => `--- usbwire ---\n${s.output()}`).join('\n');
  try {
    await Promise.all([x509.ready, pskSrv.ready]);
    const redir = (id: string, port: number, creds: string, more = 'reconnect=1') => [
      ...['-chardev', `socket,id=${id},host=127.0.0.1,port=${port},${more},nodelay=on,tls-creds=${creds}`],
      ...['-device', `usb-redir,chardev=${id},bus=usbc.0`],
    ];
    const qemuArgs = [
      ...['-object', `tls-creds-x509,id=tlsc,dir=${pki.dir},endpoint=client`],
      ...['-object', `tls-creds-x509,id=tlss,dir=${pki.dir},endpoint=server`],
      ...['-object', `tls-creds-psk,id=tlsp,dir=${join(work, 'psk')},endpoint=client,username=qemu`],
      ...['-object', `tls-creds-psk,id=tlsq,dir=${join(work, 'psk')},endpoint=server`],
      ...['-object', `tls-creds-x509,id=tlsr,dir=${rogueDir},endpoint=client`],
      ...['-object', `tls-creds-psk,id=tlsw,dir=${wrongPskDir},endpoint=client,username=qemu`],
      ...['-device', 'qemu-xhci,id=usbc,p2=8,p3=8'],
      ...redir('ura', pA, 'tlsc'),
      ...redir('urb', pB, 'tlsp'),
      ...redir('urc', pC, 'tlss', 'server=on,wait=off'),
      ...redir('ure', pE, 'tlsr'),
      ...redir('urf', pF, 'tlsw'),
      ...redir('urh', pH, 'tlsq', 'server=on,wait=off'),
    ];
    const bait = [e, f].map(
      (x) => `[ -n "$(tls_size_present ${x.size / 512})" ] && fail "bait disk ${x.key} reached the guest"`,
    );
    const script = `${WAIT_SIZE}
tls_size_present() { for _b in /sys/block/sd*; do [ "$(cat $_b/size 2>/dev/null)" = "$1" ] && echo \${_b##*/}; done; }
usbip --tcp-port 3240 list -r 10.0.2.100 > /tmp/list.txt 2>&1 || { cat /tmp/list.txt; fail "usbip list -r through the tunnel"; }
grep -q ' 1-3:' /tmp/list.txt || { cat /tmp/list.txt; fail "busid 1-3 not in the list"; }
usbip --tcp-port 3240 attach -r 10.0.2.100 -b 1-3 || { rig_dmesg attach; fail "usbip attach through the tunnel"; }
${[a, b, c, d, h].map(guestDiskChecks).join('')}
sync
${bait.join('\n')}
rig_result disks "$(rig_disks)"
rig_stage patterns
rig_wait_host verified 120
usbip port > /tmp/port.txt 2>&1
P=$(rig_usbip_port_of 1-3)
[ -n "$P" ] || { cat /tmp/port.txt; fail "usbip port does not show 1-3"; }
usbip detach -p $P || fail "usbip detach"
log "guest done"
`;
    const files = Object.assign({}, ...[a, b, c, d, h].map((x) => patternFiles(x.writes, x.key)));
    const g = startGuest({
      script,
      files,
      modules: ['xhci_pci', 'vhci_hcd', 'usb_storage', 'sd_mod'],
      guestfwd: [{ guestPort: 3240, hostPort: pT }],
      qemuArgs,
      timeoutMs: 420_000,
    });
    try {
      await g.waitStage('patterns', 360_000);
    } catch (err) {
      const res = await g.done;
      assert.fail(`${(err as Error).message}\n${res.describe()}\n${dump()}`);
    }
    try {
      for (const x of [a, b, c, d, h]) {
        await assertPatternsInImage(x.img, x.writes, x.key);
        assertUnchangedOutside(x.img, x.seed, x.size, x.writes);
      }
      for (const x of [e, f]) assert.equal(sha256File(x.img), x.sha, `bait disk ${x.key} changed`);
    } catch (err) {
      g.kill();
      const res = await g.done;
      throw new Error(`${(err as Error).message}\n${res.describe()}\n${dump()}`);
    }
    g.signal('verified');
    const res = await g.done;
    assert.equal(res.rc, 0, `${res.describe()}\n${dump()}`);
    const kv = readKV(res.shareDir);
    for (const x of [a, b, c, d, h]) {
      assert.equal(Number(kv[`${x.key}_bytes`]), x.size, `${x.key}: size seen by the guest`);
      assert.equal(kv[`${x.key}_sha`], x.sha, `${x.key}: sha256 of the whole disk read by the guest vs the image`);
    }
    const out = x509.output();
    const pskOut = pskSrv.output();
    // Who came in, as the logs name them.
    assert.match(
      out,
      /connection from 127\.0\.0\.1:\d+ \(certificate "CN=qemu-guest, O=usbwire tests", DNS:qemu-guest; TLSv1\.3 /,
    );
    assert.match(
      out,
      /connected to usbredir guest 127\.0\.0\.1:\d+ \(certificate "CN=usbwire server, O=usbwire tests"/,
    );
    assert.match(out, /\[usbip-server\] connection from 127\.0\.0\.1:\d+ \(certificate "CN=qemu-guest/);
    const pskLine = /connection from 127\.0\.0\.1:\d+ \(PSK identity "qemu"; (TLSv1\.3 \S+)\)/.exec(pskOut);
    assert.ok(pskLine, pskOut);
    assert.match(pskOut, /connected to usbredir guest 127\.0\.0\.1:\d+ \(PSK identity "qemu"; TLSv1\.3 /);
    t.diagnostic(`QEMU tls-creds-psk (GnuTLS) ↔ usbwire (OpenSSL): ${pskLine[1]}`);
    // Who was refused, during the handshake.
    assert.match(out, /refused during the TLS handshake: client certificate not accepted/);
    assert.match(pskOut, /refused during the TLS handshake/);
    const refusal = (text: string) => /refused during the TLS handshake: (.*)/.exec(text)?.[1];
    t.diagnostic(`x509 refusal warnings: ${(out.match(/refused during/g) ?? []).length}, e.g. "${refusal(out)}"`);
    t.diagnostic(`PSK refusal warnings: ${(pskOut.match(/refused during/g) ?? []).length}, e.g. "${refusal(pskOut)}"`);
    t.diagnostic(`guest run ${(res.durationMs / 1000).toFixed(1)} s`);
    res.cleanup();
  } catch (err) {
    file.failed = true;
    throw err;
  } finally {
    tunnel.stop();
  }
});
