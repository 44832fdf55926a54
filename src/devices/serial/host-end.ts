import { EventEmitter } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import type { Logger } from '../../util/log.js';

export interface HostEndEvents {
  /** Bytes from the host-end client, for the guest. */
  data: [Buffer];
  /** The output buffer emptied after write() returned false. */
  drain: [];
  /** A client is there (carrier on). */
  connect: [string];
  /** The client went (carrier off). */
  disconnect: [];
}

/**
 * The far end of the serial line on usbwire's host: what the guest's /dev/ttyACM talks to.
 * Flow control both ways: write() returns false when the output buffer is full ('drain'
 * follows); pause() stops reading the client.
 */
export interface HostEnd extends EventEmitter<HostEndEvents> {
  readonly description: string;
  readonly connected: boolean;
  open(): Promise<void>;
  /** Write to the client. False: stop until 'drain'. Without a client the bytes are dropped. */
  write(data: Buffer): boolean;
  pause(): void;
  resume(): void;
  close(): Promise<void>;
}

/**
 * A listening TCP socket with one client at a time, like QEMU's `-serial tcp::PORT,server,nowait`.
 * A second client is told the port is busy and closed.
 */
export class TcpHostEnd extends EventEmitter<HostEndEvents> implements HostEnd {
  readonly #host: string;
  readonly #port: number;
  readonly #log: Logger;
  readonly #server: Server;
  #client: Socket | undefined;
  #paused = false;

  constructor(host: string, port: number, log: Logger) {
    super();
    this.#host = host;
    this.#port = port;
    this.#log = log;
    this.#server = createServer((s) => this.#accept(s));
  }

  get description(): string {
    return `tcp:${this.#host.includes(':') ? `[${this.#host}]` : this.#host}:${this.port}`;
  }

  /** The port listened on (the one the system picked when asked for port 0). */
  get port(): number {
    const a = this.#server.address();
    return typeof a === 'object' && a ? a.port : this.#port;
  }

  get connected(): boolean {
    return this.#client !== undefined;
  }

  open(): Promise<void> {
    return new Promise((resolve, reject) => {
      const failed = (err: NodeJS.ErrnoException) => {
        const why = err.code === 'EADDRINUSE' ? 'address already in use' : err.message;
        reject(new Error(`cannot listen on ${this.description}: ${why}`));
      };
      this.#server.once('error', failed);
      this.#server.listen(this.#port, this.#host, () => {
        this.#server.off('error', failed);
        this.#server.on('error', (err) => this.#log.error(`${this.description}: ${err.message}`));
        resolve();
      });
    });
  }

  #accept(s: Socket): void {
    const peer = `${s.remoteAddress}:${s.remotePort}`;
    s.on('error', (err) => this.#log.debug(`${peer}: ${err.message}`));
    if (this.#client) {
      this.#log.warn(`${this.description}: refused ${peer}: another client is connected`);
      s.end('usbwire: this serial port already has a client\r\n');
      return;
    }
    this.#client = s;
    s.setNoDelay(true);
    if (this.#paused) s.pause();
    s.on('data', (d: Buffer) => this.emit('data', d));
    s.on('drain', () => this.emit('drain'));
    s.on('end', () => s.end());
    s.on('close', () => {
      if (this.#client !== s) return;
      this.#client = undefined;
      this.#log.info(`${this.description}: ${peer} disconnected`);
      this.emit('disconnect');
    });
    this.#log.info(`${this.description}: ${peer} connected`);
    this.emit('connect', peer);
  }

  write(data: Buffer): boolean {
    return this.#client ? this.#client.write(data) : true;
  }

  pause(): void {
    this.#paused = true;
    this.#client?.pause();
  }

  resume(): void {
    this.#paused = false;
    this.#client?.resume();
  }

  close(): Promise<void> {
    this.#client?.destroy();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}

/**
 * A pair of streams: the server's stdin/stdout for `--serial stdio`. Connected from the start
 * until the input ends.
 */
export class StreamHostEnd extends EventEmitter<HostEndEvents> implements HostEnd {
  readonly description: string;
  readonly #input: Readable;
  readonly #output: Writable;
  #connected = false;
  readonly #onData = (d: Buffer) => this.emit('data', d);
  readonly #onDrain = () => this.emit('drain');
  readonly #onEnd = () => {
    if (!this.#connected) return;
    this.#connected = false;
    this.emit('disconnect');
  };

  constructor(input: Readable, output: Writable, description: string) {
    super();
    this.#input = input;
    this.#output = output;
    this.description = description;
  }

  get connected(): boolean {
    return this.#connected;
  }

  async open(): Promise<void> {
    this.#input.on('data', this.#onData);
    this.#input.on('end', this.#onEnd);
    this.#output.on('drain', this.#onDrain);
    this.#output.on('error', this.#onEnd);
    this.#connected = true;
    this.emit('connect', this.description);
  }

  write(data: Buffer): boolean {
    return this.#connected ? this.#output.write(data) : true;
  }

  pause(): void {
    this.#input.pause();
  }

  resume(): void {
    if (this.#connected) this.#input.resume();
  }

  async close(): Promise<void> {
    this.#input.off('data', this.#onData);
    this.#input.off('end', this.#onEnd);
    this.#output.off('drain', this.#onDrain);
    this.#output.off('error', this.#onEnd);
    this.#input.pause();
    this.#connected = false;
  }
}
