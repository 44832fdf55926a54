import { UsageError } from './args.js';
import { callControl, controlAddress, detachDevice } from './control-client.js';

const CONTROL_USAGE = `  --control unix:PATH|HOST:PORT
                 the server's control endpoint (default: the default socket of 'usbwire serve')`;

export const TYPE_HELP = `usage: usbwire type BUSID TEXT [--control ADDR]

Type TEXT on an exported keyboard: US layout, printable ASCII with Shift where it needs it;
a newline or tab in TEXT (e.g. $'ls\\n' in bash) is Enter or Tab. Several words are joined by spaces.
${CONTROL_USAGE}
`;

export const KEY_HELP = `usage: usbwire key BUSID COMBO [--down|--up] [--control ADDR]

Press a key combination on an exported keyboard: ctrl+alt+f2, shift+a, enter, esc, tab,
backspace, f1..f24, left/right/up/down, home, end, pageup, pagedown, insert, delete, capslock,
a character, or 0xNN (a keyboard-page usage). --down holds it (across later type/key
commands) until the same combo is sent with --up.
${CONTROL_USAGE}
`;

export const POINTER_HELP = `usage: usbwire pointer BUSID move DX DY | click [left|right|middle] |
                       down [BUTTON] | up [BUTTON] | wheel N    [--control ADDR]

Drive an exported mouse: relative move (+x right, +y down), click a button, hold or release one,
turn the wheel (+N away from the user).
${CONTROL_USAGE}
`;

export const LEDS_HELP = `usage: usbwire leds BUSID [--control ADDR]

Print the LED state the host last set on an exported keyboard (Num, Caps, Scroll Lock...).
${CONTROL_USAGE}
`;

export const DEVICES_HELP = `usage: usbwire devices [--json] [--control ADDR]

List the devices a running 'usbwire serve' exports, who uses them and their actions.
${CONTROL_USAGE}
`;

export const DETACH_HELP = `usage: usbwire detach [--force] BUSID [--control ADDR]

Take an exported device away from whoever uses it: their connection is closed (a USB/IP client
sees the device unplugged; a usbredir guest with reconnect= connects again and gets it back).
A disk finishes the writes in flight and flushes its image first. While the guest holds the disk
(mounted or open: it locked the medium) the detach is refused with the reason, exit status 1.
  --force        detach anyway: the guest first sees its medium removed (new I/O fails), then
                 loses the device; every write it was told is done is in the image
${CONTROL_USAGE}
`;

interface Parsed {
  positionals: string[];
  flags: Set<string>;
  control: string | undefined;
}

/** Our own argv split: negative numbers ("-10") are positionals, "--" ends the options. */
function parseInputArgs(argv: string[], allowed: string[], command: string): Parsed | 'help' {
  const out: Parsed = { positionals: [], flags: new Set(), control: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      out.positionals.push(...argv.slice(i + 1));
      break;
    }
    if (a === '-h' || a === '--help') return 'help';
    if (a === '--control' || a.startsWith('--control=')) {
      const v = a === '--control' ? argv[++i] : a.slice('--control='.length);
      if (v === undefined || v === '') throw new UsageError('--control needs unix:PATH or HOST:PORT');
      out.control = v;
    } else if (a.startsWith('-') && a.length > 1 && !/^-\d+$/.test(a)) {
      if (!allowed.includes(a)) throw new UsageError(`unknown option ${a} (see usbwire ${command} --help)`);
      out.flags.add(a);
    } else out.positionals.push(a);
  }
  return out;
}

function print(result: unknown): void {
  if (result !== null && result !== undefined)
    console.log(typeof result === 'string' ? result : JSON.stringify(result));
}

async function act(control: string | undefined, busid: string, action: string, args: Record<string, unknown>) {
  return callControl(controlAddress(control), 'POST', `/devices/${encodeURIComponent(busid)}/actions/${action}`, args);
}

function integer(text: string | undefined, what: string): number {
  if (text === undefined || !/^[-+]?\d+$/.test(text))
    throw new UsageError(`${what} must be an integer, got ${text ?? 'nothing'}`);
  return Number(text);
}

/** `usbwire type BUSID TEXT` */
export async function typeCommand(argv: string[]): Promise<number> {
  const p = parseInputArgs(argv, [], 'type');
  if (p === 'help') return help(TYPE_HELP);
  const [busid, ...text] = p.positionals;
  if (!busid || text.length === 0) throw new UsageError('usage: usbwire type BUSID TEXT');
  await act(p.control, busid, 'type', { text: text.join(' ') });
  return 0;
}

/** `usbwire key BUSID COMBO [--down|--up]` */
export async function keyCommand(argv: string[]): Promise<number> {
  const p = parseInputArgs(argv, ['--down', '--up'], 'key');
  if (p === 'help') return help(KEY_HELP);
  const [busid, combo, extra] = p.positionals;
  if (!busid || !combo || extra !== undefined) throw new UsageError('usage: usbwire key BUSID COMBO [--down|--up]');
  if (p.flags.has('--down') && p.flags.has('--up')) throw new UsageError('--down and --up exclude each other');
  const action = p.flags.has('--down') ? 'down' : p.flags.has('--up') ? 'up' : 'press';
  await act(p.control, busid, 'key', { combo, action });
  return 0;
}

/** `usbwire pointer BUSID move DX DY | click [BUTTON] | down [BUTTON] | up [BUTTON] | wheel N` */
export async function pointerCommand(argv: string[]): Promise<number> {
  const p = parseInputArgs(argv, [], 'pointer');
  if (p === 'help') return help(POINTER_HELP);
  const [busid, verb, ...rest] = p.positionals;
  if (!busid || !verb) throw new UsageError('usage: usbwire pointer BUSID move DX DY | click [BUTTON] | wheel N');
  const button = (b: string | undefined) => {
    if (b !== undefined && !['left', 'right', 'middle'].includes(b)) {
      throw new UsageError(`button must be left, right or middle, got ${b}`);
    }
    return b ?? 'left';
  };
  const noMore = (n: number) => {
    if (rest.length > n) throw new UsageError(`unexpected argument "${rest[n]}"`);
  };
  switch (verb) {
    case 'move':
      noMore(2);
      await act(p.control, busid, 'move', { dx: integer(rest[0], 'DX'), dy: integer(rest[1], 'DY') });
      return 0;
    case 'click':
      noMore(1);
      await act(p.control, busid, 'click', { button: button(rest[0]) });
      return 0;
    case 'down':
    case 'up':
      noMore(1);
      await act(p.control, busid, 'button', { button: button(rest[0]), down: verb === 'down' });
      return 0;
    case 'wheel':
      noMore(1);
      await act(p.control, busid, 'wheel', { delta: integer(rest[0], 'N') });
      return 0;
    default:
      throw new UsageError(`unknown pointer action "${verb}" (move, click, down, up, wheel)`);
  }
}

/** `usbwire leds BUSID` */
export async function ledsCommand(argv: string[]): Promise<number> {
  const p = parseInputArgs(argv, ['--json'], 'leds');
  if (p === 'help') return help(LEDS_HELP);
  const [busid, extra] = p.positionals;
  if (!busid || extra !== undefined) throw new UsageError('usage: usbwire leds BUSID');
  const leds = (await act(p.control, busid, 'leds', {})) as Record<string, unknown>;
  if (p.flags.has('--json')) print(leds);
  else {
    const on = Object.entries(leds)
      .filter(([k, v]) => k !== 'raw' && v === true)
      .map(([k]) => k);
    console.log(on.length ? on.join(' ') : 'none');
  }
  return 0;
}

/** `usbwire devices` */
export async function devicesCommand(argv: string[]): Promise<number> {
  const p = parseInputArgs(argv, ['--json'], 'devices');
  if (p === 'help') return help(DEVICES_HELP);
  if (p.positionals.length) throw new UsageError(`unexpected argument "${p.positionals[0]}"`);
  const list = (await callControl(controlAddress(p.control), 'GET', '/devices')) as {
    busid: string;
    name: string;
    origin: string | null;
    connected: boolean;
    owner: string | null;
    actions: string[];
  }[];
  if (p.flags.has('--json')) {
    print(list);
    return 0;
  }
  for (const d of list) {
    const actions = d.actions.length ? `actions: ${d.actions.join(', ')}` : 'no actions';
    const state = !d.connected ? 'waiting for it' : d.owner ? `in use by ${d.owner}` : 'free';
    const origin = d.origin && d.connected ? ` (from ${d.origin})` : '';
    console.log(`${d.busid}  ${d.name}${origin}  ${state}  ${actions}`);
  }
  return 0;
}

/** `usbwire detach [--force] BUSID` */
export async function detachCommand(argv: string[]): Promise<number> {
  const p = parseInputArgs(argv, ['--force'], 'detach');
  if (p === 'help') return help(DETACH_HELP);
  const [busid, extra] = p.positionals;
  if (!busid || extra !== undefined) throw new UsageError('usage: usbwire detach [--force] BUSID');
  const { status, lines } = await detachDevice(controlAddress(p.control), busid, p.flags.has('--force'));
  for (const line of lines) (status === 0 ? console.log : console.error)(line);
  return status;
}

function help(text: string): number {
  process.stdout.write(text);
  return 0;
}
