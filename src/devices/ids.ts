/**
 * USB ids of usbwire's emulated devices: pid.codes' open-source test vendor, one product id per
 * device class, so a host tells them apart by VID:PID as well as by interface class.
 * (Gadget zero keeps the NetChip ids of the kernel's g_zero, which usbtest binds to.)
 */
export const USBWIRE_VENDOR_ID = 0x1209;

export const ProductId = {
  massStorage: 0x0001,
  keyboard: 0x0002,
  mouse: 0x0003,
  serial: 0x0004,
} as const;
