import type { UsbDevice } from '../usb/device.js';

/** A device spec that cannot be used: the message says what is wrong and what is expected. */
export class DeviceSpecError extends Error {
  override name = 'DeviceSpecError';
}

/** What a device class gets besides its own options. */
export interface DeviceContext {
  /** Position of the device among all exported devices (0-based): serial numbers, names. */
  index: number;
}

/**
 * An action refused: `invalid` arguments (the caller's mistake), or `unavailable` now (no host
 * attached, queue full: try again later). Any other error from an action is a bug.
 */
export class DeviceActionError extends Error {
  override name = 'DeviceActionError';
  constructor(
    message: string,
    readonly reason: 'invalid' | 'unavailable',
  ) {
    super(message);
  }
}

/** What a device can do besides taking transfers, for the control endpoint (type, key, pointer...). */
export type DeviceActions = Record<string, (args: Record<string, unknown>) => unknown | Promise<unknown>>;

/** A UsbDevice that may also offer actions to the operator. */
export type ControllableDevice = UsbDevice & { readonly actions?: DeviceActions };

/**
 * A class of emulated device, registered by name like the gadget framework's
 * `usb_function_register`: the CLI and the config file build devices from specs through it.
 */
export interface DeviceClass<Options = unknown> {
  /** Class name, also the `serve` flag: `--disk`, `--gadget-zero`, ... */
  readonly name: string;
  /**
   * What the flag takes (e.g. "PATH[,readonly]"), undefined for a flag without a value; a usage
   * that starts with "[" makes the value optional (`--gadget-zero` or `--gadget-zero pattern=1`).
   */
  readonly usage: string | undefined;
  /** One line for `serve --help`. */
  readonly summary: string;
  /** Check and decode a spec (the flag's value); throws DeviceSpecError. */
  parse(spec: string | undefined): Options;
  /**
   * Something two devices of the process must not share (a writable image, a listening
   * address), to refuse the second one before anything is opened.
   */
  exclusiveResource?(options: Options): string | undefined;
  create(options: Options, ctx: DeviceContext): Promise<ControllableDevice>;
}

/** The exclusive resource of a device whose host end is the server's stdin/stdout. */
export const STDIO_RESOURCE = "the server's stdin/stdout";

const classes = new Map<string, DeviceClass>();

export function registerDeviceClass<O>(cls: DeviceClass<O>): void {
  if (classes.has(cls.name)) throw new Error(`device class ${cls.name} registered twice`);
  classes.set(cls.name, cls as DeviceClass);
}

export function deviceClass(name: string): DeviceClass | undefined {
  return classes.get(name);
}

export function deviceClasses(): DeviceClass[] {
  return [...classes.values()];
}

/** A device to build: its class and decoded options, with the text it came from for messages. */
export interface DeviceSpec {
  cls: DeviceClass;
  options: unknown;
  text: string | undefined;
}

/** Decode `--NAME VALUE` into a spec; throws DeviceSpecError for an unknown class or a bad value. */
export function parseDeviceSpec(name: string, text: string | undefined): DeviceSpec {
  const cls = classes.get(name);
  if (!cls) throw new DeviceSpecError(`unknown device class "${name}" (known: ${[...classes.keys()].join(', ')})`);
  return { cls, options: cls.parse(text), text };
}
