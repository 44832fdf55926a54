import type { UsbSpeed } from '../../usb/speed.js';
import { type ConfigurationSpec, EmulatedDevice } from '../emulated-device.js';
import { LoopbackFunction, type LoopbackOptions } from './loopback.js';
import { SourceSinkFunction, type SourceSinkOptions } from './source-sink.js';

export { LB_BULK_IN, LB_BULK_OUT, LoopbackFunction } from './loopback.js';
export { fillPattern, type GadgetZeroPattern, patternMismatch } from './pattern.js';
export {
  REQ_CONTROL_READ,
  REQ_CONTROL_WRITE,
  SourceSinkFunction,
  SS_BULK_IN,
  SS_BULK_OUT,
  SS_ISO_IN,
  SS_ISO_OUT,
} from './source-sink.js';

/** NetChip's IDs for Linux-USB "Gadget Zero": usbtest binds them (with iso and ctrl_out tests). */
export const GZERO_VENDOR_ID = 0x0525;
export const GZERO_PRODUCT_ID = 0xa4a0;
export const GZERO_SOURCE_SINK_CONFIG = 3;
export const GZERO_LOOPBACK_CONFIG = 2;
/** zero.c's default serial: "takes at least two packets". */
export const GZERO_SERIAL = '0123456789.0123456789.0123456789';

export interface GadgetZeroOptions extends SourceSinkOptions, LoopbackOptions {
  name?: string;
  speed?: UsbSpeed;
  /** zero.c's `loopdefault`: the loopback configuration first. */
  loopDefault?: boolean;
}

/**
 * The kernel's g_zero (drivers/usb/gadget/legacy/zero.c): a vendor-specific, self-powered
 * device with two configurations, source/sink (3) and loopback (2), for usbtest and testusb.
 */
export function createGadgetZero(opts: GadgetZeroOptions = {}): EmulatedDevice {
  const sourceSink: ConfigurationSpec = {
    value: GZERO_SOURCE_SINK_CONFIG,
    name: 'source and sink data',
    functions: [new SourceSinkFunction(opts)],
  };
  const loopback: ConfigurationSpec = {
    value: GZERO_LOOPBACK_CONFIG,
    name: 'loop input to output',
    functions: [
      new LoopbackFunction({
        ...(opts.qlen ? { qlen: opts.qlen } : {}),
        ...(opts.bulkBuflen ? { buflen: opts.bulkBuflen } : {}),
      }),
    ],
  };
  return new EmulatedDevice({
    name: opts.name ?? 'gadget zero',
    speed: opts.speed ?? 'high',
    vendorId: GZERO_VENDOR_ID,
    productId: GZERO_PRODUCT_ID,
    bcdDevice: 0x0601,
    deviceClass: 0xff,
    manufacturer: 'usbwire',
    product: 'Gadget Zero',
    serial: GZERO_SERIAL,
    selfPowered: true,
    // CONFIG_USB_GADGET_VBUS_DRAW's default.
    maxPowerMa: 2,
    configurations: opts.loopDefault ? [loopback, sourceSink] : [sourceSink, loopback],
  });
}
