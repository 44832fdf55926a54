export type ProtocolErrorReason =
  | 'unknown-type'
  | 'wrong-direction'
  | 'packet-too-long'
  | 'length-too-short'
  | 'unexpected-data'
  | 'data-length-mismatch'
  | 'too-many-interfaces'
  | 'transfer-too-long'
  | 'missing-capability'
  | 'not-an-in-endpoint'
  | 'bad-filter-data'
  | 'bad-value'
  /** A reply the receiver did not ask for, or with more data than it asked for. */
  | 'unexpected-reply';

/**
 * A packet that breaks the usbredir rules (the cases usbredirparser.c rejects), found while
 * parsing what the peer sent or while encoding what we were asked to send.
 */
export class UsbredirProtocolError extends Error {
  override name = 'UsbredirProtocolError';
  readonly reason: ProtocolErrorReason;
  readonly packetType: number | undefined;

  constructor(reason: ProtocolErrorReason, message: string, packetType?: number) {
    super(message);
    this.reason = reason;
    this.packetType = packetType;
  }
}
