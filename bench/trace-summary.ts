// Summarise a USBWIRE_TRACE file (per-transfer timestamps written by the server at exit).
//   USBWIRE_TRACE=/tmp/t.tsv node dist/bench/rig-storage.js --runs 1 --setups usbwire-usbredir
//   node dist/bench/trace-summary.js /tmp/t.tsv
// Per transfer kind (BOT: CBW, data IN/OUT by length, CSW), in µs:
//   server  request parsed → reply handed to the socket (ours)
//   device  submitted → completed by the device (part of server)
//   write   reply handed to the socket → write callback (the send syscall and its wake-ups)
//   gap     previous reply handed to the socket → first byte of this request (client + network)

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface Row {
  endpoint: number;
  length: number;
  start: number;
  rx: number;
  submit: number;
  done: number;
  flushed: number;
  written: number;
}

function kind(r: Row): string {
  if (r.endpoint === 0x02 && r.length === 31) return 'CBW';
  if (r.endpoint === 0x81 && r.length === 13) return 'CSW';
  return `${r.endpoint & 0x80 ? 'IN' : 'OUT'} ep${(r.endpoint & 0x0f).toString(16)} ${r.length}`;
}

function quantiles(xs: number[]): string {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))]!.toFixed(0).padStart(6);
  const mean = (s.reduce((a, b) => a + b, 0) / s.length).toFixed(0).padStart(6);
  return `median ${at(0.5)}  p10 ${at(0.1)}  p90 ${at(0.9)}  mean ${mean}`;
}

export function summarise(text: string): string {
  const [head, ...lines] = text.trim().split('\n');
  const cols = head!.split('\t');
  const rows: Row[] = lines.map((line) => {
    const v = line.split('\t');
    return Object.fromEntries(cols.map((c, i) => [c, Number(v[i])])) as unknown as Row;
  });
  rows.sort((a, b) => a.rx - b.rx);
  const groups = new Map<string, Record<'server' | 'device' | 'write' | 'gap', number[]>>();
  let prev: Row | undefined;
  for (const r of rows) {
    const k = kind(r);
    let g = groups.get(k);
    if (!g) {
      g = { server: [], device: [], write: [], gap: [] };
      groups.set(k, g);
    }
    if (r.flushed) g.server.push(r.flushed - r.rx);
    if (r.done) g.device.push(r.done - r.submit);
    if (r.written && r.flushed) g.write.push(r.written - r.flushed);
    // Gaps over 50 ms are pauses between workloads, not think time.
    if (prev?.flushed && r.start >= prev.flushed && r.start - prev.flushed < 50_000) g.gap.push(r.start - prev.flushed);
    prev = r;
  }
  const out: string[] = [];
  for (const [k, g] of [...groups].sort((a, b) => b[1].server.length - a[1].server.length)) {
    if (g.server.length < 10) continue;
    out.push(`${k}  (${g.server.length} transfers, µs)`);
    for (const [name, xs] of Object.entries(g)) if (xs.length) out.push(`  ${name.padEnd(7)} ${quantiles(xs)}`);
  }
  return out.join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: node dist/bench/trace-summary.js TRACE.tsv\n');
    process.exit(2);
  }
  process.stdout.write(`${summarise(readFileSync(file, 'utf8'))}\n`);
}
