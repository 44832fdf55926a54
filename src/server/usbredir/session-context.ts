import type { EpInfoEntry, Packet } from '../../protocol/usbredir/packets.js';
import type { UsbDevice } from '../../usb/device.js';
import type { Transfer } from '../../usb/transfer.js';
import type { Logger } from '../../util/log.js';
import type { TransferTrace } from '../../util/trace.js';
import type { InFlightBudget } from '../read-throttle.js';

/** What the pending-transfer and stream helpers need from their session. */
export interface SessionContext {
  readonly device: UsbDevice;
  readonly log: Logger;
  /** The device is attached to the guest (device_connect sent, not disconnected or rejected). */
  readonly attached: boolean;
  send(packet: Packet, trace?: TransferTrace): void;
  /** ep_info entry for an endpoint address. */
  endpoint(address: number): EpInfoEntry;
  /** The socket has so much queued that stream data (interrupt/iso/buffered bulk in) is dropped. */
  congested(): boolean;
  /** Submit to the device, tracked so teardown can wait for every transfer. */
  submit(transfer: Transfer): Promise<void>;
  /** The connection's in-flight accounting (back-pressure): one acquire, one release per request. */
  readonly budget: InFlightBudget;
}
