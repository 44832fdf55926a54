import type { AddressInfo, Server } from 'node:net';
import { USBIP_DEFAULT_PORT } from '../../protocol/usbip/constants.js';
import type { ListenSecurity } from '../../transport/credentials.js';
import { type Accepted, describeSecurity, exposureWarning, listenSecure } from '../../transport/secure.js';
import { formatHostPort, type HostPort } from '../../util/host-port.js';
import { createLogger, type Logger } from '../../util/log.js';
import { type AccessPolicy, clientIdentity } from '../access.js';
import { ConnectionGate } from '../connection-gate.js';
import { resolveLimits, type ServerLimits } from '../limits.js';
import type { DeviceRegistry } from '../registry.js';
import { UsbipConnection } from './connection.js';

/** Limits (in-flight caps, OP_REQ timeout): see limits.ts for what they bound and their defaults. */
export interface UsbipServerOptions extends ServerLimits {
  logger?: Logger;
  /** TLS (certificates or PSK); plain TCP without. */
  security?: ListenSecurity | undefined;
  /** Which client may list and import which device (default: everyone, everything). */
  access?: AccessPolicy;
  /** Connection counts shared with the process's other listeners (default: this server's own). */
  gate?: ConnectionGate;
}

/** USB/IP server (usbipd equivalent) exporting the devices of a DeviceRegistry. */
export class UsbipServer {
  readonly #registry: DeviceRegistry;
  readonly #address: HostPort;
  readonly #options: UsbipServerOptions;
  readonly #log: Logger;
  readonly #connections = new Set<UsbipConnection>();
  #server: Server | undefined;

  constructor(
    registry: DeviceRegistry,
    address: HostPort = { host: '0.0.0.0', port: USBIP_DEFAULT_PORT },
    options: UsbipServerOptions = {},
  ) {
    this.#registry = registry;
    this.#address = address;
    this.#options = options;
    this.#log = options.logger ?? createLogger('usbip-server');
  }

  /** Start listening; returns the bound address (useful with port 0). */
  async listen(): Promise<HostPort> {
    if (this.#server) throw new Error('UsbipServer is already listening');
    const { handshakeTimeoutMs } = resolveLimits(this.#options);
    const { security } = this.#options;
    const gate = this.#options.gate ?? new ConnectionGate(this.#options, this.#log);
    const onConnection = ({ socket, peer, handshakeMs }: Accepted) => {
      // The TLS handshake counts into the opening exchange's time.
      const conn = new UsbipConnection(socket, this.#registry, this.#log, {
        ...this.#options,
        handshakeTimeoutMs: Math.max(1, Math.ceil(handshakeTimeoutMs - handshakeMs)),
        peer,
        client: clientIdentity(socket, peer),
      });
      this.#connections.add(conn);
      conn.closed.then(() => this.#connections.delete(conn));
    };
    this.#server = await listenSecure(this.#address, onConnection, {
      security,
      handshakeTimeoutMs,
      log: this.#log,
      admit: (raw) => gate.admit(raw, 'USB/IP'),
    });
    const bound = this.address;
    const where = formatHostPort(bound);
    this.#log.info(`listening on ${where} (${describeSecurity(security)})`);
    const exposed = exposureWarning(
      where,
      bound.host,
      security,
      'list the devices, import them and read or write them',
    );
    if (exposed) this.#log.warn(exposed);
    return bound;
  }

  get address(): HostPort {
    const a = this.#server?.address() as AddressInfo | null | undefined;
    if (!a) throw new Error('UsbipServer is not listening');
    return { host: a.address, port: a.port };
  }

  /** Stop accepting, close every connection and wait until their devices are released. */
  async close(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    const closing = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    const conns = [...this.#connections];
    for (const c of conns) c.destroy();
    await Promise.all([closing, ...conns.map((c) => c.closed)]);
  }
}
