import { DeviceSpecError, registerDeviceClass, STDIO_RESOURCE } from '../classes.js';
import { createSerialDevice, hostEndFor, type SerialBackend } from './index.js';

/** "tcp:HOST:PORT", "tcp::PORT" (127.0.0.1), "tcp:[IPv6]:PORT" or "stdio". */
export function parseSerialSpec(spec: string | undefined): SerialBackend {
  const s = (spec ?? '').trim();
  if (s === 'stdio') return { kind: 'stdio' };
  if (!s.startsWith('tcp:')) throw new DeviceSpecError('expected tcp:HOST:PORT or stdio');
  const m = /^tcp:(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9._-]*)):(\d{1,5})$/.exec(s);
  if (!m) throw new DeviceSpecError(`"${s}": expected tcp:HOST:PORT (IPv6 in brackets)`);
  const port = Number(m[3]);
  if (port > 65535) throw new DeviceSpecError(`"${s}": port ${port} out of range`);
  const host = m[1] ?? (m[2] === '' || m[2] === undefined ? '127.0.0.1' : m[2]);
  return { kind: 'tcp', host, port };
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
