import { readFileSync } from 'node:fs';
import { UsageError } from './args.js';
import { list } from './list.js';
import { serve } from './serve.js';

const HELP = `usage: usbwire <command> [options]

USB devices over the network: exports emulated and real USB devices over USB/IP and usbredir.

commands:
  serve      export devices (usbwire serve --help)
  list       list the devices a USB/IP server exports (usbwire list --help)

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
