import { EventEmitter } from 'node:events';
import type net from 'node:net';
import type { ConnectSecurity } from '../../transport/credentials.js';
import { connectSecure } from '../../transport/secure.js';
import { listenTcp, remoteName } from '../../transport/tcp.js';
import type { DeviceSource, DeviceSourceEvents } from '../../usb/source.js';
import { formatHostPort, type HostPort } from '../../util/host-port.js';
import { createLogger, type Logger } from '../../util/log.js';
import { UsbredirClientConnection } from './connection.js';

const DEFAULT_TIMEOUT_MS = 10_000;

function startConnection(
  source: EventEmitter<DeviceSourceEvents>,
  socket: net.Socket,
  where: string,
  log: Logger,
  timeoutMs: number,
): UsbredirClientConnection {
  socket.setNoDelay(true);
  const connection = new UsbredirClientConnection(socket, { where: `usbredir ${where}`, logger: log, timeoutMs });
  connection.on('device', (device) => source.emit('device', device));
  connection.start();
  return connection;
}

export interface UsbredirConnectSourceOptions {
  address: HostPort;
  /** TLS to the usbredir host (usbredir+tls://); plain TCP without. */
  security?: ConnectSecurity | undefined;
  logger?: Logger;
  /** Connect, hello, descriptor read and cancel timeout (default 10 s). */
  timeoutMs?: number;
  /** First retry delay (default 1 s); doubles up to maxRetryMs (30 s), back to it after a session that worked. */
  minRetryMs?: number;
  maxRetryMs?: number;
}

/**
 * usbredir://HOST:PORT: connect to a usbredir host that listens (`usbredirect --as HOST:PORT`),
 * and connect again with backoff whenever the connection ends.
 */
export class UsbredirConnectSource extends EventEmitter<DeviceSourceEvents> implements DeviceSource {
  readonly description: string;
  readonly #address: HostPort;
  readonly #security: ConnectSecurity | undefined;
  readonly #log: Logger;
  readonly #timeoutMs: number;
  readonly #minRetryMs: number;
  readonly #maxRetryMs: number;
  #connection: UsbredirClientConnection | undefined;
  #stopped = false;
  #loop: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #wake: (() => void) | undefined;
  /** A connect attempt is in progress (it cannot be aborted; its socket is dropped when it lands). */
  #connecting = false;

  constructor(opts: UsbredirConnectSourceOptions) {
    super();
    this.#address = { host: opts.address.host, port: opts.address.port };
    this.#security = opts.security;
    this.description = `usbredir${opts.security ? '+tls' : ''}://${formatHostPort(this.#address)}`;
    this.#log = opts.logger ?? createLogger(this.description);
    this.#timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#minRetryMs = opts.minRetryMs ?? 1000;
    this.#maxRetryMs = opts.maxRetryMs ?? 30_000;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  async close(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#wake?.();
    await this.#connection?.close();
    if (!this.#connecting) await this.#loop;
  }

  async #run(): Promise<void> {
    const where = formatHostPort(this.#address);
    let delay = this.#minRetryMs;
    while (!this.#stopped) {
      let worked = false;
      try {
        this.#connecting = true;
        const socket = await connectSecure(this.#address, this.#security, this.#timeoutMs).finally(() => {
          this.#connecting = false;
        });
        if (this.#stopped) {
          socket.destroy();
          break;
        }
        this.#log.debug(`connected to usbredir host ${where}, waiting for its hello`);
        const connection = startConnection(this, socket, where, this.#log, this.#timeoutMs);
        this.#connection = connection;
        await connection.closed;
        this.#connection = undefined;
        worked = connection.devicesReady > 0;
        // A forwarder (QEMU hostfwd, ssh -L) accepts even when nothing listens behind it: quiet then.
        if (worked) this.#log.info(`connection to ${where} ended`);
        else this.#log.debug(`connection to ${where} ended before a device was ready`);
      } catch (err) {
        this.#log.debug((err as Error).message);
      }
      if (this.#stopped) break;
      if (worked) delay = this.#minRetryMs;
      this.#log.debug(`reconnecting to ${where} in ${delay} ms`);
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        this.#timer = setTimeout(resolve, delay);
      });
      this.#wake = undefined;
      delay = Math.min(this.#maxRetryMs, delay * 2);
    }
  }
}

export interface UsbredirListenSourceOptions {
  address: HostPort;
  logger?: Logger;
  /** Hello, descriptor read and cancel timeout (default 10 s). */
  timeoutMs?: number;
}

/**
 * usbredir-listen://HOST:PORT: listen; every usbredir host that connects (`usbredirect --to
 * HOST:PORT`) brings its device(s).
 */
export class UsbredirListenSource extends EventEmitter<DeviceSourceEvents> implements DeviceSource {
  readonly description: string;
  readonly #address: HostPort;
  readonly #log: Logger;
  readonly #timeoutMs: number;
  readonly #connections = new Set<UsbredirClientConnection>();
  #server: net.Server | undefined;
  #listening: Promise<void> | undefined;
  #stopped = false;

  constructor(opts: UsbredirListenSourceOptions) {
    super();
    this.#address = { host: opts.address.host, port: opts.address.port };
    this.description = `usbredir-listen://${formatHostPort(this.#address)}`;
    this.#log = opts.logger ?? createLogger(this.description);
    this.#timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /** The bound address once listening (the real port when asked for port 0). */
  get address(): HostPort | undefined {
    const a = this.#server?.address();
    return a && typeof a === 'object' ? { host: a.address, port: a.port } : undefined;
  }

  /** Resolves once listening (or once listening failed, which is logged). */
  get listening(): Promise<void> {
    return this.#listening ?? Promise.resolve();
  }

  start(): void {
    this.#listening ??= this.#listen();
  }

  async close(): Promise<void> {
    this.#stopped = true;
    await this.#listening;
    const server = this.#server;
    this.#server = undefined;
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    await Promise.all([...this.#connections].map((c) => c.close()));
    await closed;
  }

  async #listen(): Promise<void> {
    try {
      const server = await listenTcp(this.#address, (socket) => this.#accept(socket));
      if (this.#stopped) {
        server.close();
        return;
      }
      this.#server = server;
      const a = this.address;
      this.#log.info(`listening for usbredir hosts on ${formatHostPort(a ?? this.#address)}`);
    } catch (err) {
      this.#log.error(`cannot listen on ${formatHostPort(this.#address)}: ${(err as Error).message}`);
    }
  }

  #accept(socket: net.Socket): void {
    if (this.#stopped) {
      socket.destroy();
      return;
    }
    const peer = remoteName(socket);
    this.#log.info(`usbredir host ${peer} connected`);
    const connection = startConnection(this, socket, peer, this.#log.child(peer), this.#timeoutMs);
    this.#connections.add(connection);
    void connection.closed.then(() => {
      this.#connections.delete(connection);
      this.#log.info(`usbredir host ${peer} disconnected`);
    });
  }
}
