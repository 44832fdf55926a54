import { parseArgs } from 'node:util';
import { UsbipClient } from '../client/usbip/index.js';
import { speedFromLinux } from '../protocol/usbip/status.js';
import { setLogSink } from '../util/log.js';
import { parseEndpoint, UsageError } from './args.js';

export const LIST_HELP = `usage: usbwire list -r HOST[:PORT] [--tcp-port PORT]

List the devices a USB/IP server exports (usbwire, usbipd or any other), like 'usbip list -r'.

  -r, --remote HOST[:PORT]   server to ask (port 3240 unless given)
  --tcp-port PORT            port, as 'usbip --tcp-port' takes it
  -h, --help                 show this help
`;

const hex = (n: number, w: number) => n.toString(16).padStart(w, '0');

/** `usbwire list -r HOST`: print a server's exported devices. */
export async function list(argv: string[]): Promise<number> {
  let values: { remote?: string; 'tcp-port'?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        remote: { type: 'string', short: 'r' },
        'tcp-port': { type: 'string' },
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
  if (!values.remote) throw new UsageError('list needs -r HOST (see usbwire list --help)');
  const remote = values.remote;
  const withPort = /^\[.*\]:\d+$|^[^:]+:\d+$/.test(remote);
  const host = withPort ? remote : remote.includes(':') && !remote.startsWith('[') ? `[${remote}]` : remote;
  const where = parseEndpoint(
    withPort && !values['tcp-port'] ? host : `${host.replace(/:\d+$/, '')}:${values['tcp-port'] ?? 3240}`,
    '-r',
  );
  setLogSink('silent');
  const devices = await new UsbipClient({ timeoutMs: 5000 }).listDevices(where).catch((err: Error) => {
    throw new UsageError(err.message);
  });
  console.log(`Exportable USB devices on ${where.host}:${where.port}`);
  if (devices.length === 0) console.log('  (none)');
  for (const d of devices) {
    console.log(
      `  ${d.busid}: ${hex(d.idVendor, 4)}:${hex(d.idProduct, 4)} ${speedFromLinux(d.speed)} speed, ` +
        `class ${hex(d.bDeviceClass, 2)}/${hex(d.bDeviceSubClass, 2)}/${hex(d.bDeviceProtocol, 2)}, ${d.path}`,
    );
    for (const [i, f] of d.interfaces.entries()) {
      console.log(
        `      interface ${i}: class ${hex(f.interfaceClass, 2)}/${hex(f.interfaceSubClass, 2)}/${hex(f.interfaceProtocol, 2)}`,
      );
    }
  }
  return 0;
}
