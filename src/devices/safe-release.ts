import type { UsbDevice } from '../usb/device.js';

/**
 * How an exported device lets its host go without losing data: the "try disconnect" of a disk.
 * Optional: a device without it is simply taken away. The server asks in this order:
 *   hold()        may the host lose the device now? If not, why (in words for the operator)
 *   eject()       take the medium away while the device stays attached; in-flight work finishes
 *   flush()       make what was written durable
 *   ...the holder's connection is closed...
 *   restore()     back to a device as after power-on, for the next host
 * No protocol appears here: the device answers from its own state (SCSI for a disk).
 */
export interface SafeRelease {
  /** Why the host must keep the device now (e.g. it locked the medium), undefined when it may go. */
  hold(): string | undefined;
  /**
   * The host loses the medium, not the device: its next command learns so, new I/O fails.
   * Resolves once what was running has finished; `noticed` resolves when the host has been
   * told (an idle host may never ask).
   */
  eject(): Promise<{ noticed: Promise<void> }>;
  flush(): Promise<void>;
  restore(): void;
}

/** A device that may offer SafeRelease. */
export type ReleasableDevice = UsbDevice & { readonly safeRelease?: SafeRelease };

export function safeReleaseOf(device: UsbDevice | undefined): SafeRelease | undefined {
  return (device as ReleasableDevice | undefined)?.safeRelease;
}
