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

/** One interface with all its alternate settings. `number` is relative to the function (0-based). */
export interface InterfaceSpec {
  number: number;
  alternates: AltSettingSpec[];
}

/** Result of a class/vendor control request. `data` is the IN data stage (truncated by the caller to wLength). */
export interface ControlResult {
  status: TransferStatus;
  data?: Buffer;
}

/** What a function can ask of the device that hosts it. */
export interface FunctionHost {
  /** Halt an endpoint: transfers on it fail with Stall until the host clears the halt. */
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
 * and every transfer on their endpoints. Transfers may stay pending and are completed later.
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
  /** A transfer on one of this function's endpoints. Resolves when done (never rejects). */
  submit(transfer: Transfer): Promise<void>;
  /** Cancel a pending transfer: it must resolve with status Cancelled if still pending. */
  cancel(transfer: Transfer): void;
  /** The host selected a configuration (true) or unconfigured / reset the device (false). */
  setConfigured(configured: boolean): void;
  /** The host selected an alternate setting of one of this function's interfaces (relative number). */
  setAlternate(interfaceNumber: number, alternate: number): void;
  /** The host cleared a halt on one of this function's endpoints. */
  clearHalt?(address: number): void;
  /** Bus reset: abort everything (pending transfers resolve Cancelled), back to power-on state. */
  reset(): void;
  close(): Promise<void>;
}
