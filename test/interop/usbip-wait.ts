import { UsbipClient } from '../../src/client/usbip/index.js';

/**
 * Wait until the USB/IP server on 127.0.0.1:`port` lists every busid in `busids` (a bridge lists
 * a remote device only once it has imported it).
 */
export async function waitListed(port: number, busids: string[], timeoutMs = 20_000): Promise<void> {
  const client = new UsbipClient({ timeoutMs: 2000 });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const listed = (await client.listDevices({ host: '127.0.0.1', port }).catch(() => [])).map((d) => d.busid);
    if (busids.every((b) => listed.includes(b))) return;
    if (Date.now() > deadline) {
      throw new Error(`127.0.0.1:${port} lists ${listed.join(', ') || 'nothing'} after ${timeoutMs} ms, not ${busids}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}
