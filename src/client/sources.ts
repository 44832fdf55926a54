import type { DeviceSource } from '../usb/source.js';
import type { RemoteSpec } from './remote-url.js';
import { UsbipSource } from './usbip/source.js';
import { UsbredirConnectSource, UsbredirListenSource } from './usbredir/source.js';

/** The source for one `--remote` URL. */
export function createSource(spec: RemoteSpec): DeviceSource {
  switch (spec.kind) {
    case 'usbip':
      return new UsbipSource({ address: spec.address, busid: spec.busid });
    case 'usbredir':
      return new UsbredirConnectSource({ address: spec.address });
    case 'usbredir-listen':
      return new UsbredirListenSource({ address: spec.address });
  }
}
