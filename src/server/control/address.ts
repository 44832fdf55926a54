import { isIP } from 'node:net';
import { join } from 'node:path';

/** Where the control endpoint listens: a unix socket or a loopback TCP port. */
export type ControlAddress = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

/** A control address that must not be used; the message says why and what to use instead. */
export class ControlAddressError extends Error {
  override name = 'ControlAddressError';
}

/**
 * The control socket when --control is not given: /run/usbwire/control.sock as root,
 * $XDG_RUNTIME_DIR/usbwire/control.sock for a user session, else /tmp/usbwire-UID/control.sock.
 */
export function defaultControlPath(env: NodeJS.ProcessEnv = process.env): string {
  const uid = process.getuid?.() ?? 0;
  if (uid === 0) return '/run/usbwire/control.sock';
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, 'usbwire', 'control.sock');
  return `/tmp/usbwire-${uid}/control.sock`;
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1' || host === '0:0:0:0:0:0:0:1';
}

/** The control endpoint has no authentication: only loopback TCP (or a unix socket) is allowed. */
export function checkControlAddress(a: ControlAddress): void {
  if (a.kind === 'tcp' && !isLoopback(a.host)) {
    throw new ControlAddressError(
      `--control ${a.host}:${a.port}: the control endpoint is unauthenticated, so it only listens on loopback (127.0.0.1, ::1) or a unix socket (unix:PATH)`,
    );
  }
}

export function describeControlAddress(a: ControlAddress): string {
  return a.kind === 'unix' ? `unix:${a.path}` : `${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
}
