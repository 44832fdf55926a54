import type { FilterDeviceInfo } from '../../protocol/usbredir/filter.js';
import { EndpointKind, endpointIndex, MAX_ENDPOINTS, speedToRedir } from '../../protocol/usbredir/index.js';
import type { EpInfoEntry, InterfaceInfoEntry } from '../../protocol/usbredir/packets.js';
import {
  type DeviceDescriptor,
  EndpointTypeCode,
  type ParsedConfiguration,
  parseConfiguration,
  parseDeviceDescriptor,
} from '../../usb/descriptors.js';
import type { UsbDevice } from '../../usb/device.js';
import { maxStreamsOf } from '../../usb/streams.js';

/** What usbredir tells the guest about a device in its current configuration and alt settings. */
export interface RedirDeviceView {
  descriptor: DeviceDescriptor;
  speed: number;
  configuration: ParsedConfiguration | undefined;
  interfaces: InterfaceInfoEntry[];
  /** 32 entries by endpoint index. */
  endpoints: EpInfoEntry[];
}

function activeConfiguration(device: UsbDevice): ParsedConfiguration | undefined {
  if (device.configuration === 0) return undefined;
  for (const raw of device.descriptors.configurations) {
    const config = parseConfiguration(raw);
    if (config.value === device.configuration) return config;
  }
  return undefined;
}

/**
 * Build interface_info / ep_info content like usbredirhost: endpoint 0 both ways is control,
 * absent endpoints are invalid, max packet size is wMaxPacketSize & 0x7ff, times the
 * high-bandwidth multiplier only for high-speed isochronous endpoints.
 */
export function describeDevice(device: UsbDevice): RedirDeviceView {
  const descriptor = parseDeviceDescriptor(device.descriptors.device);
  const configuration = activeConfiguration(device);
  const endpoints: EpInfoEntry[] = [];
  for (let i = 0; i < MAX_ENDPOINTS; i++) {
    const kind = (i & 0x0f) === 0 ? EndpointKind.Control : EndpointKind.Invalid;
    endpoints.push({ type: kind, interval: 0, interface: 0, maxPacketSize: 0, maxStreams: 0 });
  }
  const interfaces: InterfaceInfoEntry[] = [];
  for (const iface of configuration?.interfaces.slice(0, 32) ?? []) {
    const current = device.alternateSetting(iface.number);
    const alt = iface.alternates.find((a) => a.alternate === current) ?? iface.alternates[0];
    if (!alt) continue;
    interfaces.push({
      number: iface.number,
      interfaceClass: alt.interfaceClass,
      interfaceSubclass: alt.interfaceSubClass,
      interfaceProtocol: alt.interfaceProtocol,
    });
    for (const ep of alt.endpoints) {
      const type = EndpointTypeCode[ep.type];
      let maxPacketSize = ep.maxPacketSize & 0x7ff;
      if (device.speed === 'high' && type === EndpointKind.Iso) maxPacketSize *= 1 + ((ep.maxPacketSize >> 11) & 3);
      endpoints[endpointIndex(ep.address)] = {
        type,
        interval: ep.interval,
        interface: iface.number,
        maxPacketSize,
        maxStreams: maxStreamsOf(ep),
      };
    }
  }
  return { descriptor, speed: speedToRedir(device.speed), configuration, interfaces, endpoints };
}

export function filterInfo(view: RedirDeviceView): FilterDeviceInfo {
  return {
    deviceClass: view.descriptor.deviceClass,
    deviceSubclass: view.descriptor.deviceSubClass,
    deviceProtocol: view.descriptor.deviceProtocol,
    vendorId: view.descriptor.vendorId,
    productId: view.descriptor.productId,
    deviceVersionBcd: view.descriptor.bcdDevice,
    interfaces: view.interfaces,
  };
}
