import { chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { createLogger } from '../../util/log.js';
import type { DeviceRegistry } from '../registry.js';
import { type ControlAddress, checkControlAddress, describeControlAddress } from './address.js';
import { type Reply, route } from './routes.js';

/** Largest request body accepted (actions take small JSON objects). */
export const MAX_BODY_BYTES = 64 * 1024;

const log = createLogger('control');

/** The socket is served by a live process (another usbwire, or anything else answering). */
export class ControlInUseError extends Error {
  override name = 'ControlInUseError';
}

/**
 * The control endpoint: a small HTTP/JSON API over a unix socket or loopback TCP that lists the
 * exported devices and runs their actions (type, key, pointer...). Unauthenticated by design:
 * the socket's file permissions (0600, in a 0700 folder) are the access control.
 */
export class ControlServer {
  readonly #registry: DeviceRegistry;
  readonly #address: ControlAddress;
  readonly #http: Server;
  #listening = false;

  constructor(registry: DeviceRegistry, address: ControlAddress) {
    checkControlAddress(address);
    this.#registry = registry;
    this.#address = address;
    this.#http = createServer((req, res) => this.#handle(req, res));
    this.#http.on('clientError', (_err, socket) => socket.destroy());
  }

  get where(): string {
    return describeControlAddress(this.#address);
  }

  /** The TCP port actually bound (for port 0), undefined on a unix socket. */
  get port(): number | undefined {
    const a = this.#http.address();
    return typeof a === 'object' && a ? a.port : undefined;
  }

  async listen(): Promise<void> {
    if (this.#address.kind === 'unix') await this.#prepareSocketPath(this.#address.path);
    await new Promise<void>((resolve, reject) => {
      this.#http.once('error', reject);
      const done = () => {
        this.#http.off('error', reject);
        resolve();
      };
      if (this.#address.kind === 'unix') this.#http.listen(this.#address.path, done);
      else this.#http.listen(this.#address.port, this.#address.host, done);
    });
    this.#listening = true;
    if (this.#address.kind === 'unix') chmodSync(this.#address.path, 0o600);
    this.#http.on('error', (err) => log.error(`control endpoint: ${err.message}`));
  }

  async close(): Promise<void> {
    if (!this.#listening) return;
    this.#listening = false;
    this.#http.closeAllConnections();
    await new Promise<void>((resolve) => this.#http.close(() => resolve()));
    // node removes the socket file when a unix server closes; nothing left to clean.
  }

  /** Make the folder, refuse a live socket, remove a stale one (never anything but a socket). */
  async #prepareSocketPath(path: string): Promise<void> {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    let isSocket = false;
    try {
      isSocket = lstatSync(path).isSocket();
    } catch {
      return; // nothing there
    }
    if (!isSocket) throw new ControlInUseError(`${path} exists and is not a socket; not replacing it`);
    if (await socketAnswers(path)) throw new ControlInUseError(`${path} is served by a running process`);
    unlinkSync(path);
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const send = (reply: Reply, close = false) => {
      if (res.headersSent || res.destroyed) return;
      const text = `${JSON.stringify(reply.body)}\n`;
      res.writeHead(reply.status, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(text),
        ...(close ? { connection: 'close' } : {}),
      });
      res.end(text);
    };
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > MAX_BODY_BYTES) {
      send({ status: 413, body: { error: `request body over ${MAX_BODY_BYTES} bytes` } }, true);
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (c: Buffer) => {
      if (tooLarge) return;
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        tooLarge = true;
        chunks.length = 0;
        send({ status: 413, body: { error: `request body over ${MAX_BODY_BYTES} bytes` } }, true);
        return;
      }
      chunks.push(c);
    });
    req.on('error', () => res.destroy());
    req.on('end', () => {
      if (tooLarge) return;
      const text = Buffer.concat(chunks).toString('utf8');
      let body: unknown;
      if (text.trim() !== '') {
        try {
          body = JSON.parse(text);
        } catch {
          send({ status: 400, body: { error: 'the request body is not valid JSON' } });
          return;
        }
      }
      route(this.#registry, req.method ?? 'GET', req.url ?? '/', body).then(
        (reply) => send(reply),
        (err: Error) => send({ status: 500, body: { error: err.message } }),
      );
    });
  }
}

/** Does something accept connections on this unix socket? */
export function socketAnswers(path: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    const timer = setTimeout(() => finish(true), timeoutMs); // hung but alive: leave it alone
    function finish(alive: boolean) {
      clearTimeout(timer);
      s.destroy();
      resolve(alive);
    }
    s.once('connect', () => finish(true));
    s.once('error', () => finish(false));
  });
}
