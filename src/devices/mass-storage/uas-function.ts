import type {
  AltSettingSpec,
  ControlResult,
  EndpointSpec,
  FunctionHost,
  InterfaceSpec,
  UsbFunction,
} from '../../usb/function.js';
import type { SetupPacket } from '../../usb/setup.js';
import { bulkMaxPacket, isSuperSpeed, type UsbSpeed } from '../../usb/speed.js';
import { BOT_IN, BOT_OUT, BotFunction, type ScsiTarget } from './bot-function.js';
import { UAS_COMMAND, UAS_STATUS, UasTargetPort } from './uas-target-port.js';
import { PipeId, pipeUsage } from './uas-wire.js';

/** MaxStreams exponent of the status and data pipes at SuperSpeed: 2^5 = 32 tags, qdepth 30 in Linux. */
const STREAMS_EXPONENT = 5;

/**
 * A USB Attached SCSI disk interface, as the kernel's f_tcm and real UAS bridges: alternate
 * setting 0 is Bulk-Only Transport (for hosts without UAS, or without streams at SuperSpeed),
 * alternate setting 1 is UAS with command, status, data-in and data-out pipes. Both run over
 * the same SCSI target; the data pipes share their addresses with BOT's.
 */
export class UasFunction implements UsbFunction {
  readonly #bot: BotFunction;
  readonly #uas: UasTargetPort;
  #alternate = 0;

  constructor(target: ScsiTarget) {
    this.#bot = new BotFunction(target);
    this.#uas = new UasTargetPort(target);
  }

  interfaces(speed: UsbSpeed): InterfaceSpec[] {
    const bot = this.#bot.interfaces(speed)[0]!.alternates[0]!;
    const superSpeed = isSuperSpeed(speed);
    const mps = bulkMaxPacket(speed);
    const pipe = (address: number, id: number, streams: boolean, maxBurst: number): EndpointSpec => ({
      address,
      type: 'bulk',
      maxPacketSize: mps,
      interval: 0,
      ...(superSpeed ? { companion: { maxBurst, attributes: streams ? STREAMS_EXPONENT : 0 } } : {}),
      extra: pipeUsage(id),
    });
    const uas: AltSettingSpec = {
      alternate: 1,
      interfaceClass: 0x08,
      interfaceSubClass: 0x06,
      interfaceProtocol: 0x62,
      endpoints: [
        pipe(UAS_COMMAND, PipeId.Command, false, 0),
        pipe(UAS_STATUS, PipeId.Status, true, 0),
        pipe(BOT_IN, PipeId.DataIn, true, 15),
        pipe(BOT_OUT, PipeId.DataOut, true, 15),
      ],
    };
    return [{ number: 0, alternates: [bot, uas] }];
  }

  bind(host: FunctionHost, firstInterface: number): void {
    this.#bot.bind(host, firstInterface);
    this.#uas.bind(host);
  }

  control(s: SetupPacket, data: Buffer | undefined): ControlResult | undefined {
    // Get Max LUN and Bulk-Only Mass Storage Reset belong to BOT; UAS has no class requests.
    return this.#alternate === 0 ? this.#bot.control(s, data) : undefined;
  }

  transferWaiting(address: number, streamId: number): void {
    if (this.#alternate === 0) this.#bot.transferWaiting(address);
    else this.#uas.transferWaiting(address, streamId);
  }

  streamsChanged(): void {
    this.#uas.abortAll();
  }

  setConfigured(configured: boolean): void {
    this.#alternate = 0;
    this.#bot.setConfigured(configured);
    this.#uas.abortAll();
  }

  setAlternate(interfaceNumber: number, alternate: number): void {
    if (interfaceNumber !== 0) return;
    this.#alternate = alternate;
    this.#bot.setAlternate();
    this.#uas.abortAll();
  }

  reset(): void {
    this.#alternate = 0;
    this.#uas.abortAll();
    this.#bot.reset(); // also resets the target (UNIT ATTENTION)
  }

  async close(): Promise<void> {
    this.#uas.abortAll();
    await this.#bot.close();
  }
}
