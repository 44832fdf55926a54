import { readFileSync } from 'node:fs';
import { UsageError } from './args.js';
import { delayProxy } from './delay-proxy.js';
import { detachCommand, devicesCommand, keyCommand, ledsCommand, pointerCommand, typeCommand } from './input.js';
import { list } from './list.js';
import { serve } from './serve.js';
import { tunnel } from './tunnel.js';

const HELP = `usage: usbwire <command> [options]

USB devices over the network: exports emulated and real USB devices over USB/IP and usbredir.

commands:
  serve      export devices (usbwire serve --help)
  list       list the devices a USB/IP server exports (usbwire list --help)
  tunnel     plain TCP in, TLS out, for usbip attach to a TLS server (usbwire tunnel --help)
  delay-proxy  a TCP proxy adding latency and a bandwidth cap, for tests (usbwire delay-proxy --help)
  devices    list what a running usbwire serve exports, who uses it, its actions
  detach     take an exported device away from its client: usbwire detach 1-2
  type       type text on an exported keyboard: usbwire type 1-1 "Hello, World!"
  key        press or hold a key combination: usbwire key 1-1 ctrl+alt+f2 [--down|--up]
  pointer    move, click, wheel an exported mouse: usbwire pointer 1-2 move 10 -5
  leds       the LEDs (Caps Lock...) the host set on an exported keyboard
             (these talk to serve's control endpoint; each takes --control and --help)

  -V, --version   print the version
  -h, --help      show this help
`;

export function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

/** Entry point of the `usbwire` command. Returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'serve':
        return await serve(rest);
      case 'list':
        return await list(rest);
      case 'tunnel':
        return await tunnel(rest);
      case 'delay-proxy':
        return await delayProxy(rest);
      case 'devices':
        return await devicesCommand(rest);
      case 'detach':
        return await detachCommand(rest);
      case 'type':
        return await typeCommand(rest);
      case 'key':
        return await keyCommand(rest);
      case 'pointer':
        return await pointerCommand(rest);
      case 'leds':
        return await ledsCommand(rest);
      case '-V':
      case '--version':
        process.stdout.write(`usbwire ${version()}\n`);
        return 0;
      case '-h':
      case '--help':
      case 'help':
        process.stdout.write(HELP);
        return 0;
      case undefined:
        process.stderr.write(HELP);
        return 2;
      default:
        throw new UsageError(`unknown command "${command}" (try usbwire --help)`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`usbwire: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
}
