import { createSource } from '../client/sources.js';
import { STDIO_RESOURCE } from '../devices/classes.js';
import { createDemoDisk } from '../devices/mass-storage/index.js';
import { isWrapped, type StorageWrapping, wrapStorage } from '../devices/mass-storage/storage-wrappers.js';
import { AccessPolicy } from '../server/access.js';
import { ConnectionGate } from '../server/connection-gate.js';
import {
  type ControlAddress,
  ControlAddressError,
  ControlInUseError,
  ControlServer,
  checkControlAddress,
  defaultControlPath,
  detachAllForStop,
} from '../server/control/index.js';
import { DeviceRegistry, entryName } from '../server/registry.js';
import { UsbipServer } from '../server/usbip/index.js';
import { UsbredirConnector, UsbredirListener } from '../server/usbredir/index.js';
import {
  type ConnectSecurity,
  CredentialError,
  type ListenSecurity,
  loadServerCredentials,
} from '../transport/credentials.js';
import { setPeerTimeout } from '../transport/peer-timeout.js';
import { MappedSource } from '../usb/mapped-source.js';
import type { DeviceSource } from '../usb/source.js';
import { createLogger, setLogLevel } from '../util/log.js';
import { deviceFlag, type Endpoint, parseServeArgs, SERVE_HELP, type ServeOptions, UsageError } from './args.js';
import { DeviceSlots } from './device-slots.js';
import { hostDeviceSources } from './host-devices.js';

const log = createLogger('serve');

interface FrontEnd {
  close(): Promise<void>;
}

/** What the front ends and remotes secure their connections with; nothing: plain TCP. */
interface Security {
  listen?: ListenSecurity;
  /** For connections out; throws a UsageError when the flags cannot say which identity to use. */
  connect(): ConnectSecurity | undefined;
}

function loadSecurity(opts: ServeOptions): Security {
  const asUsage = <T>(f: () => T): T => {
    try {
      return f();
    } catch (err) {
      if (err instanceof CredentialError) throw new UsageError(err.message);
      throw err;
    }
  };
  const loaded = asUsage(() => loadServerCredentials(opts.credentials, (m) => log.warn(m)));
  if (!loaded) return { connect: () => undefined };
  return { listen: loaded.listen, connect: () => asUsage(loaded.connect) };
}

function hostForDisplay(e: Endpoint): string {
  return e.host.includes(':') ? `[${e.host}]` : e.host;
}

/** `usbwire serve`: export devices until SIGINT/SIGTERM. Resolves with the exit code. */
export async function serve(argv: string[]): Promise<number> {
  const parsed = parseServeArgs(argv);
  if (parsed === 'help') {
    process.stdout.write(SERVE_HELP);
    return 0;
  }
  setLogLevel(parsed.logLevel);
  if (parsed.control?.kind === 'tcp') {
    try {
      checkControlAddress(parsed.control);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
  }
  // Signals are handled from the start, so a SIGTERM during start-up still shuts down cleanly,
  // and until the end: a repeated signal must not kill the process before images are flushed.
  // A second signal insists: devices a guest holds (a mounted disk) are taken anyway.
  let signalled: ((signal: string) => void) | undefined;
  let insisted: (() => void) | undefined;
  const signal = new Promise<string>((resolve) => (signalled = resolve));
  const insist = new Promise<void>((resolve) => (insisted = resolve));
  const onSignal = (name: string) => () => {
    if (signalled) {
      signalled(name);
      signalled = undefined;
    } else if (insisted) {
      insisted();
      insisted = undefined;
    } else log.info(`${name}: already shutting down, flushing first`);
  };
  const handlers = { SIGINT: onSignal('SIGINT'), SIGTERM: onSignal('SIGTERM'), SIGHUP: onSignal('SIGHUP') };
  for (const [name, handler] of Object.entries(handlers)) process.on(name, handler);
  const frontEnds: FrontEnd[] = [];
  const registry = new DeviceRegistry();
  const slots = new DeviceSlots(registry);
  try {
    const security = loadSecurity(parsed);
    await openDevices(parsed, registry, slots, security);
    await startFrontEnds(parsed, registry, frontEnds, security);
    const control = await startControl(parsed, registry);
    if (control) frontEnds.push(control);
    slots.start();
  } catch (err) {
    for (const [name, handler] of Object.entries(handlers)) process.off(name, handler);
    await Promise.allSettled(frontEnds.map((f) => f.close()));
    await slots.close();
    await registry.closeAll();
    throw err;
  }
  const why = await signal;
  log.info(`${why}: shutting down`);
  await detachAllForStop(registry, { force: parsed.forceStop, insist, why });
  await Promise.allSettled(frontEnds.map((f) => f.close()));
  await slots.close();
  await registry.closeAll();
  log.info('all devices closed and flushed');
  // The handlers stay until the process exits (they do not keep it alive): a late signal must
  // not turn a clean exit into a kill.
  return 0;
}

async function openDevices(
  opts: ServeOptions,
  registry: DeviceRegistry,
  slots: DeviceSlots,
  security: Security,
): Promise<void> {
  if (opts.exports.length === 0) {
    registry.add(createDemoDisk(opts.demoSizeMiB, 0));
    return;
  }
  const taken = new Map<string, string>();
  for (const spec of opts.devices) {
    const what = deviceFlag(spec.cls.name, spec.text);
    const resource = spec.cls.exclusiveResource?.(spec.options);
    if (resource !== undefined) {
      const first = taken.get(resource);
      if (first !== undefined) throw new UsageError(`${what}: ${resource} is already used by ${first}`);
      taken.set(resource, what);
    }
  }
  checkRemoteListeners(opts);
  let index = 0;
  const hostSources = await hostDeviceSources(opts.exports.filter((e) => e.kind === 'host'));
  for (const e of opts.exports) {
    if (e.kind === 'remote') {
      const tls = e.remote.kind !== 'usbredir-listen' && e.remote.tls;
      slots.add(wrapped(createSource(e.remote, tls ? security.connect() : undefined), e.storage));
      continue;
    }
    if (e.kind === 'host') {
      slots.add(wrapped(hostSources.shift()!, e.storage));
      continue;
    }
    const { spec } = e;
    try {
      registry.add(await spec.cls.create(spec.options, { index: index++ }));
    } catch (err) {
      await registry.closeAll();
      throw new UsageError(`${deviceFlag(spec.cls.name, spec.text)}: ${(err as Error).message}`);
    }
  }
}

/** A source whose Bulk-Only disks are wrapped as they arrive (as-uas...). */
function wrapped(source: DeviceSource, storage: StorageWrapping): DeviceSource {
  if (!isWrapped(storage)) return source;
  return new MappedSource(
    source,
    (device) => wrapStorage(device, storage),
    (device, err) => log.error(`${source.description}: ${device.name} cannot be wrapped: ${err.message}`),
  );
}

/** A usbredir-listen address must not be one the servers listen on too. */
function checkRemoteListeners(opts: ServeOptions): void {
  const servers = [...opts.usbip, ...opts.usbredir].map((e) => `${e.host}:${e.port}`);
  const seen = new Set<string>();
  for (const e of opts.exports) {
    if (e.kind !== 'remote' || e.remote.kind !== 'usbredir-listen') continue;
    const where = `${e.remote.address.host}:${e.remote.address.port}`;
    if (e.remote.address.port !== 0 && (servers.includes(where) || seen.has(where))) {
      throw new UsageError(`--remote ${e.text}: ${where} is already a listening address of this server`);
    }
    seen.add(where);
  }
}

function listenError(what: string, e: Endpoint, err: unknown): UsageError {
  const code = (err as NodeJS.ErrnoException).code;
  const reason =
    code === 'EADDRINUSE'
      ? 'address already in use'
      : code === 'EACCES'
        ? 'permission denied'
        : code === 'EADDRNOTAVAIL'
          ? 'address not available on this machine'
          : (err as Error).message;
  return new UsageError(`cannot listen for ${what} on ${hostForDisplay(e)}:${e.port}: ${reason}`);
}

async function startFrontEnds(
  opts: ServeOptions,
  registry: DeviceRegistry,
  frontEnds: FrontEnd[],
  security: Security,
): Promise<void> {
  const announce = announcer(opts);
  const { peerTimeoutMs, ...limits } = opts.limits;
  if (peerTimeoutMs !== undefined) setPeerTimeout(peerTimeoutMs);
  const access = opts.access ?? AccessPolicy.open;
  const unknown = access.unknownDevices(registry.list().map((d) => d.busid));
  if (unknown.length > 0) log.warn(`access rules name ${unknown.join(', ')}, which this server does not export`);
  // One count for all listeners: the connection limits are per process.
  const gate = new ConnectionGate(limits, log);
  for (const e of opts.usbip) {
    const server = new UsbipServer(registry, e, { ...limits, access, gate, security: security.listen });
    try {
      await server.listen();
    } catch (err) {
      throw listenError('USB/IP', e, err);
    }
    frontEnds.push(server);
    for (const d of registry.list()) {
      const port = e.port === 3240 ? '' : ` --tcp-port ${e.port}`;
      // vhci-hcd speaks plain TCP only: over TLS it goes through a tunnel on the client machine.
      const attach = security.listen
        ? `usbwire tunnel --listen 127.0.0.1:3240 --to tls://${hostForDisplay(e)}:${e.port} ...; usbip attach -r 127.0.0.1 -b ${d.busid}`
        : `usbip${port} attach -r ${hostForDisplay(e)} -b ${d.busid}`;
      announce(
        `usbip: listening on ${hostForDisplay(e)}:${e.port}${security.listen ? ' (TLS)' : ''}, exporting ${d.busid} (${entryName(d)}); ` +
          `attach with: ${attach}`,
      );
    }
  }
  for (const spec of opts.usbredir) {
    const entry = pickDevice(registry, spec.busid, '--usbredir');
    const listener = new UsbredirListener(registry, entry, spec, {
      ...limits,
      access,
      gate,
      security: security.listen,
    });
    try {
      await listener.listen();
    } catch (err) {
      throw listenError('usbredir', spec, err);
    }
    frontEnds.push(listener);
    announce(
      `usbredir: listening on ${hostForDisplay(spec)}:${spec.port}${security.listen ? ' (TLS)' : ''}, exporting ${entry.busid} (${entryName(entry)}); ` +
        `connect with: qemu ...${qemuTlsObject(security.listen)} -chardev socket,id=ur,host=${hostForDisplay(spec)},port=${spec.port},reconnect=1,nodelay=on${security.listen ? ',tls-creds=tls0' : ''} ` +
        '-device usb-redir,chardev=ur',
    );
  }
  for (const spec of opts.usbredirConnect) {
    const entry = pickDevice(registry, spec.busid, '--usbredir-connect');
    const connector = new UsbredirConnector(registry, entry, spec, { ...limits, security: security.connect() });
    connector.start();
    frontEnds.push(connector);
    announce(
      `usbredir: connecting to ${hostForDisplay(spec)}:${spec.port} (retrying until it answers), exporting ${entry.busid} (${entryName(entry)})`,
    );
  }
}

/** The QEMU credentials object a guest needs to reach a TLS listener. */
function qemuTlsObject(listen: ListenSecurity | undefined): string {
  if (!listen) return '';
  return listen.kind === 'psk'
    ? ' -object tls-creds-psk,id=tls0,endpoint=client,dir=DIR,username=ID'
    : ' -object tls-creds-x509,id=tls0,endpoint=client,dir=DIR';
}

function pickDevice(registry: DeviceRegistry, busid: string | undefined, flag: string) {
  const entry = busid === undefined ? registry.list()[0] : registry.get(busid);
  if (!entry) {
    const known = registry
      .list()
      .map((d) => d.busid)
      .join(', ');
    throw new UsageError(`${flag}: no exported device ${busid} (exported: ${known})`);
  }
  return entry;
}

/**
 * The control endpoint, started once the devices are exported. Without --control it takes the
 * default socket; if another live usbwire already serves that, this one goes on without.
 */
/** A serial port on stdio owns stdout: what the server has to say goes to stderr then. */
function announcer(opts: ServeOptions): (line: string) => void {
  const stdioTaken = opts.devices.some((d) => d.cls.exclusiveResource?.(d.options) === STDIO_RESOURCE);
  return (line) => (stdioTaken ? console.error(line) : console.log(line));
}

async function startControl(opts: ServeOptions, registry: DeviceRegistry): Promise<ControlServer | undefined> {
  const spec = opts.control;
  if (spec?.kind === 'none') return undefined;
  const address: ControlAddress = spec ?? { kind: 'unix', path: defaultControlPath() };
  let server: ControlServer;
  try {
    server = new ControlServer(registry, address);
  } catch (err) {
    if (err instanceof ControlAddressError) throw new UsageError(err.message);
    throw err;
  }
  try {
    await server.listen();
  } catch (err) {
    const reason =
      err instanceof ControlInUseError
        ? err.message
        : address.kind === 'tcp'
          ? listenError('the control endpoint', address, err).message
          : `cannot listen on unix:${address.path}: ${(err as Error).message}`;
    if (spec === undefined) {
      log.warn(`control endpoint not started (${reason}); give --control unix:PATH to run one for this server`);
      return undefined;
    }
    throw new UsageError(`--control: ${reason}`);
  }
  announcer(opts)(
    `control: listening on ${server.where} (usbwire devices, detach, type, key, pointer, leds talk to it)`,
  );
  return server;
}
