import { request } from 'node:http';
import { type ControlAddress, defaultControlPath, describeControlAddress } from '../server/control/index.js';
import { parseControl, UsageError } from './args.js';

/** The control endpoint a command talks to: --control, else the default socket. */
export function controlAddress(text: string | undefined): ControlAddress {
  if (text === undefined) return { kind: 'unix', path: defaultControlPath() };
  const spec = parseControl(text);
  if (spec.kind === 'none') throw new UsageError('--control none: these commands need a control endpoint');
  return spec;
}

/** One request to the control endpoint; resolves with the parsed JSON, throws UsageError with a one-line reason. */
export function callControl(
  address: ControlAddress,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
): Promise<unknown> {
  const where = describeControlAddress(address);
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = request(
      {
        ...(address.kind === 'unix' ? { socketPath: address.path } : { host: address.host, port: address.port }),
        method,
        path,
        headers: payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {},
        timeout: 10_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) => reject(new UsageError(`control endpoint ${where}: ${err.message}`)));
        res.on('end', () => {
          let parsed: unknown;
          try {
            parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          } catch {
            reject(new UsageError(`control endpoint ${where} did not answer with JSON (is it usbwire?)`));
            return;
          }
          if ((res.statusCode ?? 500) >= 400) {
            const message = (parsed as { error?: unknown })?.error;
            reject(new UsageError(typeof message === 'string' ? message : `HTTP ${res.statusCode}`));
          } else resolve(parsed);
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('no answer within 10 s')));
    req.on('error', (err: NodeJS.ErrnoException) => {
      const notRunning = ['ENOENT', 'ECONNREFUSED', 'ENOTSOCK'].includes(err.code ?? '');
      reject(
        new UsageError(
          notRunning
            ? `no usbwire server is listening on ${where}; start one with 'usbwire serve --keyboard --mouse' (or give --control where it listens)`
            : `control endpoint ${where}: ${err.message}`,
        ),
      );
    });
    req.end(payload);
  });
}
