import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

/**
 * USBWIRE_TRACE=FILE: per-transfer timestamps for latency work, written to FILE (TSV, µs since
 * process start) when the process exits; `bench/trace-summary.ts` reads it. Records stay in memory
 * until then: for benchmark runs, not long-lived servers. When off, the hot paths pay one boolean
 * test per transfer.
 */
const traceFile = process.env.USBWIRE_TRACE;
export const tracing = traceFile !== undefined && traceFile !== '';

export interface TransferTrace {
  proto: 'usbip' | 'usbredir';
  id: number;
  endpoint: number;
  length: number;
  /** first byte of the request's PDU seen (socket 'data' event) */
  start: number;
  /** parser produced the request */
  rx: number;
  /** handed to the device */
  submit: number;
  /** the device completed it */
  done: number;
  /** reply handed to the writer */
  write: number;
  /** reply handed to the socket (uncork) */
  flushed: number;
  /** socket write callback */
  written: number;
}

const records: TransferTrace[] = [];
/** Time the current PDU's first byte arrived (set by the connection before parsing). */
let pduStart = 0;

export const traceNow = (): number => performance.now() * 1000;

/** Call with each received chunk before parsing it; `atBoundary`: no partial PDU was buffered. */
export function traceChunk(atBoundary: boolean): void {
  if (atBoundary) pduStart = traceNow();
}

export function traceRequest(
  proto: TransferTrace['proto'],
  id: number,
  endpoint: number,
  length: number,
): TransferTrace {
  const rx = traceNow();
  const t: TransferTrace = {
    proto,
    id,
    endpoint,
    length,
    start: Math.min(pduStart, rx),
    rx,
    submit: 0,
    done: 0,
    write: 0,
    flushed: 0,
    written: 0,
  };
  // The next PDU in the same chunk starts now, not when the chunk arrived.
  pduStart = rx;
  records.push(t);
  return t;
}

if (tracing) {
  process.on('exit', () => {
    const cols = [
      'proto',
      'id',
      'endpoint',
      'length',
      'start',
      'rx',
      'submit',
      'done',
      'write',
      'flushed',
      'written',
    ] as const;
    const lines = [cols.join('\t')];
    for (const r of records) {
      lines.push(cols.map((c) => (typeof r[c] === 'number' ? Math.round(r[c] as number) : r[c])).join('\t'));
    }
    writeFileSync(traceFile!, `${lines.join('\n')}\n`);
    const cpu = process.cpuUsage();
    writeFileSync(
      `${traceFile}.cpu`,
      `user ${cpu.user} system ${cpu.system} uptime ${Math.round(process.uptime() * 1e6)}\n`,
    );
  });
}
