import { DeviceSpecError, registerDeviceClass } from '../classes.js';
import { createGadgetZero } from './index.js';

registerDeviceClass<Record<string, never>>({
  name: 'gadget-zero',
  usage: undefined,
  summary: "the kernel's g_zero test device (source/sink + loopback) for usbtest/testusb; high speed",
  parse(spec) {
    if (spec !== undefined) throw new DeviceSpecError('--gadget-zero takes no value');
    return {};
  },
  async create(_o, ctx) {
    return createGadgetZero({ name: `gadget zero #${ctx.index + 1}` });
  },
});
