import { createRequire } from 'node:module';
import type net from 'node:net';
import { createLogger } from '../util/log.js';

const log = createLogger('tcp');

/**
 * How long a peer may vanish (host off, cable pulled, NAT state lost) before its connection is
 * closed and its device freed. Node sets only the keepalive idle time; the kernel's defaults
 * (9 probes 75 s apart) would take over 11 minutes, and unacknowledged data up to 15 minutes of
 * retransmissions. So the probe interval, probe count and TCP_USER_TIMEOUT are set directly on
 * the socket (libc setsockopt through koffi, the FFI module usbwire already ships); where that is
 * not possible the kernel's defaults remain and the write-stall watchdog (limits.ts) still drops
 * a peer that stopped reading.
 */
export const DEFAULT_PEER_TIMEOUT_MS = 20_000;

let peerTimeoutMs = DEFAULT_PEER_TIMEOUT_MS;

/** Set the process-wide peer timeout (config `limits.peerTimeoutMs`); applies to sockets opened afterwards. */
export function setPeerTimeout(ms: number): void {
  peerTimeoutMs = ms;
}

export function peerTimeout(): number {
  return peerTimeoutMs;
}

const IPPROTO_TCP = 6;
const TCP_KEEPINTVL = 5;
const TCP_KEEPCNT = 6;
const TCP_USER_TIMEOUT = 18;
const PROBES = 5;

type SetSockOpt = (fd: number, level: number, name: number, value: Int32Array, length: number) => number;
let setsockopt: SetSockOpt | null | undefined;

function loadSetsockopt(): SetSockOpt | null {
  if (setsockopt !== undefined) return setsockopt;
  setsockopt = null;
  if (process.platform !== 'linux') return null;
  try {
    const koffi = createRequire(import.meta.url)('koffi') as {
      load(name: string): { func(signature: string): SetSockOpt };
    };
    setsockopt = koffi.load('libc.so.6').func('int setsockopt(int, int, int, void *, uint32_t)');
  } catch (err) {
    log.debug(`cannot set TCP keepalive probes (${(err as Error).message}); the kernel's defaults apply`);
  }
  return setsockopt;
}

/** Keepalive probes and TCP_USER_TIMEOUT so that a vanished peer is noticed within the peer timeout. */
export function applyPeerTimeout(socket: net.Socket): void {
  const total = peerTimeoutMs;
  // Half the budget idle, the other half for PROBES unanswered probes.
  const idleMs = Math.max(1000, Math.floor(total / 2));
  socket.setKeepAlive(true, idleMs);
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  const call = loadSetsockopt();
  if (call === null || typeof fd !== 'number' || fd < 0) return;
  const intervalS = Math.max(1, Math.floor((total - idleMs) / 1000 / PROBES));
  const ok =
    call(fd, IPPROTO_TCP, TCP_KEEPINTVL, Int32Array.of(intervalS), 4) === 0 &&
    call(fd, IPPROTO_TCP, TCP_KEEPCNT, Int32Array.of(PROBES), 4) === 0 &&
    call(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, Int32Array.of(total), 4) === 0;
  if (!ok) log.debug(`setsockopt on fd ${fd} failed; the kernel's keepalive defaults apply`);
}
