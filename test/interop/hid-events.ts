// Decoding the guest's evdev lines ("KEY 30 1", "SYN 0 0"...) into frames, and what a US keyboard
// and a mouse should produce, written from Linux's input-event-codes.h (independent of src/).

export interface EvdevEvent {
  type: string;
  code: number;
  value: number;
}

export function parseEvents(text: string): EvdevEvent[] {
  const out: EvdevEvent[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\w+) (\d+) (-?\d+)$/.exec(line.trim());
    if (m) out.push({ type: m[1]!, code: Number(m[2]), value: Number(m[3]) });
  }
  return out;
}

/** Events between SYN_REPORTs; frames without a `keep` event are dropped. */
export function frames(events: EvdevEvent[], keep: (e: EvdevEvent) => boolean): EvdevEvent[][] {
  const out: EvdevEvent[][] = [];
  let cur: EvdevEvent[] = [];
  for (const e of events) {
    if (e.type === 'SYN') {
      if (cur.length) out.push(cur);
      cur = [];
    } else if (keep(e)) cur.push(e);
  }
  return out;
}

// Linux key codes (include/uapi/linux/input-event-codes.h).
const ROWS: [string, number][] = [
  ['1234567890', 2],
  ['qwertyuiop', 16],
  ['asdfghjkl', 30],
  ['zxcvbnm', 44],
];
export const KEY = {
  ESC: 1,
  MINUS: 12,
  EQUAL: 13,
  BACKSPACE: 14,
  TAB: 15,
  ENTER: 28,
  LEFTCTRL: 29,
  SEMICOLON: 39,
  APOSTROPHE: 40,
  GRAVE: 41,
  LEFTSHIFT: 42,
  BACKSLASH: 43,
  COMMA: 51,
  DOT: 52,
  SLASH: 53,
  RIGHTSHIFT: 54,
  LEFTALT: 56,
  SPACE: 57,
  F1: 59,
  F2: 60,
  LEFTBRACE: 26,
  RIGHTBRACE: 27,
} as const;

const PLAIN = new Map<string, number>();
const SHIFTED = new Map<string, number>();
for (const [chars, first] of ROWS) for (const [i, c] of [...chars].entries()) PLAIN.set(c, first + i);
for (const [i, c] of [...'!@#$%^&*()'].entries()) SHIFTED.set(c, 2 + i);
for (const [c, k, s] of [
  ['-', KEY.MINUS, '_'],
  ['=', KEY.EQUAL, '+'],
  ['[', KEY.LEFTBRACE, '{'],
  [']', KEY.RIGHTBRACE, '}'],
  [';', KEY.SEMICOLON, ':'],
  ["'", KEY.APOSTROPHE, '"'],
  ['`', KEY.GRAVE, '~'],
  ['\\', KEY.BACKSLASH, '|'],
  [',', KEY.COMMA, '<'],
  ['.', KEY.DOT, '>'],
  ['/', KEY.SLASH, '?'],
] as [string, number, string][]) {
  PLAIN.set(c, k);
  SHIFTED.set(s, k);
}
PLAIN.set(' ', KEY.SPACE);
PLAIN.set('\n', KEY.ENTER);
for (const c of 'abcdefghijklmnopqrstuvwxyz') SHIFTED.set(c.toUpperCase(), PLAIN.get(c)!);

/** The Linux key and whether Shift is needed for a character on a US keyboard. */
export function keyOf(ch: string): { code: number; shift: boolean } {
  const plain = PLAIN.get(ch);
  if (plain !== undefined) return { code: plain, shift: false };
  const shifted = SHIFTED.get(ch);
  if (shifted !== undefined) return { code: shifted, shift: true };
  throw new Error(`no key for ${JSON.stringify(ch)}`);
}

const CHAR_OF = new Map<string, string>();
for (const [c, k] of PLAIN) CHAR_OF.set(`${k}/0`, c);
for (const [c, k] of SHIFTED) CHAR_OF.set(`${k}/1`, c);

/** Keys down after each key frame (value 2, autorepeat, ignored), as sorted lists. */
export function keyStates(events: EvdevEvent[]): number[][] {
  const down = new Set<number>();
  const out: number[][] = [];
  for (const f of frames(events, (e) => e.type === 'KEY' && e.value !== 2)) {
    for (const e of f) {
      if (e.value === 1) down.add(e.code);
      else down.delete(e.code);
    }
    out.push([...down].sort((a, b) => a - b));
  }
  return out;
}

/** Text the key events type on a US layout (characters on key-down, Shift as held in that frame). */
export function typedText(events: EvdevEvent[]): string {
  const down = new Set<number>();
  let text = '';
  for (const f of frames(events, (e) => e.type === 'KEY' && e.value !== 2)) {
    for (const e of f) {
      if (e.value === 1) down.add(e.code);
      else down.delete(e.code);
    }
    const shift = down.has(KEY.LEFTSHIFT) || down.has(KEY.RIGHTSHIFT);
    for (const e of f) {
      if (e.value !== 1) continue;
      const c = CHAR_OF.get(`${e.code}/${shift ? 1 : 0}`);
      if (c !== undefined) text += c;
    }
  }
  return text;
}

/** Builds the key states an action sequence should produce (one per report). */
export class ExpectedKeys {
  readonly states: number[][] = [];
  #held = new Set<number>();

  #push(extra: number[]): void {
    this.states.push([...new Set([...this.#held, ...extra])].sort((a, b) => a - b));
  }

  type(text: string): this {
    for (const ch of text) {
      const k = keyOf(ch);
      this.#push(k.shift ? [KEY.LEFTSHIFT, k.code] : [k.code]);
      this.#push([]);
    }
    return this;
  }

  press(...codes: number[]): this {
    this.#push(codes);
    this.#push([]);
    return this;
  }

  down(...codes: number[]): this {
    for (const c of codes) this.#held.add(c);
    this.#push([]);
    return this;
  }

  up(...codes: number[]): this {
    for (const c of codes) this.#held.delete(c);
    this.#push([]);
    return this;
  }
}

export const BTN = { left: 272, right: 273, middle: 274 } as const;
export const REL = { X: 0, Y: 1, WHEEL: 8 } as const;

export interface MouseFrame {
  buttons: number[];
  dx: number;
  dy: number;
  wheel: number;
}

/** Per frame: buttons down after it and the relative motion in it (hi-res wheel events ignored). */
export function mouseFrames(events: EvdevEvent[]): MouseFrame[] {
  const down = new Set<number>();
  const rel = new Set<number>([REL.X, REL.Y, REL.WHEEL]);
  const buttons = new Set<number>(Object.values(BTN));
  return frames(events, (e) => (e.type === 'KEY' && buttons.has(e.code)) || (e.type === 'REL' && rel.has(e.code))).map(
    (f) => {
      const m: MouseFrame = { buttons: [], dx: 0, dy: 0, wheel: 0 };
      for (const e of f) {
        if (e.type === 'KEY') {
          if (e.value) down.add(e.code);
          else down.delete(e.code);
        } else if (e.code === REL.X) m.dx += e.value;
        else if (e.code === REL.Y) m.dy += e.value;
        else m.wheel += e.value;
      }
      m.buttons = [...down].sort((a, b) => a - b);
      return m;
    },
  );
}
