import type { Duplex } from 'node:stream';
import { Cap, PacketType as T } from '../../protocol/usbredir/constants.js';
import { checkFilter, FilterParseError, type FilterRule, parseFilter } from '../../protocol/usbredir/filter.js';
import type { Negotiation } from '../../protocol/usbredir/negotiation.js';
import { hex4 } from '../../util/hex.js';
import type { HostContext } from './context.js';
import { filterInfo } from './device-info.js';
import { quiesceAndReset } from './quiesce.js';

/** What the device lifecycle needs from its session besides the shared context. */
export interface LifecycleHooks {
  socket: Duplex;
  neg: Negotiation;
  /** How long to wait for device_disconnect_ack. */
  ackTimeoutMs: number;
  /** The session is closing or closed. */
  ending(): boolean;
  /** Queue work behind everything received before it. */
  run(work: () => Promise<void> | void): Promise<void>;
  /** The device went away and the guest has been told. */
  gone(): Promise<void>;
  /** The device is free for others. */
  release(): void;
}

/**
 * The device's presence at the guest: device_connect (subject to the guest's filter),
 * device_disconnect and its ack, filter_reject, and the device unplugging itself.
 */
export class DeviceLifecycle {
  readonly #host: HostContext;
  readonly #hooks: LifecycleHooks;
  /** The guest's filter (filter_filter), carried over to the next device on the connection. */
  filter: FilterRule[] | undefined;
  #ackWaiter: (() => void) | undefined;
  readonly #onDeviceDisconnect = () => this.#deviceDisconnected();

  constructor(host: HostContext, hooks: LifecycleHooks) {
    this.#host = host;
    this.#hooks = hooks;
  }

  watchDevice(): void {
    this.#host.device.on('disconnect', this.#onDeviceDisconnect);
  }

  unwatchDevice(): void {
    this.#host.device.off('disconnect', this.#onDeviceDisconnect);
  }

  /** The connection closed: stop waiting for an ack. True if the device had been released already. */
  connectionClosed(): boolean {
    const { guest } = this.#host;
    this.unwatchDevice();
    this.#ackWaiter?.();
    const wasReleased = guest.state === 'released';
    guest.state = 'released';
    return wasReleased;
  }

  attach(): void {
    const { device, guest, log } = this.#host;
    if (guest.state !== 'pending' || this.#hooks.ending()) return;
    const view = guest.describe();
    if (!view) {
      this.#hooks.socket.destroy();
      return;
    }
    if (this.filter) {
      const verdict = checkFilter(this.filter, filterInfo(view));
      if (!verdict.allowed) {
        log.info(
          `${device.name} not offered: the guest's filter ${verdict.reason === 'denied' ? 'denies' : 'does not allow'} it`,
        );
        guest.state = 'released';
        this.#hooks.release();
        return;
      }
    }
    guest.view = view;
    guest.sendInfo();
    const d = view.descriptor;
    this.#host.send({
      type: T.DeviceConnect,
      id: 0n,
      speed: view.speed,
      deviceClass: d.deviceClass,
      deviceSubclass: d.deviceSubClass,
      deviceProtocol: d.deviceProtocol,
      vendorId: d.vendorId,
      productId: d.productId,
      deviceVersionBcd: d.bcdDevice,
    });
    guest.state = 'attached';
    const id = `${hex4(d.vendorId)}:${hex4(d.productId)}`;
    log.info(`${device.name} (${id}, ${device.speed} speed) attached to the guest`);
  }

  /**
   * Take the device away from the guest: streams stopped, pending requests answered cancelled,
   * then (if `announce`) device_disconnect, waiting for the guest's ack when it has the cap.
   */
  async detach(announce: boolean): Promise<void> {
    const { streams, pending, guest } = this.#host;
    streams.stopAll(false);
    pending.cancelAll();
    guest.state = 'detached';
    if (!announce) return;
    this.#host.send({ type: T.DeviceDisconnect, id: 0n });
    if (this.#hooks.neg.peerHas(Cap.DeviceDisconnectAck)) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.#host.log.debug('no device_disconnect_ack in time');
          this.#ackWaiter = undefined;
          resolve();
        }, this.#hooks.ackTimeoutMs);
        this.#ackWaiter = () => {
          clearTimeout(timer);
          this.#ackWaiter = undefined;
          resolve();
        };
        this.#hooks.socket.once('close', () => this.#ackWaiter?.());
      });
    }
  }

  disconnectAck(): void {
    if (!this.#ackWaiter) {
      this.#host.log.warn('device_disconnect_ack without a device_disconnect');
      return;
    }
    this.#ackWaiter();
  }

  filterFilter(text: string): void {
    const { guest, log } = this.#host;
    let rules: FilterRule[];
    try {
      rules = parseFilter(text);
    } catch (err) {
      if (!(err instanceof FilterParseError)) throw err;
      log.warn(`ignoring the guest's filter "${text}": ${err.message}`);
      return;
    }
    this.filter = rules;
    log.debug(`guest filter: ${text}`);
    if (guest.attached && guest.view) {
      const verdict = checkFilter(rules, filterInfo(guest.view));
      if (!verdict.allowed) log.info('the attached device does not pass the guest filter; the guest will reject it');
    }
  }

  async filterReject(): Promise<void> {
    const { device, guest, log } = this.#host;
    if (!guest.attached) return;
    log.info(`the guest rejected ${device.name}; releasing it`);
    await this.detach(false);
    await quiesceAndReset(this.#host);
    guest.state = 'released';
    this.#hooks.release();
  }

  #deviceDisconnected(): void {
    const { device, guest, log } = this.#host;
    if (guest.gone) return;
    guest.gone = true;
    log.info(`${device.name} disconnected`);
    void this.#hooks
      .run(async () => {
        if (guest.attached) await this.detach(true);
        guest.state = 'released';
      })
      .then(() => this.#hooks.gone());
  }
}
