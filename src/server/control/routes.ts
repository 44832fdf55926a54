import { type ControllableDevice, DeviceActionError } from '../../devices/classes.js';
import { createLogger } from '../../util/log.js';
import { type DeviceRegistry, type ExportedDevice, entryName } from '../registry.js';

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
 *   POST /devices/BUSID/detach              {detached: OWNER}: the holder's connection is closed
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
  if (parts.length === 3 && parts[2] === 'detach') {
    const notAllowed = allow('POST');
    if (notAllowed) return notAllowed;
    const owner = registry.detach(entry);
    if (owner === undefined) return error(409, `${busid} is not in use`);
    log.info(`${busid} detached from ${owner}`);
    return { status: 200, body: { detached: owner } };
  }
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

/** Bad arguments → 400; refusals for now (queue full, no host) → 503; anything else is a bug → 500. */
function actionError(err: unknown): Reply {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof DeviceActionError) return error(err.reason === 'invalid' ? 400 : 503, message);
  log.error(`device action failed: ${err instanceof Error ? (err.stack ?? message) : message}`);
  return error(500, message);
}
