/**
 * Outcome of a transfer, protocol-neutral. Each protocol codec maps these to its own codes
 * (USB/IP: negative errno; usbredir: status byte).
 */
export enum TransferStatus {
  Ok = 'ok',
  /** Endpoint halted (USB STALL handshake). */
  Stall = 'stall',
  /** Cancelled by the requester before completion. */
  Cancelled = 'cancelled',
  /** Device is gone. */
  NoDevice = 'no-device',
  /** Device sent more data than the buffer holds. */
  Babble = 'babble',
  Timeout = 'timeout',
  /** The request itself was invalid (bad endpoint, bad length...). */
  Invalid = 'invalid',
  /** Short IN transfer while the requester asked for short-not-ok. */
  ShortPacket = 'short-packet',
  /** Any other I/O failure. */
  IoError = 'io-error',
}
