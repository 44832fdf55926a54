/** USB/IP wire constants (protocol 1.1.1). All multi-byte fields are big-endian. */

export const USBIP_VERSION = 0x0111;
export const USBIP_DEFAULT_PORT = 3240;

export const OP_REQ_DEVLIST = 0x8005;
export const OP_REP_DEVLIST = 0x0005;
export const OP_REQ_IMPORT = 0x8003;
export const OP_REP_IMPORT = 0x0003;

/** Op reply status (tools/usb/usbip/libsrc/usbip_common.h). */
export const OpStatus = {
  Ok: 0,
  NotAvailable: 1,
  DevBusy: 2,
  DevError: 3,
  NoDev: 4,
  Error: 5,
} as const;

export const USBIP_CMD_SUBMIT = 1;
export const USBIP_CMD_UNLINK = 2;
export const USBIP_RET_SUBMIT = 3;
export const USBIP_RET_UNLINK = 4;

export const USBIP_DIR_OUT = 0;
export const USBIP_DIR_IN = 1;

/** transfer_flags on the wire (include/uapi/linux/usbip.h). */
export const UrbFlag = {
  ShortNotOk: 0x0001,
  IsoAsap: 0x0002,
  NoTransferDmaMap: 0x0004,
  ZeroPacket: 0x0040,
  NoInterrupt: 0x0080,
  FreeBuffer: 0x0100,
  DirIn: 0x0200,
} as const;

/** Negative of these goes on the wire (asm-generic numbering). */
export const Errno = {
  ENOENT: 2,
  EXDEV: 18,
  ENODEV: 19,
  EINVAL: 22,
  EPIPE: 32,
  ETIME: 62,
  ENOSR: 63,
  ECOMM: 70,
  EPROTO: 71,
  EOVERFLOW: 75,
  EILSEQ: 84,
  ECONNRESET: 104,
  ESHUTDOWN: 108,
  ETIMEDOUT: 110,
  EINPROGRESS: 115,
  EREMOTEIO: 121,
} as const;

/** Linux enum usb_device_speed. */
export const LinuxSpeed = {
  Unknown: 0,
  Low: 1,
  Full: 2,
  High: 3,
  Wireless: 4,
  Super: 5,
  SuperPlus: 6,
} as const;

export const OP_COMMON_SIZE = 8;
export const BUSID_SIZE = 32;
export const PATH_SIZE = 256;
export const USB_DEVICE_SIZE = 312;
export const USB_INTERFACE_SIZE = 4;
export const URB_HEADER_SIZE = 48;
export const ISO_DESCRIPTOR_SIZE = 16;

/** USBIP_MAX_ISO_PACKETS in usbip-host: more is rejected. */
export const MAX_ISO_PACKETS = 1024;

/**
 * Default cap on transfer_buffer_length. Linux hosts rarely exceed a few MiB per URB
 * (usb-storage max_sectors tops out near 16 MiB, usbfs defaults to 16 MiB for all URBs together),
 * and the server holds an OUT payload fully in memory before submitting it, so 32 MiB leaves
 * headroom without letting one header commit the process to a huge buffer.
 */
export const DEFAULT_MAX_TRANSFER_LENGTH = 32 * 1024 * 1024;

/** A DEVLIST reply claiming more devices than this is treated as corrupt. */
export const MAX_DEVLIST_DEVICES = 4096;
