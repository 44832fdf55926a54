import net from 'node:net';
import { formatHostPort, type HostPort } from '../util/host-port.js';
import { createLogger, type Logger } from '../util/log.js';
import { type Clock, delayPipe, type LinkOptions } from './delay-pipe.js';
import { ProxyListener } from './proxy-listener.js';
import { remoteName, tuneSocket } from './tcp.js';

export interface DelayProxyOptions {
  listen: HostPort;
  to: HostPort;
  /** Client → server. */
  up: LinkOptions;
  /** Server → client. */
  down: LinkOptions;
  connectTimeoutMs?: number;
  clock?: Clock;
  logger?: Logger;
}

/** A TCP proxy that adds one-way delay and an optional bandwidth cap each way: netem in userspace. */
export class DelayProxy {
  readonly #opts: DelayProxyOptions;
  readonly #log: Logger;
  readonly #listener = new ProxyListener('DelayProxy');

  constructor(opts: DelayProxyOptions) {
    this.#opts = opts;
    this.#log = opts.logger ?? createLogger('delay-proxy');
  }

  async listen(): Promise<HostPort> {
    const bound = await this.#listener.listen(this.#opts.listen, (s) => void this.#accept(s));
    const { up, down } = this.#opts;
    this.#log.info(
      `listening on ${formatHostPort(bound)}, relaying to ${formatHostPort(this.#opts.to)} ` +
        `(up ${describeLink(up)}, down ${describeLink(down)})`,
    );
    return bound;
  }

  get address(): HostPort {
    return this.#listener.address;
  }

  /** Stop accepting and cut every connection. */
  close(): Promise<void> {
    return this.#listener.close();
  }

  async #accept(client: net.Socket): Promise<void> {
    const name = remoteName(client);
    const started = performance.now();
    client.pause();
    client.on('error', () => {});
    let target: net.Socket;
    try {
      target = await connectHalfOpen(this.#opts.to, this.#opts.connectTimeoutMs ?? 10_000);
    } catch (err) {
      this.#log.warn(`${name}: ${(err as Error).message}; closing`);
      // A reset, as the client would have had from the server itself.
      client.resetAndDestroy();
      return;
    }
    if (client.destroyed || !this.#listener.listening) {
      target.destroy();
      client.destroy();
      return;
    }
    this.#listener.track(target);
    const { up, down, clock } = this.#opts;
    delayPipe(client, target, { up, down, clock }, (r) => {
      const seconds = ((performance.now() - started) / 1000).toFixed(3);
      const line = `${name}: closed after ${seconds} s, ${r.up} bytes up, ${r.down} bytes down`;
      if (r.error) this.#log.warn(`${line} (${r.error.message})`);
      else this.#log.info(line);
    });
  }
}

export function describeLink(link: LinkOptions): string {
  const rate = link.bytesPerSecond === undefined ? '' : ` at ${((link.bytesPerSecond * 8) / 1e6).toFixed(3)} Mbit/s`;
  return `${link.delayMs} ms${rate}`;
}

/** Connect with allowHalfOpen: the server's FIN must not end our side while delayed data is still due. */
function connectHalfOpen(address: HostPort, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: address.host, port: address.port, allowHalfOpen: true });
    socket.pause();
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`connect to ${formatHostPort(address)} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    const onError = (err: Error) => {
      clearTimeout(timer);
      reject(new Error(`connect to ${formatHostPort(address)}: ${err.message}`, { cause: err }));
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.off('error', onError);
      tuneSocket(socket);
      resolve(socket);
    });
  });
}
