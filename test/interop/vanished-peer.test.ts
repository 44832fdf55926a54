// A client that vanishes without a word (its host powered off, a cable pulled: no FIN, no RST,
// no more ACKs) must not hold a device for the kernel's default of two hours. A usbwire bridge
// in a network namespace imports a device over USB/IP and another over usbredir from a usbwire
// server across a veth pair; the link is then cut inside the namespace. The server must notice
// within its peer timeout (4 s here) and let the next client have both devices.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { UsbipClient } from '../../src/client/usbip/client.js';
import { UsbredirConnectSource } from '../../src/client/usbredir/source.js';
import type { UsbDevice } from '../../src/usb/device.js';
import { setLogSink } from '../../src/util/log.js';
import { freePort, interopFile, type Netns, startUsbwire } from './rig.js';

const file = interopFile('vanished-peer');
const PEER_TIMEOUT_MS = 4000;

function ip(...args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim()}`);
}

function netnsSkip(): string | false {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces)';
  if (spawnSync('ip', ['-V']).status !== 0) return 'needs iproute2';
  return false;
}

test('a vanished client frees its devices within the peer timeout', {
  skip: file.skip || netnsSkip(),
  timeout: 120_000,
}, async () => {
  setLogSink('silent');
  const ns = `usbwire-vanish-${process.pid}`;
  const [hostIp, nsIp] = ['10.213.0.1', '10.213.0.2'];
  ip('netns', 'add', ns);
  const cleanup: (() => unknown)[] = [
    () => spawnSync('ip', ['netns', 'del', ns]),
    () => spawnSync('ip', ['link', 'del', 'uwvanish0']),
  ];
  try {
    ip('link', 'add', 'uwvanish0', 'type', 'veth', 'peer', 'name', 'uwvanish1');
    ip('link', 'set', 'uwvanish1', 'netns', ns);
    ip('addr', 'add', `${hostIp}/24`, 'dev', 'uwvanish0');
    ip('link', 'set', 'uwvanish0', 'up');
    ip('netns', 'exec', ns, 'ip', 'addr', 'add', `${nsIp}/24`, 'dev', 'uwvanish1');
    ip('netns', 'exec', ns, 'ip', 'link', 'set', 'uwvanish1', 'up');
    ip('netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up');

    const [usbipPort, redirPort] = [await freePort(), await freePort()];
    const config = join(file.work, 'server.json');
    writeFileSync(
      config,
      JSON.stringify({
        usbip: `${hostIp}:${usbipPort}`,
        usbredir: `${hostIp}:${redirPort}=1-2`,
        devices: [{ 'gadget-zero': true }, { keyboard: true }],
        limits: { peerTimeoutMs: PEER_TIMEOUT_MS },
      }),
    );
    const server = startUsbwire(['--config', config], { readyCount: 3 });
    cleanup.unshift(() => server.stop());
    await server.ready;

    // The client: a usbwire bridge inside the namespace holding both devices.
    const bridge = startUsbwire(
      [
        '--usbip',
        '127.0.0.1:3240',
        '--remote',
        `usbip://${hostIp}:${usbipPort}/1-1`,
        '--remote',
        `usbredir://${hostIp}:${redirPort}`,
      ],
      { netns: { name: ns } as Netns, readyPattern: /exporting 1-2/ },
    );
    cleanup.unshift(() => bridge.kill());
    await bridge.ready;
    for (let i = 0; (bridge.output().match(/1-[12]: connected: /g) ?? []).length < 2; i++) {
      if (i > 300) throw new Error(`the bridge did not get both devices:\n${bridge.output()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(server.output(), /imported 1-1/);

    const t0 = Date.now();
    ip('netns', 'exec', ns, 'ip', 'link', 'set', 'uwvanish1', 'down');

    const client = new UsbipClient();
    const imported = (async () => {
      for (;;) {
        try {
          const d = await client.importDevice({ host: hostIp, port: usbipPort }, '1-1');
          await d.close();
          return Date.now() - t0;
        } catch {
          await new Promise((r) => setTimeout(r, 250));
        }
      }
    })();
    const source = new UsbredirConnectSource({
      address: { host: hostIp, port: redirPort },
      minRetryMs: 250,
      maxRetryMs: 250,
    });
    const redirected = new Promise<number>((resolve) =>
      source.once('device', (d: UsbDevice) => {
        resolve(Date.now() - t0);
        void d.close();
      }),
    );
    source.start();
    cleanup.unshift(() => source.close());
    const [usbipMs, redirMs] = await Promise.all([imported, redirected]);
    process.stdout.write(
      `# freed after the link cut: USB/IP ${usbipMs} ms, usbredir ${redirMs} ms (peer timeout ${PEER_TIMEOUT_MS} ms)\n`,
    );
    assert.ok(usbipMs < PEER_TIMEOUT_MS + 8000, `USB/IP device freed after ${usbipMs} ms`);
    assert.ok(redirMs < PEER_TIMEOUT_MS + 8000, `usbredir device freed after ${redirMs} ms`);
    assert.ok(usbipMs >= 1000, 'not freed before the peer could have been noticed gone');
  } finally {
    for (const c of cleanup) await c();
  }
});
