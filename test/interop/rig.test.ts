// Self-test of the interop rig, independent of usbwire: if these fail, the rig is broken
// (not the server). (1) the guestfwd relay carries the real `usbip list -r` to a stub
// USB/IP server on the host, one relay per connection, nothing written into the stream;
// (2) the full disk scenario of the usbip/usbredir tests passes against QEMU's built-in
// usb-storage on qemu-xhci (the control for those tests).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { MiB, runDiskScenario } from './disk-checks.js';
import { bootGuest, freePort, interopGate, readKV } from './rig.js';

const { skip } = interopGate();
const work = mkdtempSync(join(tmpdir(), 'usbwire-rigtest-'));
after(() => rmSync(work, { recursive: true, force: true }));

test('rig: usbip list -r through guestfwd + relay reaches a stub OP_REP_DEVLIST server', {
  skip,
  timeout: 180_000,
}, async () => {
  const port = await freePort();
  const requests: string[] = [];
  const stub = createServer((s) => {
    s.once('data', (d) => {
      requests.push(d.toString('hex'));
      const r = Buffer.alloc(12);
      r.writeUInt16BE(0x0111, 0); // version
      r.writeUInt16BE(0x0005, 2); // OP_REP_DEVLIST
      r.writeUInt32BE(0, 4); // status
      r.writeUInt32BE(0, 8); // ndev
      s.end(r);
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => stub.listen(port, '127.0.0.1', r));
  try {
    const res = await bootGuest({
      guestfwd: [{ guestPort: 3240, hostPort: port }],
      timeoutMs: 150_000,
      script: `
for i in 1 2; do
  usbip --tcp-port 3240 list -r 10.0.2.100 > /tmp/l.txt 2>&1; rc=$?
  cat /tmp/l.txt
  [ $rc = 0 ] || fail "usbip list rc=$rc"
  grep -q 'no exportable devices' /tmp/l.txt || fail "unexpected list output"
done
rig_result lists 2
`,
    });
    assert.equal(res.rc, 0, res.describe());
    assert.equal(readKV(res.shareDir).lists, '2');
    // usbip's OP_REQ_DEVLIST, one fresh host connection per guest connection
    assert.deepEqual(requests, ['0111800500000000', '0111800500000000']);
    res.cleanup();
  } finally {
    stub.close();
  }
});

test('rig: disk scenario passes on QEMU built-in usb-storage (control)', { skip, timeout: 300_000 }, async () => {
  const img = join(work, 'baseline.img');
  const res = await runDiskScenario({
    img,
    seed: 'baseline',
    size: 64 * MiB,
    modules: ['xhci_pci', 'usb_storage', 'sd_mod', 'ext4'],
    attach: '',
    boot: {
      timeoutMs: 240_000,
      qemuArgs: [
        '-device',
        'qemu-xhci,id=usbc',
        '-drive',
        `if=none,id=d0,file=${img},format=raw,cache=writeback`,
        '-device',
        'usb-storage,drive=d0,bus=usbc.0',
      ],
    },
  });
  res.cleanup();
});
