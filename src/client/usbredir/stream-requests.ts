import { Cap, EndpointKind, endpointIndex, Status, PacketType as T } from '../../protocol/usbredir/constants.js';
import type { BulkStreamsStatusPacket } from '../../protocol/usbredir/packets.js';
import { TransferStatus } from '../../usb/status.js';
import { hex2 } from '../../util/hex.js';
import type { EndpointTable } from './endpoints.js';
import type { DeviceLink } from './link.js';
import { replyStatus } from './standard-requests.js';

interface Waiting {
  mask: number;
  streams: number;
  resolve: (s: TransferStatus) => void;
  timer: NodeJS.Timeout;
}

/** alloc_bulk_streams / free_bulk_streams, answered in order by bulk_streams_status. */
export class StreamRequests {
  readonly #link: DeviceLink;
  readonly #table: EndpointTable;
  readonly #timeoutMs: number;
  readonly #waiting: Waiting[] = [];

  constructor(link: DeviceLink, table: EndpointTable, timeoutMs: number) {
    this.#link = link;
    this.#table = table;
    this.#timeoutMs = timeoutMs;
  }

  /** Resolves with `streams` once the host granted them all (usbredir has no partial grant). */
  alloc(endpoints: number[], streams: number): Promise<number | TransferStatus> {
    const refused = this.#check(endpoints) ?? (streams < 1 ? `${streams} streams` : undefined);
    const tooMany = endpoints.find((ep) => this.#table.get(ep).maxStreams < streams);
    const why =
      refused ?? (tooMany === undefined ? undefined : `ep ${hex2(tooMany)} has fewer than ${streams} streams`);
    if (why) return this.#refuse(why);
    const mask = maskOf(endpoints);
    this.#link.send({ type: T.AllocBulkStreams, id: 0n, endpoints: mask, noStreams: streams });
    return this.#wait(mask, streams).then((s) => (s === TransferStatus.Ok ? streams : s));
  }

  free(endpoints: number[]): Promise<TransferStatus> {
    const why = this.#check(endpoints);
    if (why) return this.#refuse(why);
    const mask = maskOf(endpoints);
    this.#link.send({ type: T.FreeBulkStreams, id: 0n, endpoints: mask });
    return this.#wait(mask, 0);
  }

  status(p: BulkStreamsStatusPacket): void {
    const w = this.#waiting.shift();
    if (!w) {
      this.#link.log.warn(`bulk_streams_status nobody asked for (endpoints 0x${p.endpoints.toString(16)})`);
      return;
    }
    clearTimeout(w.timer);
    let status = replyStatus(p.status, false);
    if (status === TransferStatus.Ok && (p.endpoints !== w.mask || p.noStreams !== w.streams)) {
      this.#link.log.warn(
        `bulk_streams_status for 0x${p.endpoints.toString(16)}/${p.noStreams}, asked 0x${w.mask.toString(16)}/${w.streams}`,
      );
      status = TransferStatus.IoError;
    }
    if (p.status !== Status.Success) this.#link.log.warn(`host refused bulk streams: status ${p.status}`);
    w.resolve(status);
  }

  /** The device is gone: every request outstanding ends with NoDevice. */
  abandon(): void {
    for (const w of this.#waiting.splice(0)) {
      clearTimeout(w.timer);
      w.resolve(TransferStatus.NoDevice);
    }
  }

  #check(endpoints: number[]): string | undefined {
    if (!this.#link.neg.both(Cap.BulkStreams)) return 'the host lacks bulk_streams';
    if (endpoints.length === 0) return 'no endpoints';
    const bad = endpoints.find((ep) => this.#table.get(ep).type !== EndpointKind.Bulk);
    return bad === undefined ? undefined : `ep ${hex2(bad)} is not a bulk endpoint`;
  }

  #refuse(why: string): Promise<TransferStatus> {
    this.#link.log.debug(`bulk streams request refused: ${why}`);
    return Promise.resolve(TransferStatus.Invalid);
  }

  #wait(mask: number, streams: number): Promise<TransferStatus> {
    return new Promise((resolve) => {
      const timer = setTimeout(
        () => this.#link.fail(`no bulk_streams_status within ${this.#timeoutMs} ms`),
        this.#timeoutMs,
      );
      this.#waiting.push({ mask, streams, resolve, timer });
    });
  }
}

function maskOf(endpoints: number[]): number {
  let mask = 0;
  for (const ep of endpoints) mask |= 1 << endpointIndex(ep);
  return mask >>> 0;
}
