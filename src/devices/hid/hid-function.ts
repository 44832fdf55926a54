import type { ControlResult, FunctionHost, InterfaceSpec, UsbFunction } from '../../usb/function.js';
import { RequestType, type SetupPacket, StandardRequest } from '../../usb/setup.js';
import type { UsbSpeed } from '../../usb/speed.js';
import { TransferStatus } from '../../usb/status.js';
import { DeviceActionError } from '../classes.js';
import {
  BOOT_SUBCLASS,
  HID_CLASS,
  HidDescriptorType,
  HidProtocol,
  HidRequest,
  hidDescriptor,
  idleMs,
  ReportType,
} from './hid-wire.js';
import { ReportQueue } from './report-queue.js';

export const HID_IN_ENDPOINT = 0x81;
/** Reports waiting for the host at most; an action that would overflow is refused. */
export const HID_QUEUE_CAPACITY = 4096;

export interface HidFunctionOptions {
  /** Boot interface protocol: 1 keyboard, 2 mouse. */
  bootProtocol: number;
  reportDescriptor: Buffer;
  inputReportSize: number;
  /** Size of the output report (keyboard LEDs), 0 when there is none. */
  outputReportSize: number;
  /** An output report from the host (SET_REPORT(Output) on ep0). */
  onOutput?: (report: Buffer) => void;
  queueCapacity?: number;
}

/**
 * One boot-protocol HID interface with an interrupt IN endpoint. Reports wait in a bounded queue
 * until the host polls: an interrupt IN with nothing to report stays pending (a NAK), and with a
 * non-zero SET_IDLE duration the last report is repeated when that long passes without a change.
 */
export class HidFunction implements UsbFunction {
  readonly #opts: HidFunctionOptions;
  readonly #queue: ReportQueue;
  #host: FunctionHost | undefined;
  #interface = 0;
  #configured = false;
  #protocol: number = HidProtocol.Report;
  /** SET_IDLE duration in 4 ms units, 0 = only on change. */
  #idle = 0;
  #idleTimer: NodeJS.Timeout | undefined;
  #idleDue = false;
  #lastInput: Buffer;
  #lastOutput: Buffer;

  constructor(opts: HidFunctionOptions) {
    this.#opts = opts;
    this.#queue = new ReportQueue(opts.queueCapacity ?? HID_QUEUE_CAPACITY);
    this.#lastInput = Buffer.alloc(opts.inputReportSize);
    this.#lastOutput = Buffer.alloc(opts.outputReportSize);
  }

  get configured(): boolean {
    return this.#configured;
  }

  get protocol(): number {
    return this.#protocol;
  }

  get queued(): number {
    return this.#queue.length;
  }

  /** Queue reports for the host, all or none; throws DeviceActionError (unavailable) when they cannot be taken. */
  send(reports: readonly Buffer[]): void {
    if (!this.#configured)
      throw new DeviceActionError('not attached: no host has configured this device yet', 'unavailable');
    if (!this.#queue.pushAll(reports)) {
      throw new DeviceActionError(
        `input queue full: ${this.#queue.length} reports wait for the host, ${reports.length} more do not fit (capacity ${this.#queue.capacity})`,
        'unavailable',
      );
    }
    this.#pump();
  }

  interfaces(speed: UsbSpeed): InterfaceSpec[] {
    return [
      {
        number: 0,
        alternates: [
          {
            alternate: 0,
            interfaceClass: HID_CLASS,
            interfaceSubClass: BOOT_SUBCLASS,
            interfaceProtocol: this.#opts.bootProtocol,
            extra: hidDescriptor(this.#opts.reportDescriptor.length),
            endpoints: [
              {
                address: HID_IN_ENDPOINT,
                type: 'interrupt',
                maxPacketSize: this.#opts.inputReportSize,
                // 8 ms either way: 2^(7-1) microframes at high speed, frames at full/low speed.
                interval: speed === 'high' ? 7 : 8,
              },
            ],
          },
        ],
      },
    ];
  }

  bind(host: FunctionHost, firstInterface: number): void {
    this.#host = host;
    this.#interface = firstInterface;
  }

  control(setup: SetupPacket, data: Buffer | undefined): ControlResult | undefined {
    if (setup.wIndex !== this.#interface) return undefined;
    const type = setup.bmRequestType & RequestType.TypeMask;
    const dirIn = (setup.bmRequestType & RequestType.DirIn) !== 0;
    if (type === RequestType.Standard) {
      return dirIn && setup.bRequest === StandardRequest.GetDescriptor ? this.#descriptor(setup.wValue) : undefined;
    }
    if (type !== RequestType.Class || (setup.bmRequestType & RequestType.RecipientMask) !== RequestType.Interface) {
      return undefined;
    }
    const ok = (bytes?: Buffer): ControlResult =>
      bytes ? { status: TransferStatus.Ok, data: bytes } : { status: TransferStatus.Ok };
    const reportId = setup.wValue & 0xff;
    switch (setup.bRequest) {
      case HidRequest.GetReport:
        if (!dirIn || reportId !== 0 || setup.wLength === 0) return undefined;
        return this.#getReport(setup.wValue >> 8);
      case HidRequest.SetReport:
        if (dirIn || reportId !== 0) return undefined;
        return this.#setReport(setup.wValue >> 8, data ?? Buffer.alloc(0), setup.wLength) ? ok() : undefined;
      case HidRequest.GetIdle:
        if (!dirIn || reportId !== 0 || setup.wLength === 0) return undefined;
        return ok(Buffer.from([this.#idle]));
      case HidRequest.SetIdle:
        if (dirIn || reportId !== 0 || setup.wLength !== 0) return undefined;
        this.#setIdle(setup.wValue >> 8);
        return ok();
      case HidRequest.GetProtocol:
        if (!dirIn || setup.wValue !== 0 || setup.wLength === 0) return undefined;
        return ok(Buffer.from([this.#protocol]));
      case HidRequest.SetProtocol:
        if (
          dirIn ||
          setup.wLength !== 0 ||
          (setup.wValue !== HidProtocol.Boot && setup.wValue !== HidProtocol.Report)
        ) {
          return undefined;
        }
        // Our report descriptors describe the boot reports: both protocols send the same bytes.
        this.#protocol = setup.wValue;
        return ok();
      default:
        return undefined;
    }
  }

  transferWaiting(address: number): void {
    if (address === HID_IN_ENDPOINT) this.#pump();
  }

  setConfigured(configured: boolean): void {
    this.#configured = configured;
    if (!configured) this.#powerOn();
  }

  setAlternate(): void {}

  reset(): void {
    this.#configured = false;
    this.#powerOn();
  }

  async close(): Promise<void> {
    this.#stopIdle();
  }

  #descriptor(wValue: number): ControlResult | undefined {
    if ((wValue & 0xff) !== 0) return undefined;
    switch (wValue >> 8) {
      case HidDescriptorType.Report:
        return { status: TransferStatus.Ok, data: this.#opts.reportDescriptor };
      case HidDescriptorType.Hid:
        return { status: TransferStatus.Ok, data: hidDescriptor(this.#opts.reportDescriptor.length) };
      default:
        return undefined;
    }
  }

  #getReport(type: number): ControlResult | undefined {
    if (type === ReportType.Input) return { status: TransferStatus.Ok, data: Buffer.from(this.#lastInput) };
    if (type === ReportType.Output && this.#opts.outputReportSize > 0) {
      return { status: TransferStatus.Ok, data: Buffer.from(this.#lastOutput) };
    }
    return undefined;
  }

  #setReport(type: number, data: Buffer, wLength: number): boolean {
    const size = this.#opts.outputReportSize;
    if (type !== ReportType.Output || size === 0) return false;
    if (wLength === 0 || wLength > size || data.length !== wLength) return false;
    this.#lastOutput = Buffer.alloc(size);
    data.copy(this.#lastOutput);
    this.#opts.onOutput?.(Buffer.from(this.#lastOutput));
    return true;
  }

  #setIdle(duration: number): void {
    this.#idle = duration;
    this.#idleDue = false;
    this.#armIdle();
  }

  #armIdle(): void {
    this.#stopIdle();
    if (this.#idle === 0 || !this.#configured) return;
    this.#idleTimer = setTimeout(() => {
      this.#idleTimer = undefined;
      this.#idleDue = true;
      this.#pump();
    }, idleMs(this.#idle));
    this.#idleTimer.unref();
  }

  #stopIdle(): void {
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
  }

  #powerOn(): void {
    this.#queue.clear();
    this.#stopIdle();
    this.#idle = 0;
    this.#idleDue = false;
    this.#protocol = HidProtocol.Report;
    this.#lastInput = Buffer.alloc(this.#opts.inputReportSize);
  }

  /** Hand queued reports (or an idle repeat) to waiting interrupt INs. */
  #pump(): void {
    const host = this.#host;
    if (!host || !this.#configured) return;
    while (host.waiting(HID_IN_ENDPOINT) > 0) {
      const next = this.#queue.shift();
      if (!next && !this.#idleDue) return;
      const report = next ?? this.#lastInput;
      const t = host.take(HID_IN_ENDPOINT);
      if (!t) {
        if (next) this.#queue.unshift(next);
        return;
      }
      t.completeIn(Buffer.from(report));
      if (!host.complete(t)) {
        if (next) this.#queue.unshift(next);
        continue;
      }
      this.#lastInput = report;
      this.#idleDue = false;
      this.#armIdle();
    }
  }
}
