import { USBIP_DEFAULT_PORT } from '../../protocol/usbip/constants.js';
import { UsbipProtocolError } from '../../protocol/usbip/errors.js';
import { encodeReqDevlist, type UsbipDevlistEntry } from '../../protocol/usbip/op.js';
import { UsbipParser } from '../../protocol/usbip/parser.js';
import type { ConnectSecurity } from '../../transport/credentials.js';
import { PduWriter } from '../../transport/pdu-writer.js';
import { connectSecure } from '../../transport/secure.js';
import { formatHostPort, type HostPort, parseHostPort } from '../../util/host-port.js';
import { createLogger, type Logger } from '../../util/log.js';
import { RemoteUsbipDevice } from './remote-device.js';

export interface UsbipClientOptions {
  /** Connect, op reply and descriptor read timeout (default 10 s). */
  timeoutMs?: number;
  /** Largest transfer accepted in either direction (default: the codec's 32 MiB). */
  maxTransferLength?: number;
  logger?: Logger;
  /** TLS to the server; plain TCP without. */
  security?: ConnectSecurity | undefined;
}

export type Address = HostPort | string;

function toHostPort(a: Address): HostPort {
  return typeof a === 'string' ? parseHostPort(a, USBIP_DEFAULT_PORT) : a;
}

/** USB/IP client: lists a server's devices and imports them as UsbDevices. */
export class UsbipClient {
  readonly #timeoutMs: number;
  readonly #maxTransferLength: number | undefined;
  readonly #log: Logger;
  readonly #security: ConnectSecurity | undefined;

  constructor(options: UsbipClientOptions = {}) {
    this.#security = options.security;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#maxTransferLength = options.maxTransferLength;
    this.#log = options.logger ?? createLogger('usbip-client');
  }

  /** OP_REQ_DEVLIST on a fresh connection (the server closes it after the reply). */
  async listDevices(address: Address): Promise<UsbipDevlistEntry[]> {
    const where = toHostPort(address);
    const socket = await connectSecure(where, this.#security, this.#timeoutMs);
    try {
      return await new Promise<UsbipDevlistEntry[]>((resolve, reject) => {
        const fail = (why: string) => reject(new Error(`device list from ${formatHostPort(where)}: ${why}`));
        const timer = setTimeout(() => fail(`no reply within ${this.#timeoutMs} ms`), this.#timeoutMs);
        const parser = new UsbipParser({ role: 'client', maxTransferLength: this.#maxTransferLength }, (p) => {
          clearTimeout(timer);
          if (p.kind !== 'op-rep-devlist') return fail(`unexpected ${p.kind}`);
          if (p.status !== 0) return fail(`status ${p.status}`);
          resolve(p.devices);
        });
        socket.on('data', (chunk: Buffer) => {
          try {
            parser.push(chunk);
          } catch (err) {
            clearTimeout(timer);
            fail(err instanceof UsbipProtocolError ? `${err.reason}: ${err.message}` : String(err));
          }
        });
        socket.once('close', () => {
          clearTimeout(timer);
          fail('connection closed before the reply');
        });
        socket.on('error', () => {});
        new PduWriter(socket).write(encodeReqDevlist());
      });
    } finally {
      socket.destroy();
    }
  }

  /** OP_REQ_IMPORT, then descriptors over EP0; the connection stays open for URBs. */
  async importDevice(address: Address, busid: string): Promise<RemoteUsbipDevice> {
    const device = await RemoteUsbipDevice.import(toHostPort(address), busid, {
      maxTransferLength: this.#maxTransferLength,
      timeoutMs: this.#timeoutMs,
      logger: this.#log,
      security: this.#security,
    });
    this.#log.info(`imported ${device.name}`);
    return device;
  }
}
