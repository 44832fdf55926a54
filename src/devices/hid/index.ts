import type { ControllableDevice, DeviceActions } from '../classes.js';
import { EmulatedDevice } from '../emulated-device.js';
import { ProductId, USBWIRE_VENDOR_ID } from '../ids.js';
import { HidKeyboard } from './keyboard.js';
import { HidMouse } from './mouse.js';

export { HID_QUEUE_CAPACITY } from './hid-function.js';
export { HidKeyboard } from './keyboard.js';
export { HidMouse } from './mouse.js';

/** pid.codes open-source test VID; PIDs of the emulated HID devices. */

export type HidDevice<T> = EmulatedDevice & ControllableDevice & { readonly actions: DeviceActions; readonly input: T };

interface HidDeviceOptions {
  index?: number;
  queueCapacity?: number;
}

function build<T extends { fn: HidKeyboard['fn']; actions: DeviceActions }>(
  input: T,
  productId: number,
  product: string,
  opts: HidDeviceOptions,
): HidDevice<T> {
  const serial = `USBWIRE${String((opts.index ?? 0) + 1).padStart(5, '0')}`;
  const dev = new EmulatedDevice({
    name: product.toLowerCase(),
    speed: 'high',
    vendorId: USBWIRE_VENDOR_ID,
    productId,
    manufacturer: 'usbwire',
    product,
    serial,
    maxPowerMa: 100,
    functions: [input.fn],
  });
  return Object.assign(dev, { actions: input.actions, input });
}

/** A boot keyboard (high speed, one interrupt IN; LEDs by SET_REPORT on ep0). */
export function createKeyboard(opts: HidDeviceOptions = {}): HidDevice<HidKeyboard> {
  return build(new HidKeyboard(opts.queueCapacity), ProductId.keyboard, 'Virtual Keyboard', opts);
}

/** A boot mouse with three buttons and a wheel (high speed, one interrupt IN). */
export function createMouse(opts: HidDeviceOptions = {}): HidDevice<HidMouse> {
  return build(new HidMouse(opts.queueCapacity), ProductId.mouse, 'Virtual Mouse', opts);
}
