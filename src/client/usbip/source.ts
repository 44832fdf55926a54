import { EventEmitter } from 'node:events';
import type { ConnectSecurity } from '../../transport/credentials.js';
import type { DeviceSource, DeviceSourceEvents } from '../../usb/source.js';
import { formatHostPort, type HostPort } from '../../util/host-port.js';
import { createLogger, type Logger } from '../../util/log.js';
import { RemoteUsbipDevice } from './remote-device.js';

export interface UsbipSourceOptions {
  address: HostPort;
  busid: string;
  /** TLS to the server (usbip+tls://); plain TCP without. */
  security?: ConnectSecurity | undefined;
  logger?: Logger;
  /** Connect, import reply, descriptor read and unlink answer timeout (default 10 s). */
  timeoutMs?: number;
  /** First retry delay after a failed import or a disconnect (default 1 s), doubling up to... */
  minRetryMs?: number;
  /** ...this (default 30 s). An import that stayed up at least this long starts over at the minimum. */
  maxRetryMs?: number;
}

type State = 'idle' | 'importing' | 'imported' | 'waiting' | 'closed';

/**
 * `--remote usbip://HOST:PORT/BUSID`: imports one device from a USB/IP server and keeps it
 * imported. A failed import (refused, busy, unreachable, bad reply) or a disconnect (server gone,
 * connection cut) is retried with backoff; each successful import is a `device` event with a new
 * RemoteUsbipDevice. Logs each change of state once; repeated failures for the same reason go
 * to debug.
 */
export class UsbipSource extends EventEmitter<DeviceSourceEvents> implements DeviceSource {
  readonly description: string;
  readonly #address: HostPort;
  readonly #busid: string;
  readonly #security: ConnectSecurity | undefined;
  readonly #log: Logger;
  readonly #timeoutMs: number | undefined;
  readonly #minRetryMs: number;
  readonly #maxRetryMs: number;
  #state: State = 'idle';
  #delay: number;
  #timer: NodeJS.Timeout | undefined;
  #abort: AbortController | undefined;
  #attempt: Promise<void> | undefined;
  #device: RemoteUsbipDevice | undefined;
  #lastFailure: string | undefined;

  constructor(opts: UsbipSourceOptions) {
    super();
    this.#address = opts.address;
    this.#busid = opts.busid;
    this.#security = opts.security;
    this.description = `usbip${opts.security ? '+tls' : ''}://${formatHostPort(opts.address)}/${opts.busid}`;
    this.#log = opts.logger ?? createLogger('usbip-source');
    this.#timeoutMs = opts.timeoutMs;
    this.#minRetryMs = opts.minRetryMs ?? 1000;
    this.#maxRetryMs = Math.max(opts.maxRetryMs ?? 30_000, this.#minRetryMs);
    this.#delay = this.#minRetryMs;
  }

  get state(): State {
    return this.#state;
  }

  start(): void {
    if (this.#state !== 'idle') return;
    this.#log.info(`${this.description}: importing`);
    this.#import();
  }

  #import(): void {
    this.#timer = undefined;
    if (this.#state === 'closed') return;
    this.#state = 'importing';
    const abort = new AbortController();
    this.#abort = abort;
    this.#attempt = RemoteUsbipDevice.import(this.#address, this.#busid, {
      timeoutMs: this.#timeoutMs,
      logger: this.#log,
      signal: abort.signal,
      security: this.#security,
    }).then(
      (device) => this.#imported(device),
      (err: unknown) => this.#failed(err instanceof Error ? err.message : String(err)),
    );
  }

  #imported(device: RemoteUsbipDevice): void {
    this.#abort = undefined;
    if (this.#state === 'closed') {
      void device.close();
      return;
    }
    this.#state = 'imported';
    this.#device = device;
    this.#lastFailure = undefined;
    const since = Date.now();
    this.#log.info(`${this.description}: imported ${device.name}`);
    device.once('disconnect', () => {
      this.#device = undefined;
      if (this.#state === 'closed') return;
      if (Date.now() - since >= this.#maxRetryMs) this.#delay = this.#minRetryMs;
      // The device logged why it went; the next attempts are routine.
      this.#retryLater();
    });
    try {
      this.emit('device', device);
    } catch (err) {
      this.#log.error(`${this.description}: a device listener threw: ${String(err)}`);
    }
  }

  #failed(why: string): void {
    this.#abort = undefined;
    if (this.#state === 'closed') return;
    if (why !== this.#lastFailure) {
      this.#log.warn(`${this.description}: ${why}; retrying (backoff up to ${this.#maxRetryMs / 1000} s)`);
      this.#lastFailure = why;
    } else {
      this.#log.debug(`${this.description}: still failing: ${why}`);
    }
    this.#retryLater();
  }

  #retryLater(): void {
    this.#state = 'waiting';
    const delay = this.#delay;
    this.#delay = Math.min(this.#delay * 2, this.#maxRetryMs);
    this.#log.debug(`${this.description}: next import in ${delay} ms`);
    this.#timer = setTimeout(() => this.#import(), delay);
  }

  /** Stop retrying and close the current device (it emits `disconnect`). */
  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    const wasActive = this.#state !== 'idle';
    this.#state = 'closed';
    clearTimeout(this.#timer);
    this.#abort?.abort();
    const device = this.#device;
    this.#device = undefined;
    await Promise.all([device?.close(), this.#attempt]);
    if (wasActive) this.#log.info(`${this.description}: closed`);
  }
}
