import type { Socket } from 'node:net';
import { OpStatus } from '../../protocol/usbip/constants.js';
import { UsbipProtocolError } from '../../protocol/usbip/errors.js';
import { encodeRepDevlist, encodeRepImport } from '../../protocol/usbip/op.js';
import { type UsbipPacket, UsbipParser } from '../../protocol/usbip/parser.js';
import { PduWriter } from '../../transport/pdu-writer.js';
import { describePeer, type PeerIdentity, peerIdentity } from '../../transport/peer.js';
import { remoteName } from '../../transport/tcp.js';
import type { UsbDevice } from '../../usb/device.js';
import type { Logger } from '../../util/log.js';
import { traceChunk, tracing } from '../../util/trace.js';
import { AccessPolicy, type ClientIdentity, describeClient } from '../access.js';
import { type ConnectionLimits, resolveLimits } from '../limits.js';
import { ReadThrottle } from '../read-throttle.js';
import { type DeviceRegistry, type ExportedDevice, isPresent } from '../registry.js';
import { describeExport } from './device-info.js';
import { UrbSession } from './urb-session.js';

export interface UsbipConnectionOptions extends ConnectionLimits {
  /** Largest transfer_buffer_length accepted (default DEFAULT_MAX_TRANSFER_LENGTH, 32 MiB). */
  maxTransferLength?: number;
  /** Which devices this client may list and import (default: all). */
  access?: AccessPolicy;
  /** Who the client is, for access rules (default: its address). */
  client?: ClientIdentity;
  /** Who the transport proved the client to be (default: its address, plain TCP). */
  peer?: PeerIdentity;
}

/**
 * One accepted TCP connection: a single op exchange (DEVLIST or IMPORT), then, after a successful
 * import, URB PDUs for that device until either side closes. Any protocol error closes only this
 * connection.
 */
export class UsbipConnection {
  readonly #socket: Socket;
  readonly #registry: DeviceRegistry;
  readonly #log: Logger;
  readonly #peer: string;
  /** Who the transport proved the client to be (certificate, PSK identity, or just its address). */
  readonly peer: PeerIdentity;
  readonly #writer: PduWriter;
  readonly #parser: UsbipParser;
  readonly #throttle: ReadThrottle;
  readonly #access: AccessPolicy;
  readonly #client: ClientIdentity;
  #opTimer: NodeJS.Timeout | undefined;
  /** The device as it was when imported: a remote slot may hold another one by the time this connection lets go. */
  #imported:
    | { entry: ExportedDevice; device: UsbDevice; owner: string; session: UrbSession; onDisconnect: () => void }
    | undefined;
  /** Resolves when the connection is closed and its device (if any) is released. */
  readonly closed: Promise<void>;
  #finished = false;

  constructor(socket: Socket, registry: DeviceRegistry, log: Logger, options: UsbipConnectionOptions = {}) {
    const { maxTransferLength, peer = peerIdentity(socket), ...limits } = options;
    this.#socket = socket;
    this.#registry = registry;
    this.#peer = remoteName(socket);
    this.peer = peer;
    this.#log = log;
    this.#access = options.access ?? AccessPolicy.open;
    this.#client = options.client ?? { address: socket.remoteAddress ?? '?' };
    this.#parser = new UsbipParser({ role: 'server', maxTransferLength }, (p) => this.#onPacket(p));
    const buffered = () => this.#parser.bufferedBytes;
    this.#throttle = new ReadThrottle(socket, this.#parser, buffered, limits, log.child(this.#peer));
    this.#writer = new PduWriter(socket, (congested) => this.#throttle.writerCongested(congested));
    this.#log.info(`connection from ${describePeer(peer)}`);
    // Absolute, not an idle timeout: trickling a byte at a time must not keep the connection.
    const { handshakeTimeoutMs } = resolveLimits(limits);
    this.#opTimer = setTimeout(() => {
      this.#log.warn(`${this.#peer}: no complete request within ${handshakeTimeoutMs} ms, closing`);
      socket.destroy();
    }, handshakeTimeoutMs);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      const level = err.code === 'ECONNRESET' || err.code === 'EPIPE' ? 'debug' : 'warn';
      this.#log[level](`${this.#peer}: socket error: ${err.message}`);
    });
    this.closed = new Promise((resolve) => {
      socket.once('close', () => {
        this.#opDone();
        this.#throttle.stop();
        this.#release().then(resolve, (err: unknown) => {
          this.#log.error(`${this.#peer}: release failed: ${String(err)}`);
          resolve();
        });
      });
    });
  }

  destroy(): void {
    this.#socket.destroy();
  }

  #onData(chunk: Buffer): void {
    // After a final op reply the connection only drains; nothing more is parsed or buffered.
    if (this.#finished) return;
    if (tracing) traceChunk(this.#parser.bufferedBytes === 0);
    try {
      this.#parser.push(chunk);
      this.#throttle.update();
    } catch (err) {
      if (err instanceof UsbipProtocolError) {
        this.#log.warn(`${this.#peer}: closing: ${err.reason}: ${err.message}`);
      } else {
        this.#log.error(`${this.#peer}: closing after internal error: ${(err as Error)?.stack ?? String(err)}`);
      }
      this.#socket.destroy();
    }
  }

  #onPacket(p: UsbipPacket): void {
    switch (p.kind) {
      case 'op-req-devlist': {
        const entries = this.#registry
          .present()
          .filter((e) => this.#access.allows(this.#client, e.busid))
          .map(describeExport);
        this.#log.info(`${this.#peer}: device list (${entries.length} devices)`);
        this.#opDone();
        this.#writer.write(encodeRepDevlist(entries));
        this.#finish();
        return;
      }
      case 'op-req-import':
        this.#import(p.busid);
        return;
      case 'cmd-submit':
      case 'cmd-unlink':
        // The parser only yields these after startUrbPhase, i.e. with a session.
        this.#imported!.session.handle(p);
        return;
      default:
        throw new UsbipProtocolError('unexpected-packet', `${p.kind} sent to a server`);
    }
  }

  #opDone(): void {
    clearTimeout(this.#opTimer);
    this.#opTimer = undefined;
  }

  #import(busid: string): void {
    this.#opDone();
    const entry = this.#registry.get(busid);
    if (entry && !this.#access.allows(this.#client, busid)) {
      this.#log.warn(`${this.#peer}: import of ${busid} refused: ${describeClient(this.#client)} may not use it`);
      this.#writer.write(encodeRepImport(OpStatus.NoDev));
      this.#finish();
      return;
    }
    if (!entry || !isPresent(entry)) {
      this.#log.warn(
        entry
          ? `${this.#peer}: import of ${busid} refused: ${entry.origin} is not connected now`
          : `${this.#peer}: import of unknown busid "${busid}"`,
      );
      this.#writer.write(encodeRepImport(OpStatus.NoDev));
      this.#finish();
      return;
    }
    const owner = `usbip ${this.#peer}`;
    const drop = () => {
      this.#log.info(`${this.#peer}: ${busid} detached by the operator, closing`);
      this.#socket.destroy();
    };
    if (!this.#registry.claim(entry, owner, drop)) {
      this.#log.warn(`${this.#peer}: import of ${busid} (${entry.device.name}) refused: busy, held by ${entry.owner}`);
      this.#writer.write(encodeRepImport(OpStatus.DevBusy));
      this.#finish();
      return;
    }
    const { device } = entry;
    const devid = ((entry.busnum << 16) | entry.devnum) >>> 0;
    const session = new UrbSession(device, devid, this.#writer, this.#throttle, this.#log.child(busid));
    const onDisconnect = () => {
      this.#log.warn(`${this.#peer}: device ${busid} (${device.name}) disconnected, closing`);
      this.#socket.destroy();
    };
    device.on('disconnect', onDisconnect);
    this.#imported = { entry, device, owner, session, onDisconnect };
    this.#log.info(`${this.#peer}: imported ${busid} (${device.name})`);
    this.#writer.write(encodeRepImport(OpStatus.Ok, describeExport(entry)));
    this.#parser.startUrbPhase();
  }

  #finish(): void {
    this.#finished = true;
    this.#socket.end();
  }

  /** Cancel what is in flight, reset the device so the next importer finds it as after power-on, release it. */
  async #release(): Promise<void> {
    const imported = this.#imported;
    if (!imported) {
      this.#log.debug(`${this.#peer}: closed`);
      return;
    }
    this.#imported = undefined;
    const { entry, device, owner, session, onDisconnect } = imported;
    device.off('disconnect', onDisconnect);
    await session.close();
    try {
      await device.reset();
    } catch (err) {
      this.#log.warn(`${entry.busid}: reset after release failed: ${String(err)}`);
    }
    this.#registry.release(entry, owner);
    this.#log.info(`${this.#peer}: released ${entry.busid} (${device.name})`);
  }
}
