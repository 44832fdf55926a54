// The data patterns of g_zero's source/sink function (f_sourcesink.c `reinit_write_data` and
// `check_read_data`), which usbtest's `pattern` module parameter mirrors on the host side.

/** 0: all zeros (g_zero's default), 1: "mod63", byte i = (i % wMaxPacketSize) % 63, 2: none. */
export type GadgetZeroPattern = 0 | 1 | 2;

/** Fill `buf` with the pattern as a transfer (or iso packet) of `maxPacket`-byte packets starts it. */
export function fillPattern(buf: Buffer, pattern: GadgetZeroPattern, maxPacket: number): Buffer {
  if (pattern === 0) buf.fill(0);
  else if (pattern === 1) for (let i = 0; i < buf.length; i++) buf[i] = (i % maxPacket) % 63;
  return buf;
}

/** Index of the first byte of received OUT data that breaks the pattern, or -1 (pattern 2 checks nothing). */
export function patternMismatch(data: Uint8Array, pattern: GadgetZeroPattern, maxPacket: number): number {
  if (pattern === 0) {
    for (let i = 0; i < data.length; i++) if (data[i] !== 0) return i;
  } else if (pattern === 1) {
    for (let i = 0; i < data.length; i++) if (data[i] !== (i % maxPacket) % 63) return i;
  }
  return -1;
}

/**
 * A growing read-only buffer holding the pattern from offset 0: any transfer of length L is its
 * first L bytes, because the pattern restarts with every transfer. Saves filling a buffer per
 * transfer on the bulk source.
 */
export class PatternSource {
  #buf: Buffer = Buffer.alloc(0);

  constructor(
    readonly pattern: GadgetZeroPattern,
    readonly maxPacket: number,
  ) {}

  take(length: number): Buffer {
    if (length > this.#buf.length) {
      const size = Math.max(length, this.#buf.length * 2, 4096);
      this.#buf = fillPattern(Buffer.alloc(size), this.pattern === 2 ? 0 : this.pattern, this.maxPacket);
    }
    return this.#buf.subarray(0, length);
  }

  /** Index of the first byte of `data` off the pattern, or -1; compares with memcmp first. */
  mismatch(data: Buffer): number {
    if (this.pattern === 2 || data.equals(this.take(data.length))) return -1;
    return patternMismatch(data, this.pattern, this.maxPacket);
  }
}
