import { parseArgs } from 'node:util';
import { UsbipClient } from '../client/usbip/index.js';
import type { UsbipDevlistEntry } from '../protocol/usbip/op.js';
import { setLogSink } from '../util/log.js';
import { className, productName, UsbIds } from '../util/usb-ids.js';
import { parseEndpoint, UsageError } from './args.js';
import { listLocal } from './list-local.js';

export const LIST_HELP = `usage: usbwire list -r HOST[:PORT] [--tcp-port PORT]
       usbwire list -l

List the devices a USB/IP server exports (usbwire, usbipd or any other), in the format of
'usbip list -r', with names from usb.ids; or this host's USB devices (port path, VID:PID,
speed, class, names, kernel driver, and whether a mounted or open disk holds them).

  -r, --remote HOST[:PORT]   server to ask (port 3240 unless given)
  -l, --local                this host's USB devices
  --tcp-port PORT            port, as 'usbip --tcp-port' takes it
  -h, --help                 show this help
`;

/** `usbwire list -r HOST`: print a server's exported devices. */
export async function list(argv: string[]): Promise<number> {
  let values: { remote?: string; 'tcp-port'?: string; local?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        remote: { type: 'string', short: 'r' },
        'tcp-port': { type: 'string' },
        local: { type: 'boolean', short: 'l' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message.split('\n')[0]} (see usbwire list --help)`);
  }
  if (values.help) {
    process.stdout.write(LIST_HELP);
    return 0;
  }
  if (values.local) {
    if (values.remote) throw new UsageError('list takes -r HOST or -l, not both');
    process.stdout.write(await listLocal());
    return 0;
  }
  if (!values.remote) throw new UsageError('list needs -r HOST or -l (see usbwire list --help)');
  const remote = values.remote;
  const withPort = /^\[.*\]:\d+$|^[^:]+:\d+$/.test(remote);
  const host = withPort ? remote : remote.includes(':') && !remote.startsWith('[') ? `[${remote}]` : remote;
  const where = parseEndpoint(
    withPort && !values['tcp-port'] ? host : `${host.replace(/:\d+$/, '')}:${values['tcp-port'] ?? 3240}`,
    '-r',
  );
  setLogSink('silent');
  let devices: UsbipDevlistEntry[];
  try {
    devices = await new UsbipClient({ timeoutMs: 5000 }).listDevices(where);
  } catch (err) {
    process.stderr.write(`usbwire: ${(err as Error).message}\n`);
    return 1;
  }
  if (devices.length === 0) {
    process.stderr.write(`usbwire: info: no exportable devices found on ${where.host}\n`);
    return 0;
  }
  process.stdout.write(Buffer.from(formatDevlist(where.host, devices, UsbIds.load()), 'latin1'));
  return 0;
}

/** snprintf into usbip's 100-byte name buffers. */
const NAME_MAX = 99;

/**
 * What `usbip list -r HOST` prints (tools/usb/usbip/src/usbip_list.c), as latin1 text: one
 * character per byte, names from usb.ids truncated where usbip's buffers truncate them.
 */
export function formatDevlist(host: string, devices: readonly UsbipDevlistEntry[], ids: UsbIds): string {
  const bytes = (s: string) => Buffer.from(s, 'utf8').toString('latin1');
  const field = (label: string, value: string) => `${label.padStart(11)}: ${value}\n`;
  let out = `Exportable USB devices\n======================\n - ${bytes(host)}\n`;
  for (const d of devices) {
    out += field(bytes(d.busid), productName(ids, d.idVendor, d.idProduct).slice(0, NAME_MAX));
    out += field('', bytes(d.path));
    out += field('', className(ids, d.bDeviceClass, d.bDeviceSubClass, d.bDeviceProtocol).slice(0, NAME_MAX));
    for (const [j, f] of d.interfaces.entries()) {
      const name = className(ids, f.interfaceClass, f.interfaceSubClass, f.interfaceProtocol).slice(0, NAME_MAX);
      out += field('', `${String(j).padStart(2)} - ${name}`);
    }
    out += '\n';
  }
  return out;
}
