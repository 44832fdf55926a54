// `npm run bench`: every benchmark, each printed beside the baseline measured in the same run.
//   node dist/bench/run.js [--quick] [--no-rig] [--runs N]
import { existsSync } from 'node:fs';
import { ddTable } from './rig-storage.js';
import { benchRawTcpPump, benchUsbipBulkIn, usbipBulkTable } from './usbip-throughput.js';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const noRig = argv.includes('--no-rig');
const runsAt = argv.indexOf('--runs');
const runs = runsAt >= 0 ? Number(argv[runsAt + 1]) : 1;

async function loopback(): Promise<void> {
  const totalBytes = (quick ? 256 : 1024) * 1024 * 1024;
  const usbip: number[] = [];
  const raw: number[] = [];
  // Interleave so both see the same machine noise.
  for (let i = 0; i < 3; i++) {
    raw.push(await benchRawTcpPump({ totalBytes }));
    usbip.push(await benchUsbipBulkIn({ totalBytes }));
  }
  const best = (xs: number[]) => Math.max(...xs);
  console.log(`(a) bulk IN over loopback, 64 KiB transfers, 8 in flight, ${totalBytes >> 20} MiB per run, best of 3`);
  console.log('| path | MB/s (3 runs) | best | vs raw TCP |');
  console.log('| --- | --- | --- | --- |');
  console.log(`| raw TCP pump | ${raw.map((x) => x.toFixed(0)).join(', ')} | ${best(raw).toFixed(0)} | 1.00 |`);
  console.log(
    `| usbwire USB/IP server → usbwire client | ${usbip.map((x) => x.toFixed(0)).join(', ')} | ${best(usbip).toFixed(0)} | ${(best(usbip) / best(raw)).toFixed(2)} |`,
  );
  console.log('');
}

async function rig(): Promise<void> {
  if (noRig) return;
  if (!existsSync('/var/cache/usbwire-rig/rig.json') && !process.env.USBWIRE_RIG_DIR) {
    console.log('(b) skipped: the interop rig is not set up (bash test/interop/setup.sh)');
    return;
  }
  console.log('(b) storage through the real clients in the rig');
  console.log(await ddTable(undefined, runs));
}

await loopback();
console.log(
  `(a') gadget zero bulk IN/OUT, USB/IP on loopback vs raw TCP\n${await usbipBulkTable((quick ? 128 : 512) << 20)}\n`,
);
await (await import('./hid.js')).hidBench(quick);
await (await import('./serial.js')).serialBench({ quick });
console.log(`${await (await import('./latency.js')).latencyTable(quick)}\n`);
await rig();
if (!noRig) console.log(`${await (await import('./rig-uas.js')).rigUasBench({ quick })}\n`);
if (!noRig) await (await import('./real-usbtest.js')).realUsbtestBench({ quick });
