// usbtest through the bridge, usbwire to usbwire, both directions in one guest boot:
//   vhci-hcd ─USB/IP→ usbwire B ─usbredir client→ usbwire A (usbredir host) → gadget zero
//   QEMU usb-redir ─usbredir→ usbwire B ─USB/IP client→ usbwire A (USB/IP server) → gadget zero
// The kernel's usbtest suite is the judge; this is what catches cancel/unlink translation mistakes
// (USB/IP CMD_UNLINK ↔ usbredir cancel_data_packet, both race orders).
import { test } from 'node:test';
import { GZ_DEBUG, runUsbtestGuest } from './gadget-zero-run.js';
import { freePort, interopFile, startUsbwire } from './rig.js';
import { waitListed } from './usbip-wait.js';

const file = interopFile('usbtest-bridge');
const debug = GZ_DEBUG ? ['--log-level', 'debug'] : [];

test(
  'gadget zero through usbwire-to-usbwire bridges: usbtest over USB/IP←usbredir and usbredir←USB/IP',
  {
    skip: file.skip,
    timeout: 420_000,
  },
  (t) =>
    runUsbtestGuest(t, file, async () => {
      const [aUsbip, aRedir, usbipPort, usbredirPort] = [
        await freePort(),
        await freePort(),
        await freePort(),
        await freePort(),
      ];
      // A: the device side. 1-1 is imported over USB/IP, 1-2 is served to a usbredir client.
      const a = startUsbwire(
        [
          ...debug,
          '--usbip',
          `127.0.0.1:${aUsbip}`,
          '--usbredir',
          `127.0.0.1:${aRedir}=1-2`,
          '--gadget-zero',
          '--gadget-zero',
        ],
        { readyCount: 3 },
      );
      file.servers.push(a);
      await a.ready;
      // B: the bridge. 1-1 comes over usbredir and goes to vhci-hcd; 1-2 comes over USB/IP and goes to QEMU.
      const b = startUsbwire(
        [
          ...debug,
          '--usbip',
          `127.0.0.1:${usbipPort}`,
          '--usbredir',
          `127.0.0.1:${usbredirPort}=1-2`,
          '--remote',
          `usbredir://127.0.0.1:${aRedir}`,
          '--remote',
          `usbip://127.0.0.1:${aUsbip}/1-1`,
        ],
        { readyCount: 2 },
      );
      file.servers.push(b);
      await b.ready;
      await waitListed(usbipPort, ['1-1', '1-2']);
      return { usbipPort, usbredirPort, servers: [a, b] };
    }),
);
