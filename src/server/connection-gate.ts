import type net from 'node:net';
import type { Logger } from '../util/log.js';
import { DEFAULT_SERVER_LIMITS, type ServerLimits } from './limits.js';

/**
 * Counts the connections of a server process, shared by all its listeners, and turns away those
 * over the total or per-address cap before any protocol byte is read: a client cannot exhaust
 * file descriptors or memory by opening connections.
 */
export class ConnectionGate {
  readonly #max: number;
  readonly #maxPerAddress: number;
  readonly #log: Logger;
  readonly #perAddress = new Map<string, number>();
  #total = 0;

  constructor(limits: Pick<ServerLimits, 'maxConnections' | 'maxConnectionsPerAddress'>, log: Logger) {
    this.#max = limits.maxConnections ?? DEFAULT_SERVER_LIMITS.maxConnections;
    this.#maxPerAddress = limits.maxConnectionsPerAddress ?? DEFAULT_SERVER_LIMITS.maxConnectionsPerAddress;
    this.#log = log;
  }

  get total(): number {
    return this.#total;
  }

  /** True when the connection may proceed; otherwise it has been closed with a log line. */
  admit(socket: net.Socket, what: string): boolean {
    const address = socket.remoteAddress ?? '?';
    const fromAddress = this.#perAddress.get(address) ?? 0;
    let refusal: string | undefined;
    if (this.#total >= this.#max) refusal = `${this.#total} connections open (limit ${this.#max})`;
    else if (fromAddress >= this.#maxPerAddress) {
      refusal = `${fromAddress} connections from ${address} open (limit ${this.#maxPerAddress} per address)`;
    }
    if (refusal) {
      this.#log.warn(`${what} connection from ${address} refused: ${refusal}`);
      socket.on('error', () => {});
      socket.destroy();
      return false;
    }
    this.#total++;
    this.#perAddress.set(address, fromAddress + 1);
    socket.once('close', () => {
      this.#total--;
      const n = (this.#perAddress.get(address) ?? 1) - 1;
      if (n === 0) this.#perAddress.delete(address);
      else this.#perAddress.set(address, n);
    });
    return true;
  }
}
