import type { UsbSpeed } from '../../usb/speed.js';
import { DeviceSpecError, registerDeviceClass } from '../classes.js';
import { createGadgetZero, type GadgetZeroOptions } from './index.js';

type SpecOptions = Pick<GadgetZeroOptions, 'pattern' | 'speed' | 'loopDefault'>;

/** "", or comma-separated pattern=0|1|2, speed=full|high, loopback (g_zero's module parameters). */
export function parseGadgetZeroSpec(spec: string | undefined): SpecOptions {
  const o: SpecOptions = {};
  for (const opt of (spec ?? '').split(',').filter(Boolean)) {
    const [key, value] = opt.split('=', 2);
    if (key === 'pattern' && (value === '0' || value === '1' || value === '2')) o.pattern = Number(value) as 0 | 1 | 2;
    else if (key === 'speed' && (value === 'full' || value === 'high')) o.speed = value as UsbSpeed;
    else if (key === 'loopback' && value === undefined) o.loopDefault = true;
    else throw new DeviceSpecError(`unknown option "${opt}" (known: pattern=0|1|2, speed=full|high, loopback)`);
  }
  return o;
}

registerDeviceClass<SpecOptions>({
  name: 'gadget-zero',
  usage: '[pattern=0|1|2][,speed=full|high][,loopback]',
  summary:
    "the kernel's g_zero test device (source/sink + loopback) for usbtest/testusb; high speed, zeros, source/sink first by default",
  parse: parseGadgetZeroSpec,
  async create(o, ctx) {
    return createGadgetZero({ ...o, name: `gadget zero #${ctx.index + 1}` });
  },
});
