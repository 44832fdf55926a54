import type { ParsedEndpoint } from '../../usb/descriptors.js';
import type { UsbSpeed } from '../../usb/speed.js';

/**
 * urb->interval as a Linux host driver fills it (usb_fill_int_urb, and the iso drivers' 1 << (bInterval - 1)):
 * frames at low/full speed for interrupt endpoints, else a power of two in (micro)frames. The
 * kernel's usbip-host passes the CMD_SUBMIT interval to usb_submit_urb, which refuses 0 for
 * interrupt and iso endpoints — and the stub then drops the whole connection. Requests that come
 * without one (usbredir carries none) get this.
 */
export function linuxInterval(ep: ParsedEndpoint, speed: UsbSpeed): number {
  const exponent = Math.min(16, Math.max(1, ep.interval));
  if (ep.type === 'interrupt' && (speed === 'low' || speed === 'full')) return Math.max(1, ep.interval);
  return 1 << (exponent - 1);
}
