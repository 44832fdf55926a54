import { DeviceActionError, type DeviceActions } from '../classes.js';
import { HidFunction } from './hid-function.js';
import { BOOT_PROTOCOL_MOUSE } from './hid-wire.js';
import { intArg } from './keyboard.js';
import {
  encodeMouseReport,
  MOUSE_REPORT_DESCRIPTOR,
  MOUSE_REPORT_SIZE,
  MouseButton,
  type MouseButtonName,
  moveReports,
} from './mouse-wire.js';

/** Largest movement or wheel amount one action takes (in reports of ±127 that is 258 reports). */
const MAX_DELTA = 32767;

/** What the operator does with the mouse: move, click, hold buttons, turn the wheel. */
export class HidMouse {
  readonly fn: HidFunction;
  #buttons = 0;

  constructor(queueCapacity?: number) {
    this.fn = new HidFunction({
      bootProtocol: BOOT_PROTOCOL_MOUSE,
      reportDescriptor: MOUSE_REPORT_DESCRIPTOR,
      inputReportSize: MOUSE_REPORT_SIZE,
      outputReportSize: 0,
      ...(queueCapacity === undefined ? {} : { queueCapacity }),
    });
  }

  move(dx: number, dy: number): { reports: number } {
    return this.#send(moveReports(dx, dy, 0, this.#buttons));
  }

  wheel(delta: number): { reports: number } {
    return this.#send(moveReports(0, 0, delta, this.#buttons));
  }

  click(button: MouseButtonName): { reports: number } {
    const bit = MouseButton[button];
    return this.#send([
      encodeMouseReport({ buttons: this.#buttons | bit, dx: 0, dy: 0, wheel: 0 }),
      encodeMouseReport({ buttons: this.#buttons, dx: 0, dy: 0, wheel: 0 }),
    ]);
  }

  button(button: MouseButtonName, down: boolean): { reports: number } {
    const next = down ? this.#buttons | MouseButton[button] : this.#buttons & ~MouseButton[button];
    const r = this.#send([encodeMouseReport({ buttons: next, dx: 0, dy: 0, wheel: 0 })]);
    this.#buttons = next;
    return r;
  }

  #send(reports: Buffer[]): { reports: number } {
    this.fn.send(reports);
    return { reports: reports.length };
  }

  get actions(): DeviceActions {
    return {
      move: (args) => this.move(intArg(args, 'dx', MAX_DELTA, 0), intArg(args, 'dy', MAX_DELTA, 0)),
      wheel: (args) => this.wheel(intArg(args, 'delta', MAX_DELTA)),
      click: (args) => this.click(buttonArg(args)),
      button: (args) => {
        if (typeof args.down !== 'boolean') throw new DeviceActionError('"down" must be true or false', 'invalid');
        return this.button(buttonArg(args), args.down);
      },
    };
  }
}

function buttonArg(args: Record<string, unknown>): MouseButtonName {
  const b = args.button ?? 'left';
  if (b !== 'left' && b !== 'right' && b !== 'middle')
    throw new DeviceActionError('"button" must be left, right or middle', 'invalid');
  return b;
}
