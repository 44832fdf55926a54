import type { ControlResult, FunctionHost, InterfaceSpec, UsbFunction } from '../../usb/function.js';
import { RequestType, type SetupPacket } from '../../usb/setup.js';
import type { UsbSpeed } from '../../usb/speed.js';
import { TransferStatus } from '../../usb/status.js';
import { ByteQueue } from '../../util/byte-queue.js';
import type { Logger } from '../../util/log.js';
import {
  AcmRequest,
  acmFunctionalDescriptors,
  CDC_CLASS_COMM,
  CDC_CLASS_DATA,
  CDC_PROTOCOL_AT,
  CDC_SUBCLASS_ACM,
  ControlLine,
  DEFAULT_LINE_CODING,
  describeLineCoding,
  encodeLineCoding,
  encodeSerialState,
  LINE_CODING_SIZE,
  type LineCoding,
  parseLineCoding,
  SerialState,
} from './acm-wire.js';
import type { HostEnd } from './host-end.js';

export const ACM_DATA_IN = 0x81;
export const ACM_DATA_OUT = 0x02;
export const ACM_NOTIFY = 0x83;

const NOTIFY_MAX_PACKET = 16;
/** f_acm's 32 ms notification interval: bInterval 32 (frames) at full speed, 9 (2^8 µframes) at high. */
const NOTIFY_INTERVAL = { full: 32, high: 9 } as const;

/** Bytes from the host end held for the guest before the host end is paused. */
export const HOST_TO_GUEST_BOUND = 64 * 1024;

export interface SerialStatus {
  lineCoding: LineCoding & { text: string };
  dtr: boolean;
  rts: boolean;
  connected: boolean;
}

const OK: ControlResult = { status: TransferStatus.Ok };

/**
 * CDC-ACM (f_acm.c's shape): a communications interface with the notification endpoint and a
 * data interface with bulk IN/OUT, bridged to a HostEnd.
 *
 * Guest → host end: an OUT transfer is taken only while the host end accepts bytes; after a
 * write that fills its buffer the rest stay queued in the core until 'drain', so the guest's
 * write() blocks and nothing is dropped. With no client the bytes are discarded, as a UART
 * with nothing on the line does (DCD off tells the guest). Host end → guest: bytes complete
 * waiting IN transfers at once (a short transfer ends the guest's read); above
 * HOST_TO_GUEST_BOUND bytes held the host end is paused until the guest reads.
 */
export class AcmFunction implements UsbFunction {
  readonly #end: HostEnd;
  readonly #log: Logger;
  #host!: FunctionHost;
  #comm = 0;
  #lineCoding: LineCoding = DEFAULT_LINE_CODING;
  #controlLines = 0;
  /** SERIAL_STATE bitmap last delivered to the host (the notification waits until it differs). */
  #reported = 0;
  #outBlocked = false;
  readonly #toGuest = new ByteQueue();
  #endPaused = false;

  constructor(end: HostEnd, log: Logger) {
    this.#end = end;
    this.#log = log;
    end.on('data', (d) => this.#fromHostEnd(d));
    end.on('drain', () => this.#unblockOut());
    end.on('connect', () => this.#pumpNotify());
    end.on('disconnect', () => {
      this.#unblockOut();
      this.#pumpNotify();
    });
  }

  status(): SerialStatus {
    return {
      lineCoding: { ...this.#lineCoding, text: describeLineCoding(this.#lineCoding) },
      dtr: (this.#controlLines & ControlLine.Dtr) !== 0,
      rts: (this.#controlLines & ControlLine.Rts) !== 0,
      connected: this.#end.connected,
    };
  }

  interfaces(speed: UsbSpeed): InterfaceSpec[] {
    const high = speed !== 'full' && speed !== 'low';
    const bulk = high ? 512 : 64;
    return [
      {
        number: 0,
        association: {
          count: 2,
          functionClass: CDC_CLASS_COMM,
          functionSubClass: CDC_SUBCLASS_ACM,
          functionProtocol: CDC_PROTOCOL_AT,
          name: 'CDC ACM',
        },
        alternates: [
          {
            alternate: 0,
            interfaceClass: CDC_CLASS_COMM,
            interfaceSubClass: CDC_SUBCLASS_ACM,
            interfaceProtocol: CDC_PROTOCOL_AT,
            extra: acmFunctionalDescriptors(this.#comm, this.#comm + 1),
            endpoints: [
              {
                address: ACM_NOTIFY,
                type: 'interrupt',
                maxPacketSize: NOTIFY_MAX_PACKET,
                interval: high ? NOTIFY_INTERVAL.high : NOTIFY_INTERVAL.full,
              },
            ],
          },
        ],
      },
      {
        number: 1,
        alternates: [
          {
            alternate: 0,
            interfaceClass: CDC_CLASS_DATA,
            interfaceSubClass: 0,
            interfaceProtocol: 0,
            endpoints: [
              { address: ACM_DATA_IN, type: 'bulk', maxPacketSize: bulk, interval: 0 },
              { address: ACM_DATA_OUT, type: 'bulk', maxPacketSize: bulk, interval: 0 },
            ],
          },
        ],
      },
    ];
  }

  bind(host: FunctionHost, firstInterface: number): void {
    this.#host = host;
    this.#comm = firstInterface;
  }

  control(s: SetupPacket, data: Buffer | undefined): ControlResult | undefined {
    const toComm =
      (s.bmRequestType & RequestType.RecipientMask) === RequestType.Interface &&
      (s.bmRequestType & RequestType.TypeMask) === RequestType.Class &&
      s.wIndex === this.#comm;
    if (!toComm) return undefined;
    const hostToDevice = (s.bmRequestType & RequestType.DirIn) === 0;
    const noData = hostToDevice && s.wLength === 0 && !data?.length;
    switch (s.bRequest) {
      case AcmRequest.SetLineCoding:
        return hostToDevice && s.wValue === 0 && s.wLength === LINE_CODING_SIZE && data
          ? this.#setLineCoding(data)
          : undefined;
      case AcmRequest.GetLineCoding:
        return !hostToDevice && s.wValue === 0 && s.wLength === LINE_CODING_SIZE
          ? { status: TransferStatus.Ok, data: encodeLineCoding(this.#lineCoding) }
          : undefined;
      case AcmRequest.SetControlLineState:
        return noData && (s.wValue & ~(ControlLine.Dtr | ControlLine.Rts)) === 0
          ? this.#setControlLines(s.wValue)
          : undefined;
      case AcmRequest.SendBreak:
        if (!noData) return undefined;
        this.#log.info(
          s.wValue === 0 ? 'break off' : `break ${s.wValue === 0xffff ? 'on until cleared' : `for ${s.wValue} ms`}`,
        );
        return OK;
      default:
        return undefined;
    }
  }

  #setLineCoding(data: Buffer): ControlResult | undefined {
    const coding = parseLineCoding(data);
    if (typeof coding === 'string') {
      this.#log.warn(`SET_LINE_CODING refused: ${coding}`);
      return undefined;
    }
    // Linux cdc-acm sends this only when termios changed: every one is worth a line.
    this.#log.info(`line coding ${describeLineCoding(coding)}`);
    this.#lineCoding = coding;
    return OK;
  }

  #setControlLines(value: number): ControlResult {
    if (value !== this.#controlLines) {
      const on = (bit: number) => ((value & bit) !== 0 ? 'on' : 'off');
      this.#log.info(`DTR ${on(ControlLine.Dtr)}, RTS ${on(ControlLine.Rts)}`);
    }
    this.#controlLines = value;
    return OK;
  }

  transferWaiting(address: number): void {
    if (address === ACM_DATA_OUT) this.#pumpOut();
    else if (address === ACM_DATA_IN) this.#pumpIn();
    else if (address === ACM_NOTIFY) this.#pumpNotify();
  }

  setConfigured(configured: boolean): void {
    if (!configured) this.#reported = 0;
  }

  setAlternate(): void {}

  reset(): void {
    this.#reported = 0;
    this.#controlLines = 0;
  }

  close(): Promise<void> {
    return this.#end.close();
  }

  #unblockOut(): void {
    this.#outBlocked = false;
    this.#pumpOut();
  }

  #pumpOut(): void {
    while (!this.#outBlocked) {
      const t = this.#host.take(ACM_DATA_OUT);
      if (!t) return;
      const data = t.data.subarray(0, t.length);
      // The transfer's buffer is the protocol's: the host end may hold on to the bytes longer.
      const accepted = data.length === 0 || this.#end.write(Buffer.from(data));
      t.status = TransferStatus.Ok;
      t.actualLength = data.length;
      this.#host.complete(t);
      if (!accepted) this.#outBlocked = true;
    }
  }

  #fromHostEnd(d: Buffer): void {
    this.#toGuest.push(d);
    this.#pumpIn();
    if (!this.#endPaused && this.#toGuest.length > HOST_TO_GUEST_BOUND) {
      this.#endPaused = true;
      this.#end.pause();
    }
  }

  #pumpIn(): void {
    while (this.#toGuest.length > 0) {
      const t = this.#host.take(ACM_DATA_IN);
      if (!t) break;
      t.completeIn(this.#toGuest.take(Math.min(t.length, this.#toGuest.length)));
      this.#host.complete(t);
    }
    if (this.#endPaused && this.#toGuest.length <= HOST_TO_GUEST_BOUND / 2) {
      this.#endPaused = false;
      this.#end.resume();
    }
  }

  #serialState(): number {
    return this.#end.connected ? SerialState.Dcd | SerialState.Dsr : 0;
  }

  /** The interrupt IN transfer stays queued (NAK) until the state differs from what the host has. */
  #pumpNotify(): void {
    const state = this.#serialState();
    if (state === this.#reported) return;
    const t = this.#host.take(ACM_NOTIFY);
    if (!t) return;
    t.completeIn(encodeSerialState(this.#comm, state));
    if (this.#host.complete(t) && t.status === TransferStatus.Ok) this.#reported = state;
  }
}
