import { DEFAULT_MAX_TRANSFER_LENGTH } from '../protocol/usbip/constants.js';

/**
 * Per-connection limits of both servers, in one place.
 *
 * Back-pressure, not errors: a connection at its in-flight cap is simply not read further until
 * transfers complete (pipelining is legitimate). Memory per connection is then bounded by
 * maxBytesInFlight (OUT payloads held, IN buffers the device will fill) + HELD_INPUT_BYTES (input
 * read but not parsed, plus one socket read) + MAX_QUEUED_BYTES (replies waiting to be sent).
 *
 * Why input is still read, up to HELD_INPUT_BYTES, while over the cap: a socket that is not read
 * does not see the peer close. A client whose transfers never complete (a device that NAKs
 * forever) typically stops sending and then closes or unlinks; with a little input still read,
 * its FIN arrives, the connection closes and teardown cancels everything. Only a client that keeps
 * sending more than HELD_INPUT_BYTES past the cap has its socket paused outright, and then only
 * TCP keepalive or its own completions end the wait. Unlinks behind the cap are parsed once
 * transfers complete or the connection closes (a byte stream has no way to read them first).
 *
 * The defaults are far above real use: a keyboard keeps one to a few interrupt INs pending,
 * Linux usb-storage at most a few, a webcam a few dozen ISO URBs.
 */
export const DEFAULT_MAX_TRANSFERS_IN_FLIGHT = 4096;
export const DEFAULT_MAX_BYTES_IN_FLIGHT = 64 * 1024 * 1024;
/** Input kept unparsed while over the cap before the socket stops being read. */
export const HELD_INPUT_BYTES = 1024 * 1024;
/** A connection must complete its opening exchange (usbredir hello, USB/IP OP_REQ) within this. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
export { MAX_QUEUED_BYTES } from '../transport/pdu-writer.js';

/** Largest single transfer a client may ask for (USB/IP transfer_buffer_length, usbredir data): 32 MiB. */
export { DEFAULT_MAX_TRANSFER_LENGTH };

/** A client whose replies have not drained for this long has stopped reading: it is dropped. */
export const DEFAULT_WRITE_STALL_TIMEOUT_MS = 30_000;
/** Connections a server process accepts at once, in total and from one address. */
export const DEFAULT_MAX_CONNECTIONS = 256;
export const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 32;

export interface ConnectionLimits {
  /** Transfers a connection may have submitted and not yet answered (default 4096). */
  maxTransfersInFlight?: number;
  /** Sum of OUT payload and IN requested lengths of those transfers (default 64 MiB). */
  maxBytesInFlight?: number;
  /** Time allowed for the opening exchange before the connection is closed (default 10 s). */
  handshakeTimeoutMs?: number;
  /** Replies queued past MAX_QUEUED_BYTES that do not drain for this long close the connection (default 30 s). */
  writeStallTimeoutMs?: number;
}

export function resolveLimits(l: ConnectionLimits = {}): Required<ConnectionLimits> {
  return {
    maxTransfersInFlight: l.maxTransfersInFlight ?? DEFAULT_MAX_TRANSFERS_IN_FLIGHT,
    maxBytesInFlight: l.maxBytesInFlight ?? DEFAULT_MAX_BYTES_IN_FLIGHT,
    handshakeTimeoutMs: l.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
    writeStallTimeoutMs: l.writeStallTimeoutMs ?? DEFAULT_WRITE_STALL_TIMEOUT_MS,
  };
}

/** Limits of a whole server process: per connection, plus how many connections and how large a transfer. */
export interface ServerLimits extends ConnectionLimits {
  maxTransferLength?: number;
  maxConnections?: number;
  maxConnectionsPerAddress?: number;
}

export const DEFAULT_SERVER_LIMITS: Required<ServerLimits> = {
  ...resolveLimits(),
  maxTransferLength: DEFAULT_MAX_TRANSFER_LENGTH,
  maxConnections: DEFAULT_MAX_CONNECTIONS,
  maxConnectionsPerAddress: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
};
