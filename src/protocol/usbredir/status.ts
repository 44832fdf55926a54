import type { UsbSpeed } from '../../usb/speed.js';
import { TransferStatus } from '../../usb/status.js';
import { Speed, Status } from './constants.js';

/** TransferStatus ↔ usbredir status byte, for the statuses usbredir has a code for. */
const PAIRS: [TransferStatus, number][] = [
  [TransferStatus.Ok, Status.Success],
  [TransferStatus.Cancelled, Status.Cancelled],
  [TransferStatus.Invalid, Status.Inval],
  [TransferStatus.Stall, Status.Stall],
  [TransferStatus.Timeout, Status.Timeout],
  [TransferStatus.Babble, Status.Babble],
];
const TO_REDIR = new Map(PAIRS);
const FROM_REDIR = new Map(PAIRS.map(([s, c]) => [c, s]));

/** NoDevice, ShortPacket (no usbredir flag asks for it) and IoError: usbredirhost says ioerror. */
export function statusToRedir(s: TransferStatus): number {
  return TO_REDIR.get(s) ?? Status.IoError;
}

/** Unknown codes are errors (protocol rule), reported as IoError. */
export function statusFromRedir(code: number): TransferStatus {
  return FROM_REDIR.get(code) ?? TransferStatus.IoError;
}

/** There is no SuperSpeedPlus code: 10/20 Gbps devices are announced as super. */
export function speedToRedir(speed: UsbSpeed): number {
  switch (speed) {
    case 'low':
      return Speed.Low;
    case 'full':
      return Speed.Full;
    case 'high':
      return Speed.High;
    default:
      return Speed.Super;
  }
}

/** undefined for 255 (unknown) and any other value; QEMU then assumes full speed. */
export function speedFromRedir(code: number): UsbSpeed | undefined {
  return (['low', 'full', 'high', 'super'] as const)[code];
}
