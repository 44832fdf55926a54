import { createLogger, type Logger } from '../../util/log.js';
import type { ControllableDevice, DeviceActions } from '../classes.js';
import { EmulatedDevice } from '../emulated-device.js';
import { ProductId, USBWIRE_VENDOR_ID } from '../ids.js';
import { AcmFunction } from './acm-function.js';
import { type HostEnd, StreamHostEnd, TcpHostEnd } from './host-end.js';

/** usbwire's pid.codes product id for the CDC-ACM serial port (the disk is 0x0001). */

export type SerialBackend = { kind: 'tcp'; host: string; port: number } | { kind: 'stdio' };

export interface SerialDevice extends ControllableDevice {
  readonly actions: DeviceActions;
  readonly hostEnd: HostEnd;
}

/** Log lines read "serial 1-3: line coding 115200 8N1". */
function prefixed(prefix: string): Logger {
  const base = createLogger('serial');
  const wrap = (l: Logger): Logger => ({
    debug: (m) => l.debug(`${prefix}: ${m}`),
    info: (m) => l.info(`${prefix}: ${m}`),
    warn: (m) => l.warn(`${prefix}: ${m}`),
    error: (m) => l.error(`${prefix}: ${m}`),
    child: (s) => wrap(l.child(s)),
  });
  return wrap(base);
}

export function hostEndFor(backend: SerialBackend, log: Logger): HostEnd {
  return backend.kind === 'tcp'
    ? new TcpHostEnd(backend.host, backend.port, log)
    : new StreamHostEnd(process.stdin, process.stdout, 'stdio');
}

/**
 * A CDC-ACM serial port (the guest's /dev/ttyACMn) whose other end is `end`. Composite-style
 * (device class 0xEF/2/1 with an IAD) so the same function can sit beside others in one
 * device; Linux cdc-acm binds to the interfaces either way.
 */
export async function createSerialDevice(
  end: HostEnd | ((log: Logger) => HostEnd),
  opts: { index: number },
): Promise<SerialDevice> {
  const busid = `1-${opts.index + 1}`;
  const log = prefixed(`serial ${busid}`);
  const hostEnd = typeof end === 'function' ? end(log) : end;
  const fn = new AcmFunction(hostEnd, log);
  const serial = `USBWIRE${String(opts.index + 1).padStart(5, '0')}`;
  const dev = new EmulatedDevice({
    name: `serial ${hostEnd.description}`,
    speed: 'high',
    vendorId: USBWIRE_VENDOR_ID,
    productId: ProductId.serial,
    deviceClass: 0xef,
    deviceSubClass: 0x02,
    deviceProtocol: 0x01,
    manufacturer: 'usbwire',
    product: 'Serial Port',
    serial,
    maxPowerMa: 100,
    functions: [fn],
  });
  // Opened once the function is bound: a host end may report its client at once (stdio does).
  try {
    await hostEnd.open();
  } catch (err) {
    await dev.close();
    throw err;
  }
  log.info(`${hostEnd.description} is the host end of this port`);
  const actions: DeviceActions = { status: () => fn.status() };
  return Object.assign(dev, { actions, hostEnd });
}
