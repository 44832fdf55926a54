import { EndpointKind, endpointAddress, endpointIndex, MAX_ENDPOINTS } from '../../protocol/usbredir/constants.js';
import { type EpInfoEntry, type InterfaceInfoEntry, NO_ENDPOINT } from '../../protocol/usbredir/packets.js';
import { EndpointTypeCode } from '../../usb/descriptors.js';
import type { TransferType } from '../../usb/transfer.js';

/** The interface and endpoint layout the host announced last (interface_info, ep_info). */
export class EndpointTable {
  #endpoints: readonly EpInfoEntry[] = [];
  #interfaces: readonly InterfaceInfoEntry[] = [];

  setEndpoints(entries: readonly EpInfoEntry[]): void {
    this.#endpoints = entries;
  }

  setInterfaces(entries: readonly InterfaceInfoEntry[]): void {
    this.#interfaces = entries;
  }

  get interfaces(): readonly InterfaceInfoEntry[] {
    return this.#interfaces;
  }

  get(address: number): EpInfoEntry {
    return this.#endpoints[endpointIndex(address)] ?? NO_ENDPOINT;
  }

  /** Why a transfer of `type` cannot go to `address`, or undefined when it can. */
  mismatch(address: number, type: TransferType): string | undefined {
    if (type === 'control') return undefined;
    const ep = this.get(address);
    if (ep.type === EndpointTypeCode[type]) return undefined;
    return ep.type === EndpointKind.Invalid ? 'no such endpoint' : `endpoint is of type ${ep.type}`;
  }

  /** Addresses of the non-control endpoints of an interface (all interfaces when undefined). */
  addresses(interfaceNumber?: number): number[] {
    const out: number[] = [];
    for (let i = 0; i < MAX_ENDPOINTS; i++) {
      const ep = this.#endpoints[i];
      if (!ep || ep.type === EndpointKind.Invalid || ep.type === EndpointKind.Control) continue;
      if (interfaceNumber === undefined || ep.interface === interfaceNumber) out.push(endpointAddress(i));
    }
    return out;
  }
}
