/**
 * Seed corpus: our own clients talk to our own servers on loopback through a recording relay,
 * once per device and protocol. Each connection becomes one Transcript: the bytes each way and
 * where, in the server's stream, the client had sent how much (so a fake server can pace a
 * replay on what the client sends).
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsbipClient } from '../../src/client/usbip/index.js';
import { RemoteUsbipDevice } from '../../src/client/usbip/remote-device.js';
import { UsbredirClientConnection } from '../../src/client/usbredir/connection.js';
import type { RemoteUsbredirDevice } from '../../src/client/usbredir/remote-device.js';
import { UsbipServer } from '../../src/server/usbip/index.js';
import { UsbredirListener } from '../../src/server/usbredir/server.js';
import { createLogger } from '../../src/util/log.js';
import { buildDevices, type DeviceKind, exercise, FUZZ_KINDS } from './scenario.js';

export type Protocol = 'usbip' | 'usbredir';

export interface Transcript {
  protocol: Protocol;
  /** 'devlist', 'import-unknown', or the device kind imported. */
  name: string;
  kind: DeviceKind | undefined;
  /** Client to server (USB/IP requests; usbredir guest to host). */
  toServer: Buffer;
  /** Server to client. */
  toClient: Buffer;
  /** Offsets in toClient where a server write started, with the client bytes received by then. */
  pacing: { at: number; after: number }[];
}

export interface Corpus {
  transcripts: Transcript[];
  digest: string;
}

const STRICT = { waitMs: 2000, cancelMs: 2000, strict: true };

/** A relay to `port` that records each connection; `take()` returns the last finished one. */
class Recorder {
  #server: net.Server;
  #done: Promise<Transcript> | undefined;
  #meta: { protocol: Protocol; name: string; kind: DeviceKind | undefined } | undefined;

  constructor(readonly port: number) {
    this.#server = net.createServer((client) => {
      const meta = this.#meta!;
      const up = net.connect(this.port, '127.0.0.1');
      const toServer: Buffer[] = [];
      const toClient: Buffer[] = [];
      let sent = 0;
      let received = 0;
      const pacing: { at: number; after: number }[] = [];
      client.on('data', (c: Buffer) => {
        toServer.push(c);
        sent += c.length;
        up.write(c);
      });
      up.on('data', (c: Buffer) => {
        pacing.push({ at: received, after: sent });
        toClient.push(c);
        received += c.length;
        client.write(c);
      });
      client.on('error', () => {});
      up.on('error', () => {});
      client.on('end', () => up.end());
      up.on('end', () => client.end());
      this.#done = new Promise((resolve) => {
        let closed = 0;
        const onClose = () => {
          if (++closed < 2) return;
          resolve({ ...meta, toServer: Buffer.concat(toServer), toClient: Buffer.concat(toClient), pacing });
        };
        client.once('close', () => {
          up.destroy();
          onClose();
        });
        up.once('close', () => {
          client.destroy();
          onClose();
        });
      });
    });
  }

  async listen(): Promise<number> {
    this.#server.listen(0, '127.0.0.1');
    await once(this.#server, 'listening');
    return (this.#server.address() as net.AddressInfo).port;
  }

  expect(protocol: Protocol, name: string, kind: DeviceKind | undefined): void {
    this.#meta = { protocol, name, kind };
    this.#done = undefined;
  }

  async take(): Promise<Transcript> {
    const t = await this.#done!;
    this.#done = undefined;
    return t;
  }

  close(): void {
    this.#server.close();
  }
}

export async function captureCorpus(): Promise<Corpus> {
  const devices = buildDevices();
  const log = createLogger('capture');
  const transcripts: Transcript[] = [];
  const server = new UsbipServer(devices.registry, { host: '127.0.0.1', port: 0 }, { logger: log });
  const address = await server.listen();
  const rec = new Recorder(address.port);
  const relay = { host: '127.0.0.1', port: await rec.listen() };
  try {
    rec.expect('usbip', 'devlist', undefined);
    await new UsbipClient({ logger: log }).listDevices(relay);
    transcripts.push(await rec.take());

    rec.expect('usbip', 'import-unknown', undefined);
    await RemoteUsbipDevice.import(relay, '9-9', { logger: log }).then(
      () => {
        throw new Error('import of 9-9 should fail');
      },
      () => {},
    );
    transcripts.push(await rec.take());

    for (const kind of FUZZ_KINDS) {
      rec.expect('usbip', kind, kind);
      const dev = await RemoteUsbipDevice.import(relay, devices.busid[kind], { logger: log });
      await exercise(kind, dev, { ...STRICT, press: () => devices.keyboard.input.type('a') });
      await dev.close();
      transcripts.push(await rec.take());
    }
  } finally {
    rec.close();
    await server.close();
  }

  for (const kind of FUZZ_KINDS) {
    const entry = devices.registry.get(devices.busid[kind])!;
    const listener = new UsbredirListener(devices.registry, entry, { host: '127.0.0.1', port: 0 });
    await listener.listen();
    const r = new Recorder(listener.address!.port);
    const port = await r.listen();
    try {
      r.expect('usbredir', kind, kind);
      const socket = net.connect(port, '127.0.0.1');
      await once(socket, 'connect');
      const conn = new UsbredirClientConnection(socket, { where: 'capture', logger: log, timeoutMs: 5000 });
      const ready = once(conn, 'device') as Promise<[RemoteUsbredirDevice]>;
      conn.start();
      const [dev] = await ready;
      await exercise(kind, dev, { ...STRICT, press: () => devices.keyboard.input.type('a') });
      await conn.close();
      transcripts.push(await r.take());
    } finally {
      r.close();
      await listener.close();
    }
  }
  await devices.registry.closeAll();
  return { transcripts, digest: digestOf(transcripts) };
}

const CORPUS_DIR = fileURLToPath(new URL('../../../test/fuzz/corpus/', import.meta.url));

interface StoredTranscript {
  protocol: Protocol;
  name: string;
  kind: DeviceKind | null;
  toServer: string;
  toClient: string;
  pacing: { at: number; after: number }[];
}

/** Over the transcripts in file-name order, so a capture and the files it wrote have the same digest. */
function digestOf(transcripts: readonly Transcript[]): string {
  const hash = createHash('sha256');
  const key = (t: Transcript) => `${t.protocol}-${t.name}.json`;
  const sorted = [...transcripts].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  for (const t of sorted) hash.update(t.toServer).update(t.toClient);
  return hash.digest('hex').slice(0, 16);
}

/** The committed corpus (test/fuzz/corpus/), so a seed means the same inputs on every machine. */
export function loadCorpus(): Corpus | undefined {
  if (!existsSync(CORPUS_DIR)) return undefined;
  const files = readdirSync(CORPUS_DIR)
    .filter((f) => f.endsWith('.json'))
    .sort();
  if (files.length === 0) return undefined;
  const transcripts = files.map((f) => {
    const s = JSON.parse(readFileSync(join(CORPUS_DIR, f), 'utf8')) as StoredTranscript;
    return {
      protocol: s.protocol,
      name: s.name,
      kind: s.kind ?? undefined,
      toServer: Buffer.from(s.toServer, 'base64'),
      toClient: Buffer.from(s.toClient, 'base64'),
      pacing: s.pacing,
    };
  });
  return { transcripts, digest: digestOf(transcripts) };
}

export function saveCorpus(corpus: Corpus): string {
  mkdirSync(CORPUS_DIR, { recursive: true });
  for (const t of corpus.transcripts) {
    const stored: StoredTranscript = {
      protocol: t.protocol,
      name: t.name,
      kind: t.kind ?? null,
      toServer: t.toServer.toString('base64'),
      toClient: t.toClient.toString('base64'),
      pacing: t.pacing,
    };
    writeFileSync(join(CORPUS_DIR, `${t.protocol}-${t.name}.json`), `${JSON.stringify(stored, null, 1)}\n`);
  }
  return CORPUS_DIR;
}
