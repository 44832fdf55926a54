import type { HostContext } from './context.js';

/** Stop streams and cancel requests on some endpoints (all when undefined) and wait for them. */
export async function quiesce(host: HostContext, endpoints?: ReadonlySet<number>): Promise<void> {
  host.streams.stopAll(false, endpoints);
  host.pending.cancelAll(endpoints);
  await host.transfers.drain();
}

/** Reset the device, logging (not throwing) a failure. */
export async function resetDevice(host: HostContext): Promise<void> {
  try {
    await host.device.reset();
  } catch (err) {
    host.log.error(`reset of ${host.device.name} failed: ${(err as Error).message}`);
  }
}

/** Quiet the device and reset it (unless it is gone) so it is clean for its next user. */
export async function quiesceAndReset(host: HostContext): Promise<void> {
  await quiesce(host);
  if (host.guest.gone) return;
  await resetDevice(host);
}
