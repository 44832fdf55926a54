/** Why a USB/IP byte stream was rejected; the connection cannot be resynchronised after one. */
export type UsbipErrorReason =
  | 'truncated'
  | 'bad-version'
  | 'unknown-op'
  | 'unknown-command'
  | 'unexpected-packet'
  | 'transfer-too-long'
  | 'bad-length'
  | 'bad-packet-count'
  | 'bad-iso-descriptor'
  | 'unknown-seqnum'
  | 'too-many-devices'
  | 'bad-field';

export class UsbipProtocolError extends Error {
  override name = 'UsbipProtocolError';
  constructor(
    readonly reason: UsbipErrorReason,
    message: string,
  ) {
    super(message);
  }
}
