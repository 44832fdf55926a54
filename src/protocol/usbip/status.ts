import type { UsbSpeed } from '../../usb/speed.js';
import { TransferStatus } from '../../usb/status.js';
import { Errno, LinuxSpeed } from './constants.js';

const STATUS_TO_ERRNO: Record<TransferStatus, number> = {
  [TransferStatus.Ok]: 0,
  [TransferStatus.Stall]: -Errno.EPIPE,
  [TransferStatus.Cancelled]: -Errno.ECONNRESET,
  [TransferStatus.NoDevice]: -Errno.ENODEV,
  [TransferStatus.Babble]: -Errno.EOVERFLOW,
  [TransferStatus.Timeout]: -Errno.ETIMEDOUT,
  [TransferStatus.Invalid]: -Errno.EINVAL,
  [TransferStatus.ShortPacket]: -Errno.EREMOTEIO,
  [TransferStatus.IoError]: -Errno.EPROTO,
};

/** Negative errno for a URB status or ISO packet status. */
export function statusToErrno(status: TransferStatus): number {
  return STATUS_TO_ERRNO[status];
}

export function errnoToStatus(errno: number): TransferStatus {
  switch (-errno) {
    case 0:
      return TransferStatus.Ok;
    case Errno.EPIPE:
      return TransferStatus.Stall;
    case Errno.ECONNRESET:
    case Errno.ENOENT:
      return TransferStatus.Cancelled;
    case Errno.ENODEV:
    case Errno.ESHUTDOWN:
      return TransferStatus.NoDevice;
    case Errno.EOVERFLOW:
      return TransferStatus.Babble;
    case Errno.ETIMEDOUT:
    case Errno.ETIME:
      return TransferStatus.Timeout;
    case Errno.EINVAL:
      return TransferStatus.Invalid;
    case Errno.EREMOTEIO:
      return TransferStatus.ShortPacket;
    default:
      return TransferStatus.IoError;
  }
}

export function speedToLinux(speed: UsbSpeed): number {
  switch (speed) {
    case 'low':
      return LinuxSpeed.Low;
    case 'full':
      return LinuxSpeed.Full;
    case 'high':
      return LinuxSpeed.High;
    case 'super':
      return LinuxSpeed.Super;
    case 'super-plus':
      return LinuxSpeed.SuperPlus;
  }
}

/** Wireless USB is treated as high speed; unknown as full speed. */
export function speedFromLinux(speed: number): UsbSpeed {
  switch (speed) {
    case LinuxSpeed.Low:
      return 'low';
    case LinuxSpeed.High:
    case LinuxSpeed.Wireless:
      return 'high';
    case LinuxSpeed.Super:
      return 'super';
    case LinuxSpeed.SuperPlus:
      return 'super-plus';
    default:
      return 'full';
  }
}
