// The real `usbwire serve` process for the fault tests: started from the built CLI, killed when
// the test file ends.
import { type ChildProcess, spawn } from 'node:child_process';
import net from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { after } from 'node:test';
import { fileURLToPath } from 'node:url';
import { until } from '../support/usbip-wire.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const children: ChildProcess[] = [];

after(() => {
  for (const c of children) c.kill('SIGKILL');
});

export function freePort(): Promise<number> {
  return new Promise((resolvePort) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolvePort(port));
    });
  });
}

export interface Serve {
  proc: ChildProcess;
  /** the USB/IP port it was told to listen on */
  port: number;
  output(): string;
  /** exit code (null when killed by a signal) */
  exited: Promise<number | null>;
}

/** `usbwire serve --usbip 127.0.0.1:PORT ...args`; resolves once listening, or once it exited. */
export async function startServe(args: string[]): Promise<Serve> {
  const port = await freePort();
  const argv = [join(ROOT, 'bin', 'usbwire.js'), 'serve', '--usbip', `127.0.0.1:${port}`, ...args];
  const proc = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(proc);
  let out = '';
  for (const s of [proc.stdout!, proc.stderr!]) s.setEncoding('utf8').on('data', (d: string) => (out += d));
  let gone = false;
  const exited = new Promise<number | null>((r) =>
    proc.once('exit', (code) => {
      gone = true;
      r(code);
    }),
  );
  await until(() => /usbip: listening/.test(out) || gone, 'usbwire listening or exiting', 20_000);
  if (gone) await new Promise((r) => setTimeout(r, 20)); // the rest of its message
  return { proc, port, output: () => out, exited };
}
