// Where a usbwire process spends its main thread, from a V8 .cpuprofile (node --cpu-prof):
// only the window between the first and the last sample that runs USB/IP URB code counts (start-up
// and shutdown left out). Self time by layer and by function, inclusive time of usbwire's own
// functions, each also per transfer.

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const URB_FUNCTIONS = new Set(['handle', '#submit', '#complete', '#retSubmit']);

const SPECIAL = new Set(['(idle)', '(program)', '(garbage collector)', '(root)']);

function layerOf(url: string): string {
  if (url === '') return 'native';
  const m = /\/dist\/src\/([^/]+)\/([^/]+)/.exec(url);
  if (m) {
    if (m[1] === 'devices' && m[2] === 'libusb') return 'usbwire devices/libusb';
    return `usbwire ${m[1]}${m[1] === 'server' || m[1] === 'protocol' ? `/${m[2]}` : ''}`;
  }
  if (url.includes('koffi')) return 'koffi (js)';
  if (url.startsWith('node:internal/streams') || url === 'node:stream') return 'node streams';
  if (url === 'node:net' || url.startsWith('node:internal/stream_base')) return 'node net';
  if (url.startsWith('node:internal/process/task_queues') || url.startsWith('node:internal/timers'))
    return 'node task queues/timers';
  if (url.startsWith('node:')) return 'node other';
  return 'other';
}

function frameName(f: CallFrame): string {
  const file = f.url.split('/').pop() || '';
  return `${f.functionName || '(anonymous)'}${file ? ` ${file}:${f.lineNumber + 1}` : ''}`;
}

function table(title: string, rows: [string, number][], totalUs: number, transfers: number, top: number): string[] {
  const out = [title, '| what | ms | % of busy | µs per transfer |', '| --- | --- | --- | --- |'];
  for (const [name, us] of rows.sort((a, b) => b[1] - a[1]).slice(0, top)) {
    out.push(
      `| ${name} | ${(us / 1000).toFixed(0)} | ${((100 * us) / totalUs).toFixed(1)} | ${(us / transfers).toFixed(0)} |`,
    );
  }
  return out;
}

export function profileSummary(p: CpuProfile, transfers: number): string {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const stackOf = (id: number): ProfileNode[] => {
    const s: ProfileNode[] = [];
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) s.push(byId.get(at)!);
    return s;
  };
  // A URB being handled or completed (not the module's own evaluation at start-up).
  const isUrb = (id: number) =>
    stackOf(id).some(
      (n) => n.callFrame.url.includes('/server/usbip/urb-session') && URB_FUNCTIONS.has(n.callFrame.functionName),
    );
  let first = -1;
  let last = -1;
  p.samples.forEach((id, i) => {
    if (isUrb(id)) {
      if (first < 0) first = i;
      last = i;
    }
  });
  if (first < 0) return 'profile: no sample ran USB/IP URB code';
  const layers = new Map<string, number>();
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const entries = new Map<string, number>();
  let idle = 0;
  let busy = 0;
  const add = (m: Map<string, number>, k: string, v: number) => m.set(k, (m.get(k) ?? 0) + v);
  for (let i = first; i <= last; i++) {
    const dt = p.timeDeltas[i + 1] ?? 0;
    const stack = stackOf(p.samples[i]!);
    const leaf = stack[0]!.callFrame;
    if (leaf.functionName === '(idle)') {
      idle += dt;
      continue;
    }
    busy += dt;
    let layer = SPECIAL.has(leaf.functionName) ? leaf.functionName : layerOf(leaf.url);
    if (layer === 'native') {
      const caller = stack.find((n) => n.callFrame.url !== '');
      layer = `native, called from ${caller ? layerOf(caller.callFrame.url) : '?'}`;
    }
    add(layers, layer, dt);
    // The outermost frame under (root): what the event loop called (socket read, poll, immediate, tick).
    const entry = stack.length >= 2 ? stack[stack.length - 2]!.callFrame : leaf;
    add(entries, SPECIAL.has(entry.functionName) ? entry.functionName : frameName(entry), dt);
    add(self, SPECIAL.has(leaf.functionName) ? leaf.functionName : frameName(leaf), dt);
    const seen = new Set<string>();
    for (const n of stack) {
      if (!n.callFrame.url.includes('/dist/src/')) continue;
      const name = frameName(n.callFrame);
      if (seen.has(name)) continue;
      seen.add(name);
      add(inclusive, name, dt);
    }
  }
  const windowMs = (busy + idle) / 1000;
  return [
    `profile of usbwire's main thread (node --cpu-prof, ${transfers} transfers, window ${windowMs.toFixed(0)} ms: ` +
      `busy ${(busy / 1000).toFixed(0)} ms = ${(busy / transfers).toFixed(0)} µs per transfer, idle ${(idle / 1000).toFixed(0)} ms)`,
    ...table('by event-loop entry (inclusive)', [...entries], busy, transfers, 12),
    '',
    ...table('self time by layer', [...layers], busy, transfers, 20),
    '',
    ...table('self time by function', [...self], busy, transfers, 25),
    '',
    ...table("inclusive time of usbwire's functions", [...inclusive], busy, transfers, 25),
  ].join('\n');
}
