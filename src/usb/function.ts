import type { SetupPacket } from './setup.js';
import type { UsbSpeed } from './speed.js';
import type { TransferStatus } from './status.js';
import type { Transfer } from './transfer.js';

/** An endpoint of an interface alternate setting, as the function wants it described. */
export interface EndpointSpec {
  /** Endpoint address, 0x80 bit for IN. */
  address: number;
  type: 'isochronous' | 'bulk' | 'interrupt';
  maxPacketSize: number;
  /** bInterval as written in the descriptor. */
  interval: number;
  /** SuperSpeed companion: bMaxBurst and bmAttributes (streams exponent for bulk). */
  companion?: { maxBurst: number; attributes: number; bytesPerInterval?: number };
  /** Class-specific descriptors that follow this endpoint (e.g. UAS pipe usage). */
  extra?: Buffer;
}

export interface AltSettingSpec {
  alternate: number;
  interfaceClass: number;
  interfaceSubClass: number;
  interfaceProtocol: number;
  /** Interface string (becomes iInterface). */
  name?: string;
  /** Class-specific descriptors between the interface descriptor and its endpoints (e.g. HID). */
  extra?: Buffer;
  endpoints: EndpointSpec[];
}

/** An Interface Association Descriptor: groups this interface and the next `count - 1` into one function. */
export interface AssociationSpec {
  count: number;
  functionClass: number;
  functionSubClass: number;
  functionProtocol: number;
  /** Function string (becomes iFunction). */
  name?: string;
}

/** One interface with all its alternate settings. `number` is relative to the function (0-based). */
export interface InterfaceSpec {
  number: number;
  alternates: AltSettingSpec[];
  /** An IAD written before this interface (CDC, UVC, composite devices). */
  association?: AssociationSpec;
}

/** Result of a class/vendor control request. `data` is the IN data stage (truncated by the caller to wLength). */
export interface ControlResult {
  status: TransferStatus;
  data?: Buffer;
}

/**
 * What a function can ask of the device that hosts it. The host owns the endpoints: it queues
 * the host's transfers per endpoint, and handles cancel, halts, reset and reconfiguration once
 * for every class. A function takes transfers from the queues, fills them and completes them.
 */
export interface FunctionHost {
  readonly speed: UsbSpeed;
  /** The oldest transfer waiting on an endpoint (bulk stream), left in the queue. */
  peek(address: number, streamId?: number): Transfer | undefined;
  /** Take the oldest transfer waiting on an endpoint (bulk stream); it stays cancellable until completed. */
  take(address: number, streamId?: number): Transfer | undefined;
  /** Transfers waiting (not taken) on an endpoint (bulk stream). */
  waiting(address: number, streamId?: number): number;
  /** Bulk streams the host allocated on an endpoint (USB 3), 0 when it uses plain bulk. */
  streams(address: number): number;
  /**
   * Hand a taken transfer back to the host with the status, data and length the function set.
   * Returns false (and does nothing) if the transfer was cancelled meanwhile.
   */
  complete(transfer: Transfer): boolean;
  /** Halt an endpoint: its pending transfers and new ones fail with Stall until the host clears the halt. */
  haltEndpoint(address: number): void;
  /** A halt the host's CLEAR_FEATURE cannot clear (BOT invalid CBW); cleared by a class reset. */
  wedgeEndpoint(address: number): void;
  /** Undo halt and wedge (BOT Bulk-Only Mass Storage Reset does not; Reset Recovery's CLEAR_FEATUREs do). */
  unhaltEndpoint(address: number): void;
  isHalted(address: number): boolean;
}

/**
 * One USB function (class driver on the device side): the shape of the kernel's gadget
 * `usb_function` and tinyusb's class driver table. The emulated device answers standard requests
 * and routes to its functions: class/vendor control requests for their interfaces or endpoints,
 * and a notice whenever a transfer waits on one of their endpoints.
 */
export interface UsbFunction {
  /** Interfaces of this function at a given speed. */
  interfaces(speed: UsbSpeed): InterfaceSpec[];
  /** Called once when the device is built; `firstInterface` is the absolute number of interface 0. */
  bind(host: FunctionHost, firstInterface: number): void;
  /**
   * A class or vendor request to one of this function's interfaces (wIndex low byte) or
   * endpoints. `data` is the OUT data stage, if any. Returning undefined means "not mine": stall.
   */
  control(setup: SetupPacket, data: Buffer | undefined): Promise<ControlResult> | ControlResult | undefined;
  /** A transfer is waiting on one of this function's endpoints, on a bulk stream or 0 (take it now or later). */
  transferWaiting(address: number, streamId: number): void;
  /** The host allocated (count > 0) or freed (0) bulk streams on these endpoints; their transfers are flushed. */
  streamsChanged?(endpoints: readonly number[], count: number): void;
  /**
   * The host selected a configuration with this function in it (true) or left it: unconfigured,
   * another configuration, bus reset (false). Pending transfers are already flushed.
   */
  setConfigured(configured: boolean): void;
  /** The host selected an alternate setting of one of this function's interfaces (relative number). */
  setAlternate(interfaceNumber: number, alternate: number): void;
  /** The host cleared a halt on one of this function's endpoints. */
  clearHalt?(address: number): void;
  /** Bus reset: back to power-on state (the host has already failed every pending transfer). */
  reset(): void;
  close(): Promise<void>;
}
