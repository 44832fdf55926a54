import { EndpointKind, Status } from '../../protocol/usbredir/constants.js';
import type { BulkPacket, ControlPacket, EpInfoEntry, InterruptPacket } from '../../protocol/usbredir/packets.js';
import { type SetupPacket, StandardRequest } from '../../usb/setup.js';
import { TransferStatus } from '../../usb/status.js';
import { Transfer } from '../../usb/transfer.js';
import { hex2 } from '../../util/hex.js';
import { type TransferTrace, traceRequest } from '../../util/trace.js';
import type { HostContext } from './context.js';
import type { RequestPacket } from './pending.js';

/** control, bulk and interrupt OUT packets: checked, then submitted as one pending request each. */
export class DataRequests {
  readonly #host: HostContext;
  /** USBWIRE_TRACE only: bulk packets received, until submitted. */
  readonly #traces = new WeakMap<BulkPacket, TransferTrace>();

  constructor(host: HostContext) {
    this.#host = host;
  }

  /** Start timing a bulk packet as it arrives (USBWIRE_TRACE). */
  trace(p: BulkPacket): void {
    this.#traces.set(p, traceRequest('usbredir', Number(p.id), p.endpoint, p.length));
  }

  control(p: ControlPacket): void {
    if (!this.#endpointFor(p, EndpointKind.Control, 'control')) return;
    const isIn = (p.endpoint & 0x80) !== 0;
    const setup: SetupPacket = {
      bmRequestType: p.requestType,
      bRequest: p.request,
      wValue: p.value,
      wIndex: p.index,
      wLength: p.length,
    };
    const t = new Transfer({
      type: 'control',
      endpoint: p.endpoint & 0x80,
      setup,
      length: p.length,
      data: isIn ? undefined : p.data,
    });
    const changesLayout =
      (p.requestType === 0x00 && p.request === StandardRequest.SetConfiguration) ||
      (p.requestType === 0x01 && p.request === StandardRequest.SetInterface);
    const { guest, bulkStreams } = this.#host;
    this.#host.pending.submit(p, t, (done) => {
      if (!changesLayout || done.status !== TransferStatus.Ok) return;
      // The device dropped the streams of the endpoints whose layout changed.
      bulkStreams.forget(
        p.request === StandardRequest.SetInterface ? guest.interfaceEndpoints(p.index & 0xff) : undefined,
      );
      // A guest that sends these raw still needs fresh info before the reply.
      if (guest.refresh()) guest.sendInfo();
    });
  }

  bulk(p: BulkPacket): void {
    if (!this.#endpointFor(p, EndpointKind.Bulk, 'bulk')) return;
    const badStream = this.#host.bulkStreams.check(p);
    if (badStream) {
      this.#host.log.warn(badStream);
      // In line with the endpoint's plain bulk requests when it has no streams.
      this.#host.pending.refuse(p, Status.Inval, this.#host.bulkStreams.has(p.endpoint) ? p.streamId : 0);
      return;
    }
    const isIn = (p.endpoint & 0x80) !== 0;
    const t = new Transfer({
      type: 'bulk',
      endpoint: p.endpoint,
      length: p.length,
      data: isIn ? undefined : p.data,
      streamId: p.streamId,
    });
    this.#host.pending.submit(p, t, undefined, this.#traces.get(p));
  }

  interruptOut(p: InterruptPacket): void {
    const ep = this.#endpointFor(p, EndpointKind.Interrupt, 'interrupt');
    if (!ep) return;
    if (p.data.length > ep.maxPacketSize) {
      this.#refuse(p, Status.Inval, `interrupt OUT of ${p.data.length} bytes > max packet ${ep.maxPacketSize}`);
      return;
    }
    this.#host.pending.submit(p, new Transfer({ type: 'interrupt', endpoint: p.endpoint, data: p.data }));
  }

  /** The packet's endpoint if the device is attached and the endpoint is of `kind`; else refused. */
  #endpointFor(p: RequestPacket, kind: number, name: string): EpInfoEntry | undefined {
    if (!this.#host.guest.attached) {
      this.#refuse(p, Status.IoError);
      return undefined;
    }
    const ep = this.#host.guest.endpoint(p.endpoint);
    if (ep.type !== kind) {
      this.#refuse(p, Status.Inval, `${name} packet on non-${name} ep ${hex2(p.endpoint)}`);
      return undefined;
    }
    return ep;
  }

  /** Answered without the device, in order with the requests before it on that endpoint. */
  #refuse(p: RequestPacket, status: number, why?: string): void {
    if (why) this.#host.log.warn(why);
    this.#host.pending.refuse(p, status);
  }
}
