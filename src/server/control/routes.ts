import { type ControllableDevice, DeviceActionError } from '../../devices/classes.js';
import { createLogger } from '../../util/log.js';
import { type DeviceRegistry, type ExportedDevice, entryName } from '../registry.js';
import { type DetachOutcome, describeHold, safeDetach } from './safe-detach.js';

const log = createLogger('control');

/** A reply of the control API: HTTP status and a JSON body. */
export interface Reply {
  status: number;
  body: unknown;
}

export interface DeviceSummary {
  busid: string;
  name: string;
  /** Where a remote device comes from, null for a local one. */
  origin: string | null;
  /** False while a remote device is away (its busid is kept for it). */
  connected: boolean;
  /** Who holds the device ("usbip 10.0.2.15:51234", "usbredir ..."), null when free. */
  owner: string | null;
  actions: string[];
}

const error = (status: number, message: string): Reply => ({ status, body: { error: message } });

function actionsOf(entry: ExportedDevice): ControllableDevice['actions'] {
  return (entry.device as ControllableDevice).actions;
}

export function summarize(entry: ExportedDevice): DeviceSummary {
  return {
    busid: entry.busid,
    name: entryName(entry),
    origin: entry.origin ?? null,
    connected: entry.device !== undefined,
    owner: entry.owner ?? null,
    actions: Object.keys(actionsOf(entry) ?? {}),
  };
}

/**
 * The control API, independent of HTTP plumbing:
 *   GET  /                                  {service: "usbwire", pid}
 *   GET  /devices                           [{busid, name, owner, actions}]
 *   GET  /devices/BUSID                     {busid, name, owner, actions}
 *   POST /devices/BUSID/actions/NAME  {...}  the action's result
 *   POST /devices/BUSID/detach  [{force}]   {detached: OWNER, ...}: see detach()
 */
export async function route(registry: DeviceRegistry, method: string, url: string, body: unknown): Promise<Reply> {
  let parts: string[];
  try {
    const path = new URL(url, 'http://control').pathname;
    parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    return error(400, `bad request path ${JSON.stringify(url)}`);
  }
  const allow = (...methods: string[]) =>
    methods.includes(method)
      ? undefined
      : error(405, `${method} not allowed on /${parts.join('/')} (use ${methods.join(', ')})`);
  if (parts.length === 0) return allow('GET') ?? { status: 200, body: { service: 'usbwire', pid: process.pid } };
  if (parts[0] !== 'devices') return error(404, `no such resource /${parts.join('/')} (try /devices)`);
  if (parts.length === 1) return allow('GET') ?? { status: 200, body: registry.list().map(summarize) };
  const busid = parts[1]!;
  const entry = registry.get(busid);
  if (!entry) {
    const known =
      registry
        .list()
        .map((d) => d.busid)
        .join(', ') || 'none';
    return error(404, `no exported device ${busid} (exported: ${known})`);
  }
  if (parts.length === 2) return allow('GET') ?? { status: 200, body: summarize(entry) };
  if (parts.length === 3 && parts[2] === 'detach') return allow('POST') ?? detach(registry, entry, body);
  if (parts.length !== 4 || parts[2] !== 'actions') return error(404, `no such resource /${parts.join('/')}`);
  const name = parts[3]!;
  const notAllowed = allow('POST');
  if (notAllowed) return notAllowed;
  const actions = actionsOf(entry) ?? {};
  const action = Object.hasOwn(actions, name) ? actions[name] : undefined;
  if (!action) {
    const known = Object.keys(actions);
    return error(
      404,
      `${busid} (${entryName(entry)}) has no action "${name}"${known.length ? ` (it has: ${known.join(', ')})` : ' (it has none)'}`,
    );
  }
  if (body === undefined) body = {};
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    return error(400, "the request body must be a JSON object with the action's arguments");
  }
  try {
    const result = await action(body as Record<string, unknown>);
    return { status: 200, body: result ?? null };
  } catch (err) {
    return actionError(err);
  }
}

/**
 * Take the device from its holder (safeDetach): 409 while the host holds it (a mounted disk:
 * `held` says who and why) unless `{"force": true}`; the answer comes once the writes in flight
 * are flushed and the holder let go.
 */
async function detach(registry: DeviceRegistry, entry: ExportedDevice, body: unknown): Promise<Reply> {
  if (body === undefined) body = {};
  const force = (body as { force?: unknown } | null)?.force;
  if (
    typeof body !== 'object' ||
    body === null ||
    Array.isArray(body) ||
    (force !== undefined && typeof force !== 'boolean')
  ) {
    return error(400, 'the request body must be a JSON object, optionally {"force": true}');
  }
  let outcome: DetachOutcome;
  try {
    outcome = await safeDetach(registry, entry, { force: force === true });
  } catch (err) {
    log.error((err as Error).message);
    return error(500, (err as Error).message);
  }
  switch (outcome.kind) {
    case 'free':
      return error(409, `${entry.busid} is not in use`);
    case 'busy':
      return error(409, `a detach of ${entry.busid} is already in progress`);
    case 'refused':
      return {
        status: 409,
        body: {
          error: `${describeHold(outcome.hold)}; not detached: unmount it in the guest first, or detach --force (the guest then sees its medium removed)`,
          held: { owner: outcome.hold.owner, reason: outcome.hold.reason },
        },
      };
    case 'detached': {
      const { kind: _, owner, ...rest } = outcome;
      return { status: 200, body: { detached: owner, ...rest } };
    }
  }
}

/** Bad arguments → 400; refusals for now (queue full, no host) → 503; anything else is a bug → 500. */
function actionError(err: unknown): Reply {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof DeviceActionError) return error(err.reason === 'invalid' ? 400 : 503, message);
  log.error(`device action failed: ${err instanceof Error ? (err.stack ?? message) : message}`);
  return error(500, message);
}
