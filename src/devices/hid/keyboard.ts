import { DeviceActionError, type DeviceActions } from '../classes.js';
import { HidFunction } from './hid-function.js';
import { BOOT_PROTOCOL_KEYBOARD } from './hid-wire.js';
import {
  comboDown,
  comboPressReports,
  comboUp,
  decodeLeds,
  encodeKeyboardReport,
  KEYBOARD_REPORT_DESCRIPTOR,
  KEYBOARD_REPORT_SIZE,
  type KeyboardState,
  KeyComboError,
  LED_REPORT_SIZE,
  type LedState,
  parseKeyCombo,
  textReports,
  UntypableTextError,
} from './keyboard-wire.js';

/** What the operator does with the keyboard: type text, press or hold keys, read the LEDs. */
export class HidKeyboard {
  readonly fn: HidFunction;
  /** Modifiers and keys the operator holds down (key ... down) until released (key ... up). */
  #held: KeyboardState = { modifiers: 0, keys: [] };
  #leds = 0;

  constructor(queueCapacity?: number) {
    this.fn = new HidFunction({
      bootProtocol: BOOT_PROTOCOL_KEYBOARD,
      reportDescriptor: KEYBOARD_REPORT_DESCRIPTOR,
      inputReportSize: KEYBOARD_REPORT_SIZE,
      outputReportSize: LED_REPORT_SIZE,
      onOutput: (r) => {
        this.#leds = r[0]!;
      },
      ...(queueCapacity === undefined ? {} : { queueCapacity }),
    });
  }

  type(text: string): { reports: number } {
    const reports = invalidIfRejected(() => textReports(text, this.#held));
    this.fn.send(reports);
    return { reports: reports.length };
  }

  key(comboText: string, action: 'press' | 'down' | 'up'): { reports: number } {
    const combo = invalidIfRejected(() => parseKeyCombo(comboText));
    if (action === 'press') {
      const reports = comboPressReports(combo, this.#held);
      this.fn.send(reports);
      return { reports: reports.length };
    }
    const next = action === 'down' ? comboDown(combo, this.#held) : comboUp(combo, this.#held);
    this.fn.send([encodeKeyboardReport(next)]);
    this.#held = next;
    return { reports: 1 };
  }

  leds(): LedState {
    return decodeLeds(this.#leds);
  }

  get actions(): DeviceActions {
    return {
      type: (args) => this.type(stringArg(args, 'text')),
      key: (args) => {
        const action = args.action ?? 'press';
        if (action !== 'press' && action !== 'down' && action !== 'up') {
          throw new DeviceActionError('"action" must be "press", "down" or "up"', 'invalid');
        }
        return this.key(stringArg(args, 'combo'), action);
      },
      leds: () => this.leds(),
    };
  }
}

/** The wire layer rejects untypable text and unknown key names with a RangeError: the caller's mistake. */
function invalidIfRejected<T>(decode: () => T): T {
  try {
    return decode();
  } catch (err) {
    if (err instanceof KeyComboError || err instanceof UntypableTextError) {
      throw new DeviceActionError(err.message, 'invalid');
    }
    throw err;
  }
}

export function stringArg(args: Record<string, unknown>, name: string): string {
  const v = args[name];
  if (typeof v !== 'string') throw new DeviceActionError(`"${name}" must be a string`, 'invalid');
  return v;
}

export function intArg(args: Record<string, unknown>, name: string, limit: number, dflt?: number): number {
  const v = args[name] ?? dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || Math.abs(v) > limit) {
    throw new DeviceActionError(`"${name}" must be an integer between -${limit} and ${limit}`, 'invalid');
  }
  return v;
}
