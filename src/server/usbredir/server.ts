import type net from 'node:net';
import { connectTcp, listenTcp, remoteName } from '../../transport/tcp.js';
import { formatHostPort, type HostPort } from '../../util/host-port.js';
import { createLogger, type Logger } from '../../util/log.js';
import type { ConnectionLimits } from '../limits.js';
import type { DeviceRegistry, ExportedDevice } from '../registry.js';
import { UsbredirHostSession, type UsbredirHostSessionOptions } from './session.js';

/** Session options a listener or connector passes on, limits (see limits.ts) included. */
export type SessionTuning = Pick<
  UsbredirHostSessionOptions,
  'version' | 'drainTimeoutMs' | 'ackTimeoutMs' | keyof ConnectionLimits
>;

/**
 * Run one session for `socket` with `entry`'s device. The registry claim is taken once the
 * guest's hello is in and held for the session's lifetime; a busy device closes the connection.
 */
function startSession(
  registry: DeviceRegistry,
  entry: ExportedDevice,
  socket: net.Socket,
  log: Logger,
  tuning: SessionTuning,
): UsbredirHostSession {
  const peer = remoteName(socket);
  const owner = `usbredir ${peer}`;
  const drop = () => {
    log.info(`${peer}: ${entry.busid} detached by the operator, closing`);
    socket.destroy();
  };
  const claim = () => {
    if (registry.claim(entry, owner, drop)) return true;
    // A usbredir guest such as QEMU with reconnect= simply tries again later.
    log.info(`${peer}: device ${entry.busid} is in use by ${entry.owner}, closing`);
    return false;
  };
  const session = new UsbredirHostSession(socket, {
    device: entry.device,
    peer,
    logger: log.child(peer),
    claim,
    ...tuning,
  });
  session.once('release', () => registry.release(entry, owner));
  session.start();
  return session;
}

/** --usbredir HOST:PORT[=BUSID]: listen; each guest that connects gets the device when it is free. */
export class UsbredirListener {
  readonly #registry: DeviceRegistry;
  readonly #entry: ExportedDevice;
  readonly #address: HostPort;
  readonly #tuning: SessionTuning;
  readonly #log: Logger;
  readonly #sessions = new Set<UsbredirHostSession>();
  #server: net.Server | undefined;

  constructor(registry: DeviceRegistry, entry: ExportedDevice, address: HostPort, tuning: SessionTuning = {}) {
    this.#registry = registry;
    this.#entry = entry;
    this.#address = { host: address.host, port: address.port };
    this.#tuning = tuning;
    this.#log = createLogger('usbredir');
  }

  /** Bound address (useful with port 0). */
  get address(): net.AddressInfo | undefined {
    const a = this.#server?.address();
    return a && typeof a === 'object' ? a : undefined;
  }

  async listen(): Promise<void> {
    this.#server = await listenTcp(this.#address, (socket) => {
      const session = startSession(this.#registry, this.#entry, socket, this.#log, this.#tuning);
      this.#sessions.add(session);
      session.once('close', () => this.#sessions.delete(session));
    });
    const a = this.address;
    const where = a ? formatHostPort({ host: a.address, port: a.port }) : formatHostPort(this.#address);
    this.#log.info(`listening for usbredir guests on ${where}`);
  }

  /** Stop listening, detach the device from every guest and close their connections. */
  async close(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    await Promise.all([...this.#sessions].map((s) => s.close()));
    await closed;
  }
}

export interface ConnectorOptions extends SessionTuning {
  /** First retry delay; doubles up to maxRetryMs, back to the minimum after a session that worked. */
  minRetryMs?: number;
  maxRetryMs?: number;
}

/** --usbredir-connect HOST:PORT[=BUSID]: connect out to a listening guest, reconnect when dropped. */
export class UsbredirConnector {
  readonly #registry: DeviceRegistry;
  readonly #entry: ExportedDevice;
  readonly #address: HostPort;
  readonly #opts: ConnectorOptions;
  readonly #log: Logger;
  #session: UsbredirHostSession | undefined;
  #stopped = false;
  #timer: NodeJS.Timeout | undefined;
  #delay: number;
  #loop: Promise<void> | undefined;

  constructor(registry: DeviceRegistry, entry: ExportedDevice, address: HostPort, opts: ConnectorOptions = {}) {
    this.#registry = registry;
    this.#entry = entry;
    this.#address = { host: address.host, port: address.port };
    this.#opts = opts;
    this.#delay = opts.minRetryMs ?? 1000;
    this.#log = createLogger('usbredir-connect');
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  /** Stop reconnecting, detach the device from the guest and close the connection. */
  async close(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#wake?.();
    await this.#session?.close();
    await this.#loop;
  }

  #wake: (() => void) | undefined;

  async #run(): Promise<void> {
    const min = this.#opts.minRetryMs ?? 1000;
    const max = this.#opts.maxRetryMs ?? 30_000;
    const target = formatHostPort(this.#address);
    while (!this.#stopped) {
      let worked = false;
      try {
        const socket = await connectTcp(this.#address);
        if (this.#stopped) {
          socket.destroy();
          break;
        }
        this.#log.info(`connected to usbredir guest ${target}`);
        const session = startSession(this.#registry, this.#entry, socket, this.#log, this.#opts);
        this.#session = session;
        const started = Date.now();
        await session.done;
        this.#session = undefined;
        worked = Date.now() - started > 5000;
        this.#log.info(`connection to ${target} ended`);
      } catch (err) {
        this.#log.debug((err as Error).message);
      }
      if (this.#stopped) break;
      this.#delay = worked ? min : Math.min(max, this.#delay === 0 ? min : this.#delay);
      this.#log.debug(`reconnecting to ${target} in ${this.#delay} ms`);
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        this.#timer = setTimeout(resolve, this.#delay);
      });
      this.#wake = undefined;
      this.#delay = Math.min(max, this.#delay * 2);
    }
  }
}
