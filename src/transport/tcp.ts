import net from 'node:net';
import { formatHostPort, type HostPort } from '../util/host-port.js';
import { createLogger } from '../util/log.js';
import { applyPeerTimeout } from './peer-timeout.js';

const log = createLogger('tcp');

/** TCP_NODELAY (small PDUs must not wait for Nagle) and keepalive: a vanished peer must not hold a device forever. */
export function tuneSocket(socket: net.Socket): void {
  socket.setNoDelay(true);
  applyPeerTimeout(socket);
}

export function remoteName(socket: net.Socket): string {
  const host = socket.remoteAddress ?? '?';
  return host.includes(':') ? `[${host}]:${socket.remotePort}` : `${host}:${socket.remotePort}`;
}

/**
 * Listen on an address; resolves once bound (port 0 picks a free port, see server.address()).
 * allowHalfOpen: a peer's FIN does not end our side (a relay forwards it instead).
 */
export function listenTcp(
  address: HostPort,
  onConnection: (socket: net.Socket) => void,
  opts: { allowHalfOpen?: boolean } = {},
): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer({ noDelay: true, allowHalfOpen: opts.allowHalfOpen ?? false });
    server.on('connection', (socket) => {
      tuneSocket(socket);
      onConnection(socket);
    });
    server.once('error', reject);
    server.listen(address.port, address.host, () => {
      server.off('error', reject);
      // Accept failures (e.g. EMFILE) after start-up must not bring the process down.
      server.on('error', (err) => log.error(`listener ${formatHostPort(address)}: ${err.message}`));
      resolve(server);
    });
  });
}

export function connectTcp(address: HostPort, timeoutMs = 10_000): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: address.host, port: address.port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`connect to ${formatHostPort(address)} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.off('error', onError);
      tuneSocket(socket);
      resolve(socket);
    });
    const onError = (err: Error) => {
      clearTimeout(timer);
      reject(new Error(`connect to ${formatHostPort(address)}: ${err.message}`, { cause: err }));
    };
    socket.once('error', onError);
  });
}
