// Gadget zero judged by the kernel's own USB test suite: every usbtest case against two
// `--gadget-zero` exports of one usbwire server, one attached by vhci-hcd over USB/IP, the other
// by QEMU's usb-redir on qemu-xhci, in one guest boot (gadget-zero-run.ts).
import { test } from 'node:test';
import { GZ_DEBUG, runUsbtestGuest } from './gadget-zero-run.js';
import { freePort, interopFile, startUsbwire } from './rig.js';

const file = interopFile('gadget-zero');

test(
  'gadget zero: usbtest/testusb over USB/IP (vhci-hcd) and usbredir (qemu-xhci), one guest',
  {
    skip: file.skip,
    timeout: 360_000,
  },
  (t) =>
    runUsbtestGuest(t, file, async () => {
      const usbipPort = await freePort();
      const usbredirPort = await freePort();
      const srv = startUsbwire(
        [
          ...(GZ_DEBUG ? ['--log-level', 'debug'] : []),
          '--usbip',
          `127.0.0.1:${usbipPort}`,
          '--usbredir',
          `127.0.0.1:${usbredirPort}=1-2`,
          '--gadget-zero',
          '--gadget-zero',
        ],
        { readyCount: 3 },
      );
      file.servers.push(srv);
      await srv.ready;
      return { usbipPort, usbredirPort, servers: [srv] };
    }),
);
