import type net from 'node:net';
import type { HostPort } from '../util/host-port.js';
import { listenTcp } from './tcp.js';

/** A TCP listener that keeps the sockets of its connections, so that closing it cuts them all. */
export class ProxyListener {
  readonly #what: string;
  readonly #sockets = new Set<net.Socket>();
  #server: net.Server | undefined;

  /** `what` names the owner in errors ("Tunnel is not listening"). */
  constructor(what: string) {
    this.#what = what;
  }

  /** Listen with allowHalfOpen (a proxy passes a FIN on itself); accepted sockets are tracked. */
  async listen(address: HostPort, onConnection: (socket: net.Socket) => void): Promise<HostPort> {
    this.#server = await listenTcp(
      address,
      (s) => {
        this.track(s);
        onConnection(s);
      },
      { allowHalfOpen: true },
    );
    return this.address;
  }

  get listening(): boolean {
    return this.#server !== undefined;
  }

  get address(): HostPort {
    const a = this.#server?.address();
    if (!a || typeof a !== 'object') throw new Error(`${this.#what} is not listening`);
    return { host: a.address, port: a.port };
  }

  /** Cut with the listener: the outgoing side of a connection. */
  track(s: net.Socket): void {
    this.#sockets.add(s);
    s.once('close', () => this.#sockets.delete(s));
  }

  /** Stop accepting and cut every connection. */
  async close(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const s of this.#sockets) s.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
