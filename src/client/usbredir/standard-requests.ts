import { Status, PacketType as T } from '../../protocol/usbredir/constants.js';
import type { ControlPacket, Packet } from '../../protocol/usbredir/packets.js';
import { statusFromRedir } from '../../protocol/usbredir/status.js';
import type { ConfigurationTracker } from '../../usb/device-state.js';
import { RequestType, type SetupPacket, StandardRequest } from '../../usb/setup.js';
import { TransferStatus } from '../../usb/status.js';
import type { Transfer } from '../../usb/transfer.js';

/**
 * What usbredir makes of a control transfer. As in QEMU's redirect.c, the standard requests
 * that change or read the device state have packets of their own, SET_ADDRESS stays local, and
 * everything else is a control_packet.
 */
export type ControlRoute =
  | { kind: 'local' }
  | { kind: 'set-configuration'; configuration: number }
  | { kind: 'get-configuration' }
  | { kind: 'set-alt'; interface: number; alt: number }
  | { kind: 'get-alt'; interface: number }
  | { kind: 'control' };

const DEVICE_IN = RequestType.DirIn | RequestType.Device;
const INTERFACE_IN = RequestType.DirIn | RequestType.Interface;

export function routeControl(s: SetupPacket): ControlRoute {
  const r = s.bRequest;
  switch (s.bmRequestType) {
    case RequestType.Device:
      if (r === StandardRequest.SetAddress) return { kind: 'local' };
      if (r === StandardRequest.SetConfiguration) return { kind: 'set-configuration', configuration: s.wValue & 0xff };
      break;
    case DEVICE_IN:
      if (r === StandardRequest.GetConfiguration) return { kind: 'get-configuration' };
      break;
    case RequestType.Interface:
      if (r === StandardRequest.SetInterface)
        return { kind: 'set-alt', interface: s.wIndex & 0xff, alt: s.wValue & 0xff };
      break;
    case INTERFACE_IN:
      if (r === StandardRequest.GetInterface) return { kind: 'get-alt', interface: s.wIndex & 0xff };
      break;
  }
  return { kind: 'control' };
}

/** The packet that carries a routed control transfer (undefined for a local one). */
export function controlRequestPacket(route: ControlRoute, id: bigint, t: Transfer): Packet | undefined {
  switch (route.kind) {
    case 'local':
      return undefined;
    case 'set-configuration':
      return { type: T.SetConfiguration, id, configuration: route.configuration };
    case 'get-configuration':
      return { type: T.GetConfiguration, id };
    case 'set-alt':
      return { type: T.SetAltSetting, id, interface: route.interface, alt: route.alt };
    case 'get-alt':
      return { type: T.GetAltSetting, id, interface: route.interface };
    case 'control': {
      const s = t.setup!;
      const isIn = (s.bmRequestType & RequestType.DirIn) !== 0;
      return {
        type: T.ControlPacket,
        id,
        endpoint: s.bmRequestType & RequestType.DirIn,
        request: s.bRequest,
        requestType: s.bmRequestType,
        status: Status.Success,
        value: s.wValue,
        index: s.wIndex,
        length: s.wLength,
        data: isIn ? EMPTY : t.data.subarray(0, s.wLength),
      };
    }
  }
}

/**
 * A reply status as the requester sees it. `cancelled` that nobody asked for is what a host
 * reports for everything pending when it unredirects the device: an I/O error, as in QEMU.
 */
export function replyStatus(code: number, cancelAsked: boolean): TransferStatus {
  const s = statusFromRedir(code);
  return s === TransferStatus.Cancelled && !cancelAsked ? TransferStatus.IoError : s;
}

/** Complete a control_packet transfer from the host's reply. */
export function completeControl(t: Transfer, reply: ControlPacket, status: TransferStatus): void {
  if (t.isIn) {
    if (status === TransferStatus.Ok || reply.data.length > 0) t.completeIn(reply.data, status);
    else t.fail(status);
    return;
  }
  t.status = status;
  t.actualLength = Math.min(reply.length, t.length);
}

/**
 * Complete a set/get configuration or alt setting transfer from configuration_status /
 * alt_setting_status (`value` = the configuration or alt setting the host reports), and keep
 * `tracker` in step. The host sent interface_info / ep_info before this status.
 */
export function completeStateRequest(
  t: Transfer,
  route: ControlRoute,
  status: TransferStatus,
  value: number,
  tracker: ConfigurationTracker,
): void {
  if (!t.isIn) {
    t.status = status;
    t.actualLength = 0;
    tracker.observe(t);
    return;
  }
  if (status !== TransferStatus.Ok) {
    t.fail(status);
    return;
  }
  t.completeIn(Buffer.from([value]).subarray(0, Math.min(1, t.length)));
  if (route.kind === 'get-configuration' && tracker.configuration !== value) tracker.setConfiguration(value);
  if (route.kind === 'get-alt') tracker.setAlternate(route.interface, value);
}

const EMPTY = Buffer.alloc(0);
