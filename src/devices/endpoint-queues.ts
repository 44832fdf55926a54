import { TransferStatus } from '../usb/status.js';
import type { Transfer } from '../usb/transfer.js';

interface Pending {
  readonly t: Transfer;
  readonly resolve: () => void;
  /** Still in its endpoint's FIFO (not yet taken by the function). */
  queued: boolean;
}

/** FIFO with O(1) push/shift and lazy removal of entries completed while still queued. */
class Fifo {
  items: (Pending | undefined)[] = [];
  head = 0;
  live = 0;

  push(p: Pending): void {
    this.items.push(p);
    this.live++;
  }

  first(): Pending | undefined {
    while (this.head < this.items.length) {
      const p = this.items[this.head];
      if (p?.queued) return p;
      this.head++;
    }
    this.items = [];
    this.head = 0;
    return undefined;
  }
}

/** One FIFO per endpoint and bulk stream (stream 0: an endpoint without streams). */
function queueKey(endpoint: number, streamId: number): number {
  return streamId * 0x100 + endpoint;
}

/**
 * The host transfers pending on an emulated device's endpoints, one FIFO per endpoint (and per
 * bulk stream on an endpoint with streams): what
 * the kernel's gadget core keeps per `usb_ep` and QEMU parks with `USB_RET_ASYNC`. A transfer
 * is queued until its function takes it, then in progress until completed; cancel, halt,
 * reset and reconfiguration complete it from here in O(1) per transfer, whichever state it is in.
 */
export class EndpointQueues {
  readonly #fifos = new Map<number, Fifo>();
  readonly #pending = new Map<Transfer, Pending>();

  /** Park a transfer; the promise resolves when it is completed by anyone. */
  enqueue(t: Transfer): Promise<void> {
    return new Promise<void>((resolve) => {
      const p: Pending = { t, resolve, queued: true };
      this.#pending.set(t, p);
      const key = queueKey(t.endpoint, t.streamId);
      let fifo = this.#fifos.get(key);
      if (!fifo) {
        fifo = new Fifo();
        this.#fifos.set(key, fifo);
      }
      fifo.push(p);
    });
  }

  /** The oldest transfer waiting on an endpoint (stream), left in place. */
  peek(endpoint: number, streamId = 0): Transfer | undefined {
    return this.#fifos.get(queueKey(endpoint, streamId))?.first()?.t;
  }

  /** Take the oldest waiting transfer: it stays pending (cancellable) until completed. */
  take(endpoint: number, streamId = 0): Transfer | undefined {
    const fifo = this.#fifos.get(queueKey(endpoint, streamId));
    const p = fifo?.first();
    if (!fifo || !p) return undefined;
    p.queued = false;
    fifo.live--;
    fifo.head++;
    return p.t;
  }

  /** Transfers waiting (not yet taken) on an endpoint (stream). */
  waiting(endpoint: number, streamId = 0): number {
    return this.#fifos.get(queueKey(endpoint, streamId))?.live ?? 0;
  }

  /** Complete a pending transfer with the status it carries. Ignored if it is no longer pending. */
  complete(t: Transfer): boolean {
    const p = this.#pending.get(t);
    if (!p) return false;
    this.#pending.delete(t);
    if (p.queued) {
      p.queued = false;
      const fifo = this.#fifos.get(queueKey(t.endpoint, t.streamId));
      if (fifo) fifo.live--;
    }
    p.resolve();
    return true;
  }

  /** Fail a pending transfer with `status`; false if it was not pending. */
  fail(t: Transfer, status: TransferStatus): boolean {
    if (!this.#pending.has(t)) return false;
    t.fail(status);
    return this.complete(t);
  }

  cancel(t: Transfer): boolean {
    return this.fail(t, TransferStatus.Cancelled);
  }

  /** Fail everything pending on the given endpoints (all when omitted), queued or taken. */
  flush(status: TransferStatus, endpoints?: ReadonlySet<number>): void {
    const doomed: Transfer[] = [];
    for (const t of this.#pending.keys()) if (!endpoints || endpoints.has(t.endpoint)) doomed.push(t);
    for (const t of doomed) this.fail(t, status);
    if (!endpoints) this.#fifos.clear();
    else for (const key of [...this.#fifos.keys()]) if (endpoints.has(key & 0xff)) this.#fifos.delete(key);
  }

  get size(): number {
    return this.#pending.size;
  }
}
