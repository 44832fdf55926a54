import type { EventEmitter } from 'node:events';
import type { UsbSpeed } from './speed.js';
import type { TransferStatus } from './status.js';
import type { Transfer } from './transfer.js';

/** Raw descriptors of a device, as a host would read them over endpoint 0. */
export interface DeviceDescriptors {
  /** The 18-byte device descriptor. */
  device: Buffer;
  /** Full configuration descriptors (configuration + interfaces + endpoints + class descriptors), by index. */
  configurations: Buffer[];
}

export interface UsbDeviceEvents {
  /** The device went away; pending transfers have completed with NoDevice. */
  disconnect: [];
}

/**
 * Anything that takes transfers: an emulated device, a real device through libusb, a device on
 * the far side of a usbredir or USB/IP client, or a wrapper around another UsbDevice.
 *
 * Contract:
 * - `submit` returns a promise that resolves exactly once, when the transfer is done (it never
 *   rejects: failures are a `status`). It may stay pending indefinitely (an interrupt IN with
 *   nothing to report is a NAK).
 * - `cancel` asks a pending transfer to finish early; if it is still pending it resolves with
 *   status Cancelled. Cancelling a finished or unknown transfer does nothing.
 * - Standard requests arrive as control transfers like any other: SET_CONFIGURATION and
 *   SET_INTERFACE change `configuration` / `alternateSetting` when they succeed.
 */
export interface UsbDevice extends EventEmitter<UsbDeviceEvents> {
  /** Short human-readable name for logs and listings. */
  readonly name: string;
  readonly speed: UsbSpeed;
  readonly descriptors: DeviceDescriptors;
  /** Current bConfigurationValue, 0 when unconfigured. */
  readonly configuration: number;
  /** Current alternate setting of an interface of the active configuration. */
  alternateSetting(interfaceNumber: number): number;
  submit(transfer: Transfer): Promise<void>;
  cancel(transfer: Transfer): void;
  /** USB port reset: cancels everything pending, back to the default (unconfigured) state. */
  reset(): Promise<void>;
  /**
   * USB 3 bulk streams, present only on devices that can carry stream ids (see UsbStreams).
   * Stream ids 1..n become usable on these bulk endpoints (addresses with the direction bit),
   * all allocated together. Resolves with n, which may be fewer than asked (libusb_alloc_streams
   * does that), or with a failure status; never rejects. Allocations end with freeStreams, a
   * reset, or SET_CONFIGURATION / SET_INTERFACE touching the endpoints.
   */
  allocStreams?(endpoints: number[], streams: number): Promise<number | TransferStatus>;
  /** Back to plain bulk on these endpoints; their pending transfers complete Cancelled first. */
  freeStreams?(endpoints: number[]): Promise<TransferStatus>;
  /** Release resources (files, handles). The device is unusable afterwards. */
  close(): Promise<void>;
}
