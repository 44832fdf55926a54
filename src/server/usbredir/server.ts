import type net from 'node:net';
import type { ConnectSecurity, ListenSecurity } from '../../transport/credentials.js';
import { describePeer, type PeerIdentity, peerIdentity } from '../../transport/peer.js';
import {
  type Accepted,
  connectSecure,
  describeSecurity,
  exposureWarning,
  listenSecure,
  QEMU_TLS_RECORD,
} from '../../transport/secure.js';
import { remoteName } from '../../transport/tcp.js';
import type { UsbDevice } from '../../usb/device.js';
import { formatHostPort, type HostPort } from '../../util/host-port.js';
import { createLogger, type Logger } from '../../util/log.js';
import { AccessPolicy, clientIdentity, describeClient } from '../access.js';
import { ConnectionGate } from '../connection-gate.js';
import { type ConnectionLimits, resolveLimits, type ServerLimits } from '../limits.js';
import { type DeviceRegistry, type ExportedDevice, entryName, type PresentDevice } from '../registry.js';
import { UsbredirHostSession, type UsbredirHostSessionOptions } from './session.js';

/** Session options a listener or connector passes on, limits (see limits.ts) included. */
export type SessionTuning = Pick<
  UsbredirHostSessionOptions,
  'version' | 'drainTimeoutMs' | 'ackTimeoutMs' | 'maxTransferLength' | keyof ConnectionLimits
>;

/**
 * Run one session for `socket` with `entry`'s device. The registry claim is taken once the
 * guest's hello is in and held for the session's lifetime; a busy device closes the connection.
 */
function startSession(
  registry: DeviceRegistry,
  entry: PresentDevice,
  socket: net.Socket,
  identity: PeerIdentity,
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
  // A remote device that goes away may come back: the guest keeps its connection (and its claim)
  // and gets the successor with a new device_connect.
  const nextDevice =
    entry.origin === undefined
      ? undefined
      : async (previous: UsbDevice, signal: AbortSignal) =>
          (await registry.whenPresent(entry, signal, previous))?.device;
  const session = new UsbredirHostSession(socket, {
    device: entry.device,
    peer,
    identity,
    logger: log.child(peer),
    claim,
    ...(nextDevice ? { nextDevice } : {}),
    ...tuning,
  });
  session.once('release', () => registry.release(entry, owner));
  session.start();
  return session;
}

export interface ListenerOptions
  extends SessionTuning,
    Pick<ServerLimits, 'maxConnections' | 'maxConnectionsPerAddress'> {
  /** Which client may use the device (default: everyone). */
  access?: AccessPolicy;
  /** Connection counts shared with the process's other listeners (default: this listener's own). */
  gate?: ConnectionGate;
  /** TLS (certificates or PSK); plain TCP without. */
  security?: ListenSecurity | undefined;
}

/** Guests that connected while a remote device is away and wait for it, per listener. */
const MAX_WAITING = 8;

/**
 * --usbredir HOST:PORT[=BUSID]: listen; each guest that connects gets the device when it is free.
 * While a remote device is away a guest's connection is held (unread) until the device is back.
 */
export class UsbredirListener {
  readonly #registry: DeviceRegistry;
  readonly #entry: ExportedDevice;
  readonly #address: HostPort;
  readonly #tuning: SessionTuning;
  readonly #security: ListenSecurity | undefined;
  readonly #access: AccessPolicy;
  readonly #gate: ConnectionGate;
  readonly #log: Logger;
  readonly #sessions = new Set<UsbredirHostSession>();
  readonly #waiting = new Set<AbortController>();
  #server: net.Server | undefined;

  constructor(registry: DeviceRegistry, entry: ExportedDevice, address: HostPort, options: ListenerOptions = {}) {
    const { access, gate, maxConnections, maxConnectionsPerAddress, security, ...tuning } = options;
    this.#registry = registry;
    this.#entry = entry;
    this.#address = { host: address.host, port: address.port };
    this.#tuning = tuning;
    this.#security = security;
    this.#log = createLogger('usbredir');
    this.#access = access ?? AccessPolicy.open;
    this.#gate = gate ?? new ConnectionGate({ maxConnections, maxConnectionsPerAddress }, this.#log);
  }

  /** Bound address (useful with port 0). */
  get address(): net.AddressInfo | undefined {
    const a = this.#server?.address();
    return a && typeof a === 'object' ? a : undefined;
  }

  async listen(): Promise<void> {
    const { handshakeTimeoutMs } = resolveLimits(this.#tuning);
    const security = this.#security;
    this.#server = await listenSecure(this.#address, (c) => void this.#accept(c), {
      security,
      handshakeTimeoutMs,
      log: this.#log,
      maxSendFragment: QEMU_TLS_RECORD,
      admit: (raw) => this.#gate.admit(raw, 'usbredir'),
    });
    const a = this.address;
    const where = a ? formatHostPort({ host: a.address, port: a.port }) : formatHostPort(this.#address);
    this.#log.info(`listening for usbredir guests on ${where} (${describeSecurity(security)})`);
    const exposed = exposureWarning(where, a?.address ?? this.#address.host, security, 'take the device and use it');
    if (exposed) this.#log.warn(exposed);
  }

  async #accept({ socket, peer, handshakeMs }: Accepted): Promise<void> {
    this.#log.info(`connection from ${describePeer(peer)}`);
    const client = clientIdentity(socket, peer);
    if (!this.#access.allows(client, this.#entry.busid)) {
      // Before the hello: a guest that may not use the device learns nothing about it.
      this.#log.warn(`${remoteName(socket)}: ${describeClient(client)} may not use ${this.#entry.busid}, closing`);
      socket.on('error', () => {});
      socket.destroy();
      return;
    }
    const entry = await this.#waitForDevice(socket);
    if (!entry) return;
    // The TLS handshake counts into the opening exchange's time.
    const limit = resolveLimits(this.#tuning).handshakeTimeoutMs;
    const tuning = { ...this.#tuning, handshakeTimeoutMs: Math.max(1, Math.ceil(limit - handshakeMs)) };
    const session = startSession(this.#registry, entry, socket, peer, this.#log, tuning);
    this.#sessions.add(session);
    session.once('close', () => this.#sessions.delete(session));
  }

  async #waitForDevice(socket: net.Socket): Promise<PresentDevice | undefined> {
    const entry = this.#entry;
    if (entry.device) return entry as PresentDevice;
    const peer = remoteName(socket);
    if (this.#waiting.size >= MAX_WAITING) {
      this.#log.warn(`${peer}: ${entryName(entry)}; ${MAX_WAITING} guests already wait for it, closing`);
      socket.destroy();
      return undefined;
    }
    this.#log.info(`${peer}: ${entryName(entry)}; holding the connection until it is`);
    const waiter = new AbortController();
    this.#waiting.add(waiter);
    const onClose = () => waiter.abort();
    socket.on('error', () => {});
    socket.once('close', onClose);
    const present = await this.#registry.whenPresent(entry, waiter.signal);
    this.#waiting.delete(waiter);
    socket.off('close', onClose);
    if (!present) socket.destroy();
    return present;
  }

  /** Stop listening, detach the device from every guest and close their connections. */
  async close(): Promise<void> {
    for (const waiter of this.#waiting) waiter.abort();
    const server = this.#server;
    this.#server = undefined;
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    await Promise.all([...this.#sessions].map((s) => s.close()));
    await closed;
  }
}

export interface ConnectorOptions extends SessionTuning {
  /** TLS to the guest (QEMU's chardev with tls-creds, endpoint=server); plain TCP without. */
  security?: ConnectSecurity | undefined;
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
    this.#stop.abort();
    clearTimeout(this.#timer);
    this.#wake?.();
    await this.#session?.close();
    await this.#loop;
  }

  #wake: (() => void) | undefined;
  readonly #stop = new AbortController();

  /** A remote device that is away: connect to the guest only once it is back. */
  #waitForDevice(): Promise<PresentDevice | undefined> {
    if (!this.#entry.device) this.#log.info(`${entryName(this.#entry)}; connecting once it is`);
    return this.#registry.whenPresent(this.#entry, this.#stop.signal);
  }

  async #run(): Promise<void> {
    const min = this.#opts.minRetryMs ?? 1000;
    const max = this.#opts.maxRetryMs ?? 30_000;
    const target = formatHostPort(this.#address);
    while (!this.#stopped) {
      let worked = false;
      try {
        const entry = await this.#waitForDevice();
        if (!entry) break;
        const socket = await connectSecure(this.#address, this.#opts.security, undefined, QEMU_TLS_RECORD);
        if (this.#stopped) {
          socket.destroy();
          break;
        }
        const peer = peerIdentity(socket);
        this.#log.info(`connected to usbredir guest ${describePeer(peer)}`);
        const session = startSession(this.#registry, entry, socket, peer, this.#log, this.#opts);
        this.#session = session;
        const started = Date.now();
        await session.done;
        this.#session = undefined;
        worked = Date.now() - started > 5000;
        this.#log.info(`connection to ${target} ended`);
      } catch (err) {
        // A TLS failure is a credentials problem someone has to fix, not a guest that is not up yet.
        const message = (err as Error).message;
        this.#log[message.startsWith('TLS ') ? 'warn' : 'debug'](message);
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
