import { DeviceSpecError, registerDeviceClass } from '../classes.js';
import { createKeyboard, createMouse } from './index.js';

function noValue(flag: string) {
  return (spec: string | undefined): undefined => {
    if (spec !== undefined) throw new DeviceSpecError(`--${flag} takes no value`);
    return undefined;
  };
}

registerDeviceClass<undefined>({
  name: 'keyboard',
  usage: undefined,
  summary: 'a USB boot keyboard (HID); usbwire type/key drive it, usbwire leds reads its LEDs',
  parse: noValue('keyboard'),
  create: async (_o, ctx) => createKeyboard({ index: ctx.index }),
});

registerDeviceClass<undefined>({
  name: 'mouse',
  usage: undefined,
  summary: 'a USB boot mouse (HID, 3 buttons + wheel); usbwire pointer drives it',
  parse: noValue('mouse'),
  create: async (_o, ctx) => createMouse({ index: ctx.index }),
});
