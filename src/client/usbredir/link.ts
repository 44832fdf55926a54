import type { Negotiation } from '../../protocol/usbredir/negotiation.js';
import type { Packet } from '../../protocol/usbredir/packets.js';
import type { Transfer } from '../../usb/transfer.js';
import type { Logger } from '../../util/log.js';

/** What a device and its stream helpers need from the connection they live on. */
export interface DeviceLink {
  readonly neg: Negotiation;
  readonly log: Logger;
  send(p: Packet): void;
  /** The host broke the protocol: log once with `reason` and close the connection. */
  fail(reason: string): void;
}

/** A transfer waiting for the data a host pushes (interrupt IN, iso). */
export interface Parked {
  transfer: Transfer;
  resolve: () => void;
}
