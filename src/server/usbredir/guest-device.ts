import { EndpointKind, endpointAddress, endpointIndex, PacketType as T } from '../../protocol/usbredir/constants.js';
import { type EpInfoEntry, NO_ENDPOINT, type Packet } from '../../protocol/usbredir/packets.js';
import type { UsbDevice } from '../../usb/device.js';
import type { Logger } from '../../util/log.js';
import { describeDevice, type RedirDeviceView } from './device-info.js';

export type GuestDeviceState = 'pending' | 'attached' | 'detached' | 'released';

/** The device as the guest sees it: attach state and the interface/endpoint layout last sent. */
export class GuestDevice {
  state: GuestDeviceState = 'pending';
  view: RedirDeviceView | undefined;
  /** The device itself disconnected (it cannot be reset any more). */
  gone = false;
  readonly #device: UsbDevice;
  readonly #log: Logger;
  readonly #send: (p: Packet) => void;

  constructor(device: UsbDevice, log: Logger, send: (p: Packet) => void) {
    this.#device = device;
    this.#log = log;
    this.#send = send;
  }

  get attached(): boolean {
    return this.state === 'attached';
  }

  /** ep_info entry for an endpoint address. */
  endpoint(address: number): EpInfoEntry {
    return this.view?.endpoints[endpointIndex(address)] ?? NO_ENDPOINT;
  }

  hasInterface(n: number): boolean {
    return this.view?.configuration?.interfaces.some((i) => i.number === n) ?? false;
  }

  /** Addresses of the non-control endpoints of an interface. */
  interfaceEndpoints(iface: number): Set<number> {
    const endpoints = new Set<number>();
    this.view?.endpoints.forEach((e, i) => {
      if (e.interface === iface && e.type !== EndpointKind.Control && e.type !== EndpointKind.Invalid) {
        endpoints.add(endpointAddress(i));
      }
    });
    return endpoints;
  }

  /** The device's current layout; undefined (logged) if its descriptors do not parse. */
  describe(): RedirDeviceView | undefined {
    try {
      return describeDevice(this.#device);
    } catch (err) {
      this.#log.error(`cannot describe ${this.#device.name}: ${(err as Error).message}`);
      return undefined;
    }
  }

  /** Re-read the configuration after a change; false if the descriptors no longer parse. */
  refresh(): boolean {
    const view = this.describe();
    if (!view) return false;
    this.view = view;
    return true;
  }

  /** interface_info + ep_info for the current view. */
  sendInfo(): void {
    const view = this.view;
    if (!view) return;
    this.#send({ type: T.InterfaceInfo, id: 0n, interfaces: view.interfaces });
    this.#send({ type: T.EpInfo, id: 0n, endpoints: view.endpoints });
  }
}
