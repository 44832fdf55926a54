// QEMU's QMP monitor for the real-device rig: the host plugs and unplugs USB devices on the guest's
// xHCI while usbwire runs in the guest (device_add / device_del), and types on a QEMU usb-kbd
// (input-send-event). One JSON object per line each way; events are kept until asked for.
import { existsSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { REAL_GUEST } from './real-guest-node.js';
import { type BootOptions, type GuestHandle, sleep, startGuest, waitForFile } from './rig.js';

type QmpReply = { return?: unknown; error?: { class: string; desc: string }; event?: string; data?: unknown };

export class Qmp {
  readonly #socket: Socket;
  #buffer = '';
  readonly #events: QmpReply[] = [];
  #waiting: ((r: QmpReply) => void)[] = [];
  #eventWaiters: (() => void)[] = [];

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.setEncoding('utf8').on('data', (s: string) => this.#data(s));
    socket.on('error', () => {});
  }

  /** Connect once QEMU has made its socket; the greeting is read and capabilities negotiated. */
  static async connect(path: string, timeoutMs = 30_000): Promise<Qmp> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (existsSync(path)) {
        const socket = await new Promise<Socket | undefined>((resolve) => {
          const s = connect(path, () => resolve(s));
          s.once('error', () => resolve(undefined));
        });
        if (socket) {
          const qmp = new Qmp(socket);
          await qmp.#next(); // greeting
          await qmp.execute('qmp_capabilities');
          return qmp;
        }
      }
      if (Date.now() > deadline) throw new Error(`no QMP socket at ${path}`);
      await sleep(100);
    }
  }

  #data(s: string): void {
    this.#buffer += s;
    for (let nl = this.#buffer.indexOf('\n'); nl >= 0; nl = this.#buffer.indexOf('\n')) {
      const line = this.#buffer.slice(0, nl).trim();
      this.#buffer = this.#buffer.slice(nl + 1);
      if (!line) continue;
      const msg = JSON.parse(line) as QmpReply;
      if (msg.event) {
        this.#events.push(msg);
        for (const w of this.#eventWaiters.splice(0)) w();
      } else this.#waiting.shift()?.(msg);
    }
  }

  #next(): Promise<QmpReply> {
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  /** Run one command; throws with QEMU's error text. */
  async execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    const reply = this.#next();
    this.#socket.write(`${JSON.stringify(args ? { execute: command, arguments: args } : { execute: command })}\n`);
    const r = await reply;
    if (r.error) throw new Error(`QMP ${command}: ${r.error.class}: ${r.error.desc}`);
    return r.return;
  }

  /** Wait for (and consume) an event NAME whose data matches `match`. */
  async event(name: string, match: (data: Record<string, unknown>) => boolean, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.#events.findIndex((e) => e.event === name && match((e.data ?? {}) as Record<string, unknown>));
      if (i >= 0) {
        this.#events.splice(i, 1);
        return;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no QMP event ${name} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#eventWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** device_add with qdev properties (driver, bus, port, id, drive...). */
  async deviceAdd(props: Record<string, string>): Promise<void> {
    await this.execute('device_add', props);
  }

  /** device_del, then QEMU's DEVICE_DELETED for it (USB unplug is immediate). */
  async deviceDel(id: string): Promise<void> {
    await this.execute('device_del', { id });
    await this.event('DEVICE_DELETED', (d) => d.device === id);
  }

  /** Press and release each key (QEMU qcodes: "a", "shift", "ret"...), one event per command. */
  async tap(keys: string[], gapMs = 30): Promise<void> {
    for (const key of keys) {
      for (const down of [true, false]) {
        await this.execute('input-send-event', {
          events: [{ type: 'key', data: { down, key: { type: 'qcode', data: key } } }],
        });
        await sleep(gapMs);
      }
    }
  }

  close(): void {
    this.#socket.destroy();
  }
}

/** QEMU arguments for a QMP server on a unix socket in `dir`; returns the socket path too. */
export function qmpArgs(dir: string): { path: string; args: string[] } {
  const path = join(dir, 'qmp.sock');
  return { path, args: ['-qmp', `unix:${path},server=on,wait=off`] };
}

/**
 * A real-device guest (real-guest-node.ts' bootRealGuest) that the host drives while it runs:
 * returns the handle (waitStage, signal, GuestShell). Stopped 10 s after guest.sh has finished,
 * in case its shutdown hangs behind a stuck driver.
 */
export function startRealGuest(
  share: string,
  opts: Pick<BootOptions, 'modules' | 'qemuArgs' | 'script'> & { timeoutMs: number },
): GuestHandle {
  const g = startGuest({ shareDir: share, net: false, ...REAL_GUEST, ...opts });
  waitForFile(g.path('guest.rc'), opts.timeoutMs, g.done)
    .then(() => sleep(10_000))
    .then(g.kill, () => {});
  return g;
}
