import { request } from 'node:http';
import { type ControlAddress, defaultControlPath, describeControlAddress } from '../server/control/index.js';
import { parseControl, UsageError } from './args.js';

/** The control endpoint answered with an error status; `body` is its JSON answer. */
export class ControlError extends UsageError {
  override name = 'ControlError';
  constructor(
    message: string,
    readonly status: number,
    readonly body: unknown,
  ) {
    super(message);
  }
}

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
            const status = res.statusCode ?? 500;
            reject(new ControlError(typeof message === 'string' ? message : `HTTP ${status}`, status, parsed));
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

export interface DetachAnswer {
  detached: string;
  ejected: boolean;
  forcedHold?: string;
  hostNoticed?: boolean;
}

/**
 * Ask the server to detach BUSID. Resolves with the lines to print and the exit status: 1 when
 * the server refused because the host holds the device (a mounted disk), with its reason.
 */
export async function detachDevice(
  address: ControlAddress,
  busid: string,
  force: boolean,
): Promise<{ status: number; lines: string[] }> {
  let r: DetachAnswer;
  try {
    r = (await callControl(address, 'POST', `/devices/${encodeURIComponent(busid)}/detach`, {
      force,
    })) as DetachAnswer;
  } catch (err) {
    if (err instanceof ControlError && err.status === 409 && (err.body as { held?: unknown })?.held) {
      return { status: 1, lines: [`usbwire: ${err.message}`] };
    }
    throw err;
  }
  const lines = [`${busid}: detached from ${r.detached}${r.ejected ? ' (writes in flight finished and flushed)' : ''}`];
  if (r.forcedHold !== undefined) {
    lines.push(
      `${busid}: forced while ${r.forcedHold}; the host ${r.hostNoticed ? 'was told' : 'had not asked yet, so it was not told'} its medium was removed before it lost the device`,
    );
  }
  return { status: 0, lines };
}
