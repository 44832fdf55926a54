import type { Packet } from '../../protocol/usbredir/packets.js';
import type { UsbDevice } from '../../usb/device.js';
import type { Logger } from '../../util/log.js';
import type { TransferTrace } from '../../util/trace.js';
import type { BulkStreams } from './bulk-streams.js';
import type { GuestDevice } from './guest-device.js';
import type { InFlightTransfers } from './in-flight.js';
import type { PendingRequests } from './pending.js';
import type { EndpointStreams } from './streams.js';

/** What the request handlers share with their session. */
export interface HostContext {
  readonly device: UsbDevice;
  readonly log: Logger;
  readonly guest: GuestDevice;
  readonly pending: PendingRequests;
  readonly streams: EndpointStreams;
  /** USB 3 bulk streams allocated on the device (not to be confused with `streams`). */
  readonly bulkStreams: BulkStreams;
  readonly transfers: InFlightTransfers;
  send(packet: Packet, trace?: TransferTrace): void;
}
