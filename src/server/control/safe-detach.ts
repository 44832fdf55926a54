import { type SafeRelease, safeReleaseOf } from '../../devices/safe-release.js';
import { createLogger } from '../../util/log.js';
import { type DeviceRegistry, type ExportedDevice, entryName } from '../registry.js';

const log = createLogger('detach');

/** How long a forced detach gives the host to learn that the medium is gone before its connection closes. */
export const NOTICE_GRACE_MS = 3000;
/**
 * The same for a host that does not hold the device: long enough to collect the status of a
 * command that was running (so its last write is acknowledged), short for an idle host.
 */
export const IDLE_NOTICE_GRACE_MS = 300;
/** Time for a front end to write the reply that told the host, before its connection closes. */
const REPLY_SETTLE_MS = 100;
/** How long a detach waits for the holder to let go once its connection is closed. */
const RELEASE_WAIT_MS = 10_000;

export interface DetachOptions {
  /** Take the device even while the host holds it: the host sees its medium removed first. */
  force?: boolean;
  noticeGraceMs?: number;
}

/** Who holds a device in use and why it must not be taken from them now. */
export interface Hold {
  entry: ExportedDevice;
  owner: string;
  reason: string;
}

export type DetachOutcome =
  | { kind: 'free' }
  | { kind: 'busy' }
  | { kind: 'refused'; hold: Hold }
  | {
      kind: 'detached';
      owner: string;
      /** The medium was taken out and flushed before the holder's connection closed. */
      ejected: boolean;
      /** Set when a hold was overridden (forced). */
      forcedHold?: string;
      /** Whether the host had been told the medium was gone when its connection closed. */
      hostNoticed?: boolean;
    };

/** A detach in progress per entry: a second request waits for nothing, it is told so. */
const inProgress = new WeakSet<ExportedDevice>();

/** The entry's hold, if it is in use and its device says the host must keep it. */
export function holdOf(entry: ExportedDevice): Hold | undefined {
  const owner = entry.owner;
  if (owner === undefined) return undefined;
  const reason = safeReleaseOf(entry.device)?.hold();
  return reason === undefined ? undefined : { entry, owner, reason };
}

export function holdsIn(registry: DeviceRegistry): Hold[] {
  return registry.list().flatMap((e) => holdOf(e) ?? []);
}

export function describeHold(h: Hold): string {
  return `${h.entry.busid} (${entryName(h.entry)}) is held by ${h.owner}: ${h.reason}`;
}

/**
 * Take a device from its holder without losing a write: refuse while the host holds it (unless
 * forced); otherwise take the medium out (running commands finish), flush, close the holder's
 * connection, wait until it let go, and put the medium back for the next host. A device without
 * SafeRelease is simply taken away.
 */
export async function safeDetach(
  registry: DeviceRegistry,
  entry: ExportedDevice,
  opts: DetachOptions = {},
): Promise<DetachOutcome> {
  const owner = entry.owner;
  if (owner === undefined) return { kind: 'free' };
  if (inProgress.has(entry)) return { kind: 'busy' };
  const hold = holdOf(entry);
  if (hold && !opts.force) {
    log.warn(`detach of ${describeHold(hold)}; refused (unmount it in the guest, or detach --force)`);
    return { kind: 'refused', hold };
  }
  const release = safeReleaseOf(entry.device);
  inProgress.add(entry);
  try {
    if (hold) log.warn(`forced detach of ${describeHold(hold)}: removing its medium first`);
    let hostNoticed: boolean | undefined;
    if (release) {
      const { noticed } = await release.eject();
      await flushOrRestore(release, entry);
      const grace = hold ? (opts.noticeGraceMs ?? NOTICE_GRACE_MS) : IDLE_NOTICE_GRACE_MS;
      hostNoticed = await within(noticed, grace);
      // The status that told it is on its way to the host: let the front end write it out.
      if (hostNoticed) await new Promise((r) => setTimeout(r, REPLY_SETTLE_MS));
    }
    if (entry.owner === owner) {
      const released = whenReleased(registry, entry, RELEASE_WAIT_MS);
      registry.detach(entry);
      if (!(await released)) log.warn(`${entry.busid}: ${owner} did not let go within ${RELEASE_WAIT_MS} ms`);
    }
    release?.restore();
    log.info(
      `${entry.busid} detached from ${owner}` +
        (release ? ', in-flight writes finished and flushed' : '') +
        (hold ? `; the host ${hostNoticed ? 'saw' : 'had not yet asked about'} the medium removal` : ''),
    );
    return {
      kind: 'detached',
      owner,
      ejected: release !== undefined,
      ...(hold ? { forcedHold: hold.reason, hostNoticed } : {}),
    };
  } finally {
    inProgress.delete(entry);
  }
}

/** A flush that fails leaves the host its medium (nothing was taken) and is reported. */
async function flushOrRestore(release: SafeRelease, entry: ExportedDevice): Promise<void> {
  try {
    await release.flush();
  } catch (err) {
    release.restore();
    throw new Error(`${entry.busid}: flushing before the detach failed: ${(err as Error).message}; not detached`);
  }
}

function within(p: Promise<void>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    void p.then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

function whenReleased(registry: DeviceRegistry, entry: ExportedDevice, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      registry.off('released', onReleased);
      resolve(ok);
    };
    const onReleased = (e: ExportedDevice) => {
      if (e === entry) done(true);
    };
    const timer = setTimeout(() => done(false), ms);
    registry.on('released', onReleased);
  });
}

export interface StopOptions {
  /** Stop at once even if a host holds a device (serve --force-stop). */
  force: boolean;
  /** Resolves when the operator insists (a second signal): stop now, forcing. */
  insist: Promise<void>;
  /** What asked for the stop, for the log ("SIGTERM"). */
  why: string;
  pollMs?: number;
}

/**
 * Stopping the server: while a host holds a device (a mounted disk), wait until it lets go,
 * saying who holds what, unless forced now or later (`insist`); then detach every device in
 * use the safe way (writes in flight flushed; a held disk sees its medium removed first).
 */
export async function detachAllForStop(registry: DeviceRegistry, opts: StopOptions): Promise<void> {
  let force = opts.force;
  let holds = holdsIn(registry);
  if (holds.length > 0 && !force) {
    let insisted = false;
    void opts.insist.then(() => (insisted = true));
    for (const h of holds) {
      log.warn(
        `${opts.why}: not stopping yet: ${describeHold(h)}. Waiting until the guest lets it go (unmount); ` +
          `${opts.why} again (or serve --force-stop) stops now, the guest then sees its medium removed`,
      );
    }
    while (!insisted && holds.length > 0) {
      await Promise.race([opts.insist, new Promise((r) => setTimeout(r, opts.pollMs ?? 250))]);
      holds = holdsIn(registry);
    }
    force = insisted;
    log.info(insisted ? `${opts.why} again: stopping now, forcing` : 'no device is held any more: stopping');
  }
  const inUse = registry.list().filter((e) => e.owner !== undefined);
  await Promise.all(
    inUse.map((e) => safeDetach(registry, e, { force }).catch((err: Error) => log.error(`${e.busid}: ${err.message}`))),
  );
}
