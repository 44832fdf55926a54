import { EventEmitter } from 'node:events';
import type { UsbDevice } from './device.js';
import type { DeviceSource, DeviceSourceEvents } from './source.js';

/**
 * A DeviceSource whose devices are wrapped as they arrive (read-ahead, BOT presented as UAS...).
 * A device the wrapper refuses (it throws) is closed and logged by `onError`; the source goes on.
 */
export class MappedSource extends EventEmitter<DeviceSourceEvents> implements DeviceSource {
  readonly #inner: DeviceSource;
  readonly #wrap: (device: UsbDevice) => Promise<UsbDevice>;
  readonly #onError: (device: UsbDevice, err: Error) => void;

  constructor(
    inner: DeviceSource,
    wrap: (device: UsbDevice) => Promise<UsbDevice>,
    onError: (device: UsbDevice, err: Error) => void,
  ) {
    super();
    this.#inner = inner;
    this.#wrap = wrap;
    this.#onError = onError;
    inner.on('device', (device) => {
      this.#wrap(device).then(
        (wrapped) => this.emit('device', wrapped),
        (err: Error) => {
          this.#onError(device, err);
          void device.close();
        },
      );
    });
  }

  get description(): string {
    return this.#inner.description;
  }

  start(): void {
    this.#inner.start();
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}
