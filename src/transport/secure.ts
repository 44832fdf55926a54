import { constants } from 'node:crypto';
import type net from 'node:net';
import { isIP } from 'node:net';
import tls from 'node:tls';
import { formatHostPort, type HostPort } from '../util/host-port.js';
import { createLogger, type Logger } from '../util/log.js';
import type { ConnectSecurity, ListenSecurity } from './credentials.js';
import { isLoopback, type PeerIdentity, peerIdentity, recordPskIdentity } from './peer.js';
import { connectTcp, listenTcp, remoteName, tuneSocket } from './tcp.js';

/** TLS 1.3 only: no version or cipher-suite downgrade to negotiate or audit. */
const MIN_VERSION = 'TLSv1.3';

/** A connection past its TLS handshake (if any), ready for the protocol. */
export interface Accepted {
  socket: net.Socket;
  peer: PeerIdentity;
  /** Time the TLS handshake took: it counts into the opening exchange's timeout. */
  handshakeMs: number;
}

export interface ListenOptions {
  security?: ListenSecurity | undefined;
  /** Whole TLS handshake, from accept (the protocol's opening exchange gets what is left). */
  handshakeTimeoutMs: number;
  log?: Logger;
  /** Largest TLS record sent (default 16 KiB): see QEMU_TLS_RECORD. */
  maxSendFragment?: number;
  /** Called for each accepted TCP connection before anything else; false: it was closed (e.g. over a limit). */
  admit?: (raw: net.Socket) => boolean;
}

/**
 * Records of at most this much plaintext for a QEMU peer. QEMU 7.2's socket chardev reads 4 KiB
 * at a time and waits for the socket to become readable before reading again, but a larger
 * record has already been taken off the socket whole by GnuTLS: the rest of it waits in GnuTLS
 * until more bytes arrive, which for a request/reply protocol is never (later QEMUs poll
 * GnuTLS's pending data: "io/channel-tls: fix handling of bigger read buffers").
 */
export const QEMU_TLS_RECORD = 4096;

/** For log lines: "TLS, client certificates required", "plain TCP". */
export function describeSecurity(security: ListenSecurity | undefined): string {
  if (!security) return 'plain TCP';
  if (security.kind === 'psk') return 'TLS, pre-shared keys';
  return security.ca ? 'TLS, client certificates required' : 'TLS, server certificate only';
}

/**
 * What anyone who can reach a listener on a non-loopback address can do, when nothing stops them:
 * said once when it starts listening. `what` names it ("import the devices and read or write them").
 */
export function exposureWarning(
  where: string,
  host: string,
  security: ListenSecurity | undefined,
  what: string,
): string | undefined {
  if (isLoopback(host)) return undefined;
  if (!security) {
    return (
      `${where}: listening without TLS on a non-loopback address: anyone who can reach it can ${what}, ` +
      'and the traffic (disk contents, keystrokes) crosses the network unencrypted and unauthenticated; ' +
      'give --tls-cert/--tls-key/--tls-ca or --psk-file'
    );
  }
  if (security.kind === 'x509' && !security.ca) {
    return `${where}: TLS without --tls-ca: the traffic is encrypted, but any client can connect and ${what}`;
  }
  return undefined;
}

/**
 * Listen on `address` and hand over each connection once it is secured: plain TCP at once;
 * TLS after a handshake that proved the peer (a client certificate signed by the CA, or a known
 * PSK). A peer that fails is closed during the handshake with a log line, before any byte of
 * the protocol is sent or read.
 */
export function listenSecure(
  address: HostPort,
  onConnection: (c: Accepted) => void,
  opts: ListenOptions,
): Promise<net.Server> {
  const security = opts.security;
  const admit = opts.admit ?? (() => true);
  if (!security) {
    return listenTcp(address, (socket) => {
      if (admit(socket)) onConnection({ socket, peer: peerIdentity(socket), handshakeMs: 0 });
    });
  }
  const log = opts.log ?? createLogger('tls');
  const server = tls.createServer({
    ...serverOptions(security),
    minVersion: MIN_VERSION,
    handshakeTimeout: opts.handshakeTimeoutMs,
    // No session resumption: every connection proves its certificate or key afresh.
    secureOptions: constants.SSL_OP_NO_TICKET,
  });
  // Accept times by peer address:port, the one key the raw and the TLS socket share.
  const acceptedAt = new Map<string, number>();
  // Turned away before the handshake (admit said no): no second log line for the hang-up.
  const refused = new Set<string>();
  const refusals = new RefusalLog(log);
  server.on('connection', (raw: net.Socket) => {
    const key = remoteName(raw);
    raw.once('close', () => {
      acceptedAt.delete(key);
      refused.delete(key);
    });
    tuneSocket(raw);
    if (!admit(raw)) {
      refused.add(key);
      return;
    }
    acceptedAt.set(key, performance.now());
  });
  server.on('secureConnection', (socket: tls.TLSSocket) => {
    const key = remoteName(socket);
    const handshakeMs = performance.now() - (acceptedAt.get(key) ?? performance.now());
    acceptedAt.delete(key);
    if (security.kind === 'x509' && security.ca && !socket.authorized) {
      const why = socket.authorizationError ? String(socket.authorizationError) : 'no certificate';
      refusals.report(socket, `client certificate not accepted (${why})`);
      socket.destroy();
      return;
    }
    socket.on('error', () => {});
    if (opts.maxSendFragment) socket.setMaxSendFragment(opts.maxSendFragment);
    onConnection({ socket, peer: peerIdentity(socket), handshakeMs });
  });
  server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: tls.TLSSocket) => {
    const key = remoteName(socket);
    if (!refused.has(key)) refusals.report(socket, tlsReason(err));
    // Node leaves the socket open after a handshake timeout.
    socket.destroy();
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => {
      server.off('error', reject);
      server.on('error', (err) => log.error(`listener ${formatHostPort(address)}: ${err.message}`));
      resolve(server);
    });
  });
}

/** A peer refused again for the same reason within this long is counted, not logged. */
const REPEAT_WINDOW_MS = 60_000;

/**
 * One warning per peer address and reason per minute: a misconfigured QEMU with reconnect=1 is
 * refused every second, and its log line would drown everything else. Repeats go to debug and
 * are counted in the next warning.
 */
class RefusalLog {
  readonly #log: Logger;
  readonly #last = new Map<string, { at: number; repeats: number }>();

  constructor(log: Logger) {
    this.#log = log;
  }

  report(socket: net.Socket, reason: string): void {
    const line = `${remoteName(socket)}: refused during the TLS handshake: ${reason}`;
    const key = `${socket.remoteAddress}|${reason}`;
    const now = performance.now();
    const last = this.#last.get(key);
    if (last && now - last.at < REPEAT_WINDOW_MS) {
      last.repeats++;
      this.#log.debug(line);
      return;
    }
    if (this.#last.size > 1000) this.#last.clear();
    this.#last.set(key, { at: now, repeats: 0 });
    const more = last?.repeats ? ` (refused ${last.repeats} more times since the last warning)` : '';
    this.#log.warn(`${line}${more}`);
  }
}

function serverOptions(security: ListenSecurity): tls.TlsOptions {
  if (security.kind === 'psk') {
    const { keys } = security;
    return {
      pskCallback: (socket: tls.TLSSocket, identity: string) => {
        const key = keys.get(identity);
        if (!key) return null;
        recordPskIdentity(socket, identity);
        return key;
      },
    };
  }
  const { cert, key, ca } = security;
  // rejectUnauthorized: false so that a refused certificate is logged (Node would drop it silently);
  // the check is done in 'secureConnection', before the socket reaches the protocol.
  return ca ? { cert, key, ca, requestCert: true, rejectUnauthorized: false } : { cert, key };
}

/** OpenSSL's reason without its error-stack prefix: "tlsv1 alert unknown ca", "handshake timed out". */
function tlsReason(err: NodeJS.ErrnoException & { reason?: string }): string {
  if (err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT') return 'handshake timed out';
  if (err.code === 'ECONNRESET') return 'connection reset by the peer';
  if (err.code === 'ERR_SSL_WRONG_VERSION_NUMBER') return 'not TLS (a plain TCP client or server?)';
  if (err.reason) return err.reason;
  return err.message.split('\n')[0] ?? err.message;
}

/**
 * Connect to `address`: plain TCP without `security`, else TLS 1.3, the server verified against
 * the CA (its certificate must name the host) or by the PSK. Rejects with one line saying why.
 * The whole thing, TCP and TLS, must finish within `timeoutMs`.
 */
export async function connectSecure(
  address: HostPort,
  security: ConnectSecurity | undefined,
  timeoutMs = 10_000,
  maxSendFragment?: number,
): Promise<net.Socket> {
  const started = performance.now();
  const raw = await connectTcp(address, timeoutMs);
  if (!security) return raw;
  const where = formatHostPort(address);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      socket: raw,
      host: address.host,
      ...(isIP(address.host) ? {} : { servername: address.host }),
      minVersion: MIN_VERSION,
      ...clientOptions(security),
    });
    const fail = (why: string) => {
      clearTimeout(timer);
      socket.destroy();
      raw.destroy();
      reject(new Error(`TLS to ${where}: ${why}`));
    };
    const timer = setTimeout(
      () => fail(`no handshake within ${timeoutMs} ms`),
      Math.max(1, timeoutMs - (performance.now() - started)),
    );
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      socket.off('error', onError);
      socket.off('close', onClose);
      if (security.kind === 'psk') recordPskIdentity(socket, security.identity);
      if (maxSendFragment) socket.setMaxSendFragment(maxSendFragment);
      resolve(socket);
    });
    const onError = (err: NodeJS.ErrnoException) => fail(tlsReason(err));
    socket.once('error', onError);
    // A server that refuses us after its side of the handshake just closes.
    const onClose = () => fail('closed by the server during the handshake');
    socket.once('close', onClose);
  });
}

function clientOptions(security: ConnectSecurity): tls.ConnectionOptions {
  if (security.kind === 'psk') {
    const { identity, key } = security;
    // The PSK authenticates the server: there is no certificate to check.
    return { pskCallback: () => ({ identity, psk: key }), checkServerIdentity: () => undefined };
  }
  const { cert, key, ca } = security;
  return { ...(cert && key ? { cert, key } : {}), ...(ca ? { ca } : {}) };
}
