// Two guests side by side on this host, a real device exported over usbredir from one to the
// other (nested QEMU is too slow under TCG):
//
//   guest A (the exporter): usbwire runs inside it on the share (real-guest-node.ts) against the
//     guest's own devices (a configfs gadget on dummy_hcd, QEMU devices given in qemuArgs) and
//     listens for usbredir on the guest's port USBREDIR_GUEST_PORT; QEMU forwards host
//     127.0.0.1:PORT there (user net hostfwd, restrict=on).
//   guest B (the importer): a plain rig guest whose QEMU usb-redir (qemu-xhci) connects to host
//     127.0.0.1:PORT, i.e. to usbwire in guest A.
//
// Guest B boots only once guest A says usbwire is listening with the device exported (stage
// `usbredir-ready`): the two share the host's cores, and A's boot + node start is the long part.
// Steps between the guests go through the host: `links` relays a stage of one guest as a host
// signal to the other. When B has finished, A gets `host-b-done` (its script ends with
// `rig_wait_host b-done`); when A ends first, B is stopped (it would wait for a device forever).
//
// Use (QEMU's usb-uas in guest A, the uas driver in guest B):
//   const run = await runTwoGuests({
//     name: 'real-uas',
//     exporter: {
//       modules: ['xhci_pci'],
//       qemuArgs: ['-device', 'qemu-xhci,id=xa', '-device', 'usb-uas,id=uas,bus=xa.0', '-drive', ...],
//       script: `${EXPORTER_HELPERS}
//         BUSID=$(rig_wait_usb 46f4 0003) || fail "no usb-uas"
//         real_serve_usbredir $BUSID "$RIG_SHARE/serve.log"
//         exporter_ready
//         exporter_wait_b
//         stop_serve "$RIG_SHARE/serve.log" && rig_result closed yes`,
//     },
//     importer: { modules: ['uas', 'sd_mod'], script: '... rig_wait_disk ...; rig_result ...' },
//   });
//   run.aKV / run.bKV (each guest's results.txt), run.describe() for assertion messages.
// A guest script that fails before exporter_ready ends the run at once (B never boots).
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GUEST_NODE, guestNodeShare, prepareGadgetModules, REAL_GUEST } from './real-guest-node.js';
import {
  freePort,
  type GuestHandle,
  type GuestResult,
  readKV,
  sleep,
  startGuest,
  usbRedirArgs,
  waitForFile,
} from './rig.js';

/** Where usbwire listens for usbredir inside guest A (forwarded from a free host port). */
export const USBREDIR_GUEST_PORT = 4000;

/**
 * Guest A shell, besides GUEST_NODE: `exporter_ready` tells the host that usbwire listens and
 * exports (guest B boots then); `exporter_wait_b` waits until guest B has finished.
 */
export const EXPORTER_HELPERS = `${GUEST_NODE}
exporter_ready() { rig_stage usbredir-ready; }
exporter_wait_b() { rig_wait_host b-done \${1:-900}; }
`;

export interface ExporterGuest {
  /** guest.sh body: starts usbwire (real_serve_usbredir), calls exporter_ready, ends with exporter_wait_b. */
  script: string;
  /** Copy the gadget modules (configfs, libcomposite, SourceSink, dummy_hcd) to the share. */
  gadget?: boolean;
  /** QEMU devices of guest A (e.g. `-device qemu-xhci -device usb-uas ...`). */
  qemuArgs?: string[];
  modules?: string[];
}

export interface ImporterGuest {
  script: string;
  /** Modules /init loads (xhci_pci is added). */
  modules?: string[];
  /** Appended to QEMU's `-device usb-redir,...` (e.g. `,debug=4`). */
  redirOptions?: string;
  /** More QEMU arguments for guest B. */
  qemuArgs?: string[];
}

/** `{ from: 'b', stage: 'x', signal: 'y' }`: when guest B reaches stage x, create host-y in A's share. */
export interface Link {
  from: 'a' | 'b';
  stage: string;
  signal: string;
}

export interface TwoGuestsOptions {
  name: string;
  exporter: ExporterGuest;
  importer: ImporterGuest;
  links?: Link[];
  /** Whole run limit; each guest is stopped by then (default 480 s). */
  timeoutMs?: number;
  /** How long guest A may take to be ready (default 180 s). */
  readyTimeoutMs?: number;
}

export interface TwoGuestsResult {
  a: GuestResult;
  /** undefined when guest A never got ready (guest B was not started). */
  b: GuestResult | undefined;
  /** results.txt of each guest */
  aKV: Record<string, string>;
  bKV: Record<string, string>;
  /** host port forwarded to usbwire in guest A */
  port: number;
  /** seconds from A's start until it was ready, and the whole run */
  readySecs: number | undefined;
  totalSecs: number;
  describe(): string;
  cleanup(): void;
}

/** QEMU arguments of guest B's usb-redir: connects to host port `port` (reconnect=1). */
export function importerRedirArgs(port: number, redirOptions = ''): string[] {
  return usbRedirArgs([port], { deviceOptions: redirOptions });
}

export async function runTwoGuests(opts: TwoGuestsOptions): Promise<TwoGuestsResult> {
  const timeoutMs = opts.timeoutMs ?? 480_000;
  const started = Date.now();
  const shareA = guestNodeShare(`${opts.name}-a`);
  if (opts.exporter.gadget) prepareGadgetModules(shareA);
  const port = await freePort();
  writeFileSync(join(shareA, 'results.txt'), '');
  const a = startGuest({
    ...REAL_GUEST,
    shareDir: shareA,
    hostfwd: [{ hostPort: port, guestPort: USBREDIR_GUEST_PORT }],
    // usbcore for the gadget modules (udc-core needs usb-common), which insmod loads without deps
    modules: ['usbcore', ...(opts.exporter.modules ?? [])],
    qemuArgs: opts.exporter.qemuArgs ?? [],
    script: opts.exporter.script,
    timeoutMs,
  });
  stopAfterScript(a, timeoutMs);
  let b: GuestHandle | undefined;
  let readySecs: number | undefined;
  try {
    await a.waitStage('usbredir-ready', opts.readyTimeoutMs ?? 180_000);
    readySecs = (Date.now() - started) / 1000;
    const shareB = mkdtempSync(join(tmpdir(), `usbwire-${opts.name}-b-`));
    writeFileSync(join(shareB, 'results.txt'), '');
    b = startGuest({
      shareDir: shareB,
      append: REAL_GUEST.append,
      modules: ['xhci_pci', ...(opts.importer.modules ?? [])],
      qemuArgs: [...importerRedirArgs(port, opts.importer.redirOptions), ...(opts.importer.qemuArgs ?? [])],
      script: opts.importer.script,
      timeoutMs: Math.max(30_000, timeoutMs - (Date.now() - started)),
    });
    stopAfterScript(b, timeoutMs);
    relay(a, b, opts.links ?? []);
    // A gone (crash, fail) → nothing to import any more.
    void a.done.then(() => b?.kill());
    // B's script over (its QEMU may still wait on a stuck driver) → A may stop usbwire.
    const bDone = () => a.signal('b-done');
    waitForFile(b.path('guest.rc'), timeoutMs, b.done).then(bDone, bDone);
  } catch {
    a.kill();
  }
  const [resA, resB] = await Promise.all([a.done, b?.done]);
  for (const res of [resA, resB]) if (res) writeFileSync(join(res.shareDir, 'qemu-stderr.log'), res.qemuStderr);
  const result: TwoGuestsResult = {
    a: resA,
    b: resB,
    aKV: readKV(shareA),
    bKV: resB ? readKV(resB.shareDir) : {},
    port,
    readySecs,
    totalSecs: (Date.now() - started) / 1000,
    describe: () =>
      [
        `=== guest A (exporter, ready after ${readySecs?.toFixed(1) ?? 'never'} s) ===`,
        resA.describe(),
        ...usbwireLogs(shareA),
        `=== guest B (importer) ===`,
        resB ? resB.describe() : '(not started)',
      ].join('\n'),
    cleanup: () => {
      resA.cleanup();
      resB?.cleanup();
    },
  };
  return result;
}

/** The tails of usbwire's logs in guest A (serve*.log in its share). */
function usbwireLogs(share: string, lines = 40): string[] {
  return readdirSync(share)
    .filter((f) => /^serve.*\.log$/.test(f))
    .flatMap((f) => [
      `--- ${f} in guest A (tail) ---`,
      ...readFileSync(join(share, f), 'utf8').split('\n').slice(-lines),
    ]);
}

/** A guest whose shutdown hangs behind a stuck driver is stopped 10 s after guest.sh has finished. */
function stopAfterScript(g: GuestHandle, timeoutMs: number): void {
  waitForFile(g.path('guest.rc'), timeoutMs, g.done)
    .then(() => sleep(10_000))
    .then(g.kill, () => {});
}

function relay(a: GuestHandle, b: GuestHandle, links: Link[]): void {
  for (const l of links) {
    const [from, to] = l.from === 'a' ? [a, b] : [b, a];
    from.waitStage(l.stage, 3_600_000).then(
      () => to.signal(l.signal),
      () => {},
    );
  }
}
