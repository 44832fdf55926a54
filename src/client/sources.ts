import type { ConnectSecurity } from '../transport/credentials.js';
import type { DeviceSource } from '../usb/source.js';
import type { RemoteSpec } from './remote-url.js';
import { UsbipSource } from './usbip/source.js';
import { UsbredirConnectSource, UsbredirListenSource } from './usbredir/source.js';

/**
 * The source for one `--remote` URL. A +tls URL connects with `credentials` (default: TLS with
 * no client certificate, the server checked against the system's CAs).
 */
export function createSource(spec: RemoteSpec, credentials?: ConnectSecurity): DeviceSource {
  const security = spec.kind !== 'usbredir-listen' && spec.tls ? (credentials ?? { kind: 'x509' }) : undefined;
  switch (spec.kind) {
    case 'usbip':
      return new UsbipSource({ address: spec.address, busid: spec.busid, security });
    case 'usbredir':
      return new UsbredirConnectSource({ address: spec.address, security });
    case 'usbredir-listen':
      return new UsbredirListenSource({ address: spec.address });
  }
}
