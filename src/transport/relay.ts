import type net from 'node:net';
import { formatHostPort, type HostPort } from '../util/host-port.js';
import { createLogger, type Logger } from '../util/log.js';
import type { ConnectSecurity } from './credentials.js';
import { describePeer, isLoopback, peerIdentity } from './peer.js';
import { ProxyListener } from './proxy-listener.js';
import { connectSecure } from './secure.js';
import { remoteName } from './tcp.js';

export interface TunnelOptions {
  /** Plain TCP in (usbip attach -r 127.0.0.1 connects here). */
  listen: HostPort;
  /** TLS out. */
  to: HostPort;
  security: ConnectSecurity;
  /** TCP connect + TLS handshake to `to` (default 10 s). */
  timeoutMs?: number;
  logger?: Logger;
}

/**
 * Plain TCP in, TLS out, byte for byte: one TLS connection per accepted connection, for as long
 * as either end keeps it. For the kernel's USB/IP client, which cannot speak TLS: `usbip attach`
 * hands its socket to vhci-hcd, and the relay goes on carrying that connection.
 */
export class Tunnel {
  readonly #opts: TunnelOptions;
  readonly #log: Logger;
  readonly #listener = new ProxyListener('Tunnel');

  constructor(opts: TunnelOptions) {
    this.#opts = opts;
    this.#log = opts.logger ?? createLogger('tunnel');
  }

  async listen(): Promise<HostPort> {
    const bound = await this.#listener.listen(this.#opts.listen, (s) => void this.#accept(s));
    const where = formatHostPort(bound);
    this.#log.info(`listening on ${where}, relaying to tls://${formatHostPort(this.#opts.to)}`);
    if (!isLoopback(bound.host)) {
      this.#log.warn(
        `${where} is not a loopback address: anyone who can reach it uses the server with this tunnel's credentials`,
      );
    }
    return bound;
  }

  get address(): HostPort {
    return this.#listener.address;
  }

  /** Stop accepting and cut every relayed connection. */
  close(): Promise<void> {
    return this.#listener.close();
  }

  async #accept(plain: net.Socket): Promise<void> {
    const name = remoteName(plain);
    // Whatever the client sends first waits in the socket until TLS is up.
    plain.pause();
    plain.on('error', () => {});
    let secure: net.Socket;
    try {
      secure = await connectSecure(this.#opts.to, this.#opts.security, this.#opts.timeoutMs);
    } catch (err) {
      this.#log.warn(`${name}: ${(err as Error).message}; closing`);
      plain.destroy();
      return;
    }
    if (plain.destroyed || !this.#listener.listening) {
      secure.destroy();
      plain.destroy();
      return;
    }
    this.#listener.track(secure);
    this.#log.info(`${name} → ${describePeer(peerIdentity(secure))}`);
    relay(plain, secure, (err) => {
      const counts = `${plain.bytesRead} bytes out, ${plain.bytesWritten} bytes back`;
      if (err) this.#log.warn(`${name}: ${err.message}; closed (${counts})`);
      else this.#log.info(`${name}: closed (${counts})`);
    });
  }
}

/**
 * Copy both ways with back-pressure; an end is passed on as an end (half-close), an error or
 * reset on either side cuts both. `done` is called once, when both sockets are closed.
 */
export function relay(a: net.Socket, b: net.Socket, done: (err?: Error) => void): void {
  let failure: Error | undefined;
  const cut = (err: Error) => {
    failure ??= err;
    a.destroy();
    b.destroy();
  };
  a.on('error', cut);
  b.on('error', cut);
  a.pipe(b);
  b.pipe(a);
  // A side that closed without an end (destroyed) ends the other one too.
  a.once('close', () => b.end());
  b.once('close', () => a.end());
  let open = 2;
  const closed = () => {
    if (--open === 0) done(failure);
  };
  a.once('close', closed);
  b.once('close', closed);
  a.resume();
}
