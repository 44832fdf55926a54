import { AddressError, LOOPBACK, parseHostPort } from '../../util/host-port.js';
import { DeviceSpecError, registerDeviceClass, STDIO_RESOURCE } from '../classes.js';
import { createSerialDevice, hostEndFor, type SerialBackend } from './index.js';

/** "tcp:HOST:PORT", "tcp::PORT" (127.0.0.1), "tcp:[IPv6]:PORT" or "stdio". */
export function parseSerialSpec(spec: string | undefined): SerialBackend {
  const s = (spec ?? '').trim();
  if (s === 'stdio') return { kind: 'stdio' };
  if (!s.startsWith('tcp:')) throw new DeviceSpecError('expected tcp:HOST:PORT or stdio');
  const address = s.slice('tcp:'.length);
  try {
    return { kind: 'tcp', ...parseHostPort(address, undefined, LOOPBACK) };
  } catch (err) {
    if (err instanceof AddressError) throw new DeviceSpecError(`${err.message} (expected tcp:HOST:PORT)`);
    throw err;
  }
}

registerDeviceClass<SerialBackend>({
  name: 'serial',
  usage: 'tcp:HOST:PORT|stdio',
  summary: 'a CDC-ACM serial port whose other end is a TCP listener (one client at a time) or stdin/stdout',
  parse: parseSerialSpec,
  exclusiveResource(o) {
    if (o.kind === 'stdio') return STDIO_RESOURCE;
    return o.port === 0 ? undefined : `listening address ${o.host}:${o.port}`;
  },
  create(o, ctx) {
    return createSerialDevice((log) => hostEndFor(o, log), ctx);
  },
});
