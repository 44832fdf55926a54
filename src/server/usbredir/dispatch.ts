import { PacketType as T } from '../../protocol/usbredir/constants.js';
import type { Packet } from '../../protocol/usbredir/packets.js';
import type { ConfigurationRequests } from './configuration.js';
import type { HostContext } from './context.js';
import type { DataRequests } from './data-requests.js';
import type { DeviceLifecycle } from './device-lifecycle.js';
import { describePacket } from './format.js';

export interface RequestHandlers {
  host: HostContext;
  data: DataRequests;
  configuration: ConfigurationRequests;
  lifecycle: DeviceLifecycle;
}

/** Route a queued guest request to its handler. */
export function dispatchRequest(h: RequestHandlers, p: Packet): Promise<void> | void {
  const { streams, pending } = h.host;
  switch (p.type) {
    case T.ControlPacket:
      return h.data.control(p);
    case T.BulkPacket:
      return h.data.bulk(p);
    case T.InterruptPacket:
      return h.data.interruptOut(p);
    case T.IsoPacket:
      return streams.isoOut(p);
    case T.CancelDataPacket:
      return pending.cancel(p.id);
    case T.SetConfiguration:
      return h.configuration.setConfiguration(p.id, p.configuration);
    case T.GetConfiguration:
      return h.configuration.getConfiguration(p.id);
    case T.SetAltSetting:
      return h.configuration.setAltSetting(p);
    case T.GetAltSetting:
      return h.configuration.getAltSetting(p.id, p.interface);
    case T.Reset:
      return h.configuration.reset();
    case T.StartInterruptReceiving:
      return streams.startInterrupt(p.id, p.endpoint);
    case T.StopInterruptReceiving:
      return streams.stop('interrupt', p.id, p.endpoint);
    case T.StartIsoStream:
      return streams.startIso(p);
    case T.StopIsoStream:
      return streams.stop('iso', p.id, p.endpoint);
    case T.StartBulkReceiving:
      return streams.startBulkReceiving(p);
    case T.StopBulkReceiving:
      return streams.stop('bulk', p.id, p.endpoint, p.streamId);
    case T.AllocBulkStreams:
      return h.host.bulkStreams.alloc(p);
    case T.FreeBulkStreams:
      return h.host.bulkStreams.free(p);
    case T.FilterFilter:
      return h.lifecycle.filterFilter(p.filter);
    case T.FilterReject:
      return h.lifecycle.filterReject();
    default:
      // Everything else is host-to-guest only and stopped by the parser.
      h.host.log.warn(`unexpected ${describePacket(p)}`);
  }
}
