import { parseArgs } from 'node:util';
import { CredentialError, loadClientCredentials } from '../transport/credentials.js';
import { Tunnel } from '../transport/relay.js';
import { AddressError, type HostPort, parseHostPort } from '../util/host-port.js';
import { createLogger, setLogLevel } from '../util/log.js';
import { credentialFlags, parseEndpoint, UsageError } from './args.js';

export const TUNNEL_HELP = `usage: usbwire tunnel --to tls://SERVER[:PORT] [--listen HOST:PORT]
                      [--cert FILE --key FILE] [--ca FILE] | [--psk-file FILE [--psk-identity ID]]

Plain TCP in, TLS out: for the kernel's USB/IP client (vhci-hcd), which cannot speak TLS, on the
client machine. Each connection accepted on --listen gets its own TLS connection to the server,
byte for byte, kept for as long as the client keeps it (also after 'usbip attach' handed the
socket to the kernel):

  usbwire tunnel --to tls://server:3240 --cert me.pem --key me-key.pem --ca ca.pem &
  usbip list -r 127.0.0.1; usbip attach -r 127.0.0.1 -b 1-1

  --to tls://HOST[:PORT]     the usbwire server (TLS; port 3240 unless given)
  --listen HOST:PORT         where usbip connects (default 127.0.0.1:3240)
  --cert FILE --key FILE     this client's certificate and key (PEM), for a server with --tls-ca
  --ca FILE                  CAs that sign the server's certificate (default: the system's);
                             the certificate must name HOST
  --psk-file FILE            pre-shared keys instead (lines identity:hexkey), as the server's
  --psk-identity ID          which identity of the file to use (default: its only one)
  --log-level LEVEL          debug, info, warn or error (default info)
  -h, --help                 show this help
`;

const log = createLogger('tunnel');

function parseTarget(text: string): HostPort {
  const m = /^tls:\/\/(.+)$/.exec(text);
  if (!m) throw new UsageError(`--to ${text}: expected tls://HOST[:PORT]`);
  try {
    const a = parseHostPort(m[1]!, 3240);
    if (a.port === 0) throw new AddressError('port must be 1-65535');
    return a;
  } catch (err) {
    if (err instanceof AddressError) throw new UsageError(`--to ${err.message}`);
    throw err;
  }
}

/** `usbwire tunnel`: relay until SIGINT/SIGTERM. Resolves with the exit code. */
export async function tunnel(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        to: { type: 'string' },
        listen: { type: 'string' },
        cert: { type: 'string' },
        key: { type: 'string' },
        ca: { type: 'string' },
        'psk-file': { type: 'string' },
        'psk-identity': { type: 'string' },
        'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message.split('\n')[0]} (see usbwire tunnel --help)`);
  }
  if (values.help) {
    process.stdout.write(TUNNEL_HELP);
    return 0;
  }
  const level = (values['log-level'] as string | undefined) ?? 'info';
  if (!['debug', 'info', 'warn', 'error'].includes(level)) {
    throw new UsageError(`--log-level ${level}: expected debug, info, warn or error`);
  }
  setLogLevel(level as 'info');
  if (typeof values.to !== 'string')
    throw new UsageError('tunnel needs --to tls://SERVER[:PORT] (see usbwire tunnel --help)');
  const to = parseTarget(values.to);
  const listen = parseEndpoint((values.listen as string | undefined) ?? '127.0.0.1:3240', '--listen');
  let security: ReturnType<typeof loadClientCredentials>;
  try {
    security = loadClientCredentials(credentialFlags(values, { cert: '--cert', key: '--key', ca: '--ca' }), (m) =>
      log.warn(m),
    );
  } catch (err) {
    if (err instanceof CredentialError) throw new UsageError(err.message);
    throw err;
  }
  const t = new Tunnel({ listen, to, security, logger: log });
  try {
    await t.listen();
  } catch (err) {
    throw new UsageError(`cannot listen on ${values.listen ?? '127.0.0.1:3240'}: ${(err as Error).message}`);
  }
  const signal = await new Promise<string>((resolve) => {
    for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(s, () => resolve(s));
  });
  log.info(`${signal}: closing`);
  await t.close();
  return 0;
}
