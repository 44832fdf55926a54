import type { UsbSpeed } from '../../usb/speed.js';
import { TransferStatus } from '../../usb/status.js';
import { Speed, Status } from './constants.js';

export function statusToRedir(s: TransferStatus): number {
  switch (s) {
    case TransferStatus.Ok:
      return Status.Success;
    case TransferStatus.Cancelled:
      return Status.Cancelled;
    case TransferStatus.Invalid:
      return Status.Inval;
    case TransferStatus.Stall:
      return Status.Stall;
    case TransferStatus.Timeout:
      return Status.Timeout;
    case TransferStatus.Babble:
      return Status.Babble;
    default:
      // NoDevice, ShortPacket (no usbredir flag asks for it), IoError: usbredirhost says ioerror.
      return Status.IoError;
  }
}

/** Unknown codes are errors (protocol rule), reported as IoError. */
export function statusFromRedir(code: number): TransferStatus {
  switch (code) {
    case Status.Success:
      return TransferStatus.Ok;
    case Status.Cancelled:
      return TransferStatus.Cancelled;
    case Status.Inval:
      return TransferStatus.Invalid;
    case Status.Stall:
      return TransferStatus.Stall;
    case Status.Timeout:
      return TransferStatus.Timeout;
    case Status.Babble:
      return TransferStatus.Babble;
    default:
      return TransferStatus.IoError;
  }
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
