import { Status, PacketType as T } from '../../protocol/usbredir/constants.js';
import type { InterruptPacket } from '../../protocol/usbredir/packets.js';
import type { TransferStatus } from '../../usb/status.js';
import { hex2 } from '../../util/hex.js';
import type { DeviceLink, Parked } from './link.js';
import { PacketQueue } from './packet-queue.js';
import { replyStatus } from './standard-requests.js';

/** Interrupt packets kept per endpoint while no transfer asks (usbredir's QEMU keeps 1000). */
export const INTERRUPT_BUFFER_LIMIT = 1000;

/**
 * Interrupt IN on one endpoint, as QEMU's redirect.c does it: the first transfer starts
 * interrupt receiving, the host then polls the endpoint and pushes interrupt_packets, which
 * are buffered until a transfer takes them (one packet per transfer).
 */
export class InterruptReceiver {
  readonly endpoint: number;
  readonly #link: DeviceLink;
  #started = false;
  /** Status of an unsolicited interrupt_receiving_status, reported to the next transfer. */
  #error = 0;
  readonly #buffer = new PacketQueue();
  readonly #waiting: Parked[] = [];
  #warnedDrop = false;

  constructor(link: DeviceLink, endpoint: number) {
    this.#link = link;
    this.endpoint = endpoint;
  }

  get buffered(): number {
    return this.#buffer.length;
  }

  get waiting(): number {
    return this.#waiting.length;
  }

  submit(p: Parked): void {
    if (!this.#started && this.#error === 0) this.#start();
    this.#waiting.push(p);
    this.#pump();
  }

  /** Complete a parked transfer early with `status`; false if it is not parked here. */
  cancel(p: Parked['transfer'], status: TransferStatus): boolean {
    const i = this.#waiting.findIndex((w) => w.transfer === p);
    if (i < 0) return false;
    const [w] = this.#waiting.splice(i, 1);
    w!.transfer.fail(status);
    w!.resolve();
    return true;
  }

  packet(p: InterruptPacket): void {
    if (!this.#started) {
      this.#link.log.debug(`interrupt packet on ep ${hex2(p.endpoint)} while not receiving, dropped`);
      return;
    }
    if (this.#buffer.length >= INTERRUPT_BUFFER_LIMIT) {
      this.#buffer.shift();
      if (!this.#warnedDrop) {
        this.#link.log.warn(
          `ep ${hex2(this.endpoint)}: ${INTERRUPT_BUFFER_LIMIT} interrupt packets unread, dropping the oldest`,
        );
        this.#warnedDrop = true;
      }
    }
    this.#buffer.push({ status: p.status, data: p.data });
    this.#pump();
  }

  status(status: number): void {
    if (!this.#started) return;
    this.#error = status;
    if (status === Status.Stall) {
      this.#link.log.debug(`interrupt receiving on ep ${hex2(this.endpoint)} stopped by the host`);
      this.#started = false;
    }
    this.#pump();
  }

  /** Stop receiving (alt setting or configuration change, reset, disconnect); parked transfers end with `status`. */
  stop(status: TransferStatus, tell: boolean): void {
    if (this.#started && tell) this.#link.send({ type: T.StopInterruptReceiving, id: 0n, endpoint: this.endpoint });
    this.#started = false;
    this.#error = 0;
    this.#buffer.clear();
    for (const w of this.#waiting.splice(0)) {
      w.transfer.fail(status);
      w.resolve();
    }
  }

  #start(): void {
    this.#link.send({ type: T.StartInterruptReceiving, id: 0n, endpoint: this.endpoint });
    this.#started = true;
    this.#warnedDrop = false;
  }

  #pump(): void {
    while (this.#waiting.length > 0) {
      const next = this.#buffer.shift();
      if (next) {
        const w = this.#waiting.shift()!;
        w.transfer.completeIn(next.data, replyStatus(next.status, false));
        w.resolve();
        continue;
      }
      if (this.#error === 0) return;
      const w = this.#waiting.shift()!;
      w.transfer.fail(replyStatus(this.#error, false));
      this.#error = 0;
      w.resolve();
      // After a stall the stream is stopped: the next transfer starts it again, as in QEMU.
      if (!this.#started && this.#waiting.length > 0) this.#start();
    }
  }
}
