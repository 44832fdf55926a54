// Runs inside the guest: a USB/IP client (usbwire's own) that sends a real device exported by
// usbwire requests it cannot carry out — a configuration it lacks, a bulk endpoint it lacks, a
// request to an interface it lacks, a halt cleared on a missing endpoint — then ordinary ones
// to show the export survived. Prints one JSON line: each request's status (and data).
// Usage: node real-hotplug-client.js HOST:PORT BUSID
import { UsbipClient } from '../../src/client/usbip/client.js';
import type { SetupPacket } from '../../src/usb/setup.js';
import { Transfer } from '../../src/usb/transfer.js';
import { setLogSink } from '../../src/util/log.js';

async function main(): Promise<void> {
  setLogSink('silent');
  const [where = '127.0.0.1:3240', busid = '1-1'] = process.argv.slice(2);
  const dev = await new UsbipClient().importDevice(where, busid);
  const out: Record<string, string> = {};
  const control = async (name: string, setup: SetupPacket) => {
    const t = new Transfer({ type: 'control', endpoint: setup.bmRequestType & 0x80, setup, length: setup.wLength });
    await dev.submit(t);
    out[name] = t.status;
    if (t.actualLength > 0) out[`${name}_data`] = t.data.subarray(0, t.actualLength).toString('hex');
  };
  await control('set_config_7', { bmRequestType: 0x00, bRequest: 9, wValue: 7, wIndex: 0, wLength: 0 });
  await control('get_config', { bmRequestType: 0x80, bRequest: 8, wValue: 0, wIndex: 0, wLength: 1 });
  const bulk = new Transfer({ type: 'bulk', endpoint: 0x85, length: 512 });
  await dev.submit(bulk);
  out.bulk_in_0x85 = bulk.status;
  // Mass-storage GET_MAX_LUN, to interface 4 (absent), then to interface 0 (the disk's).
  await control('class_iface_4', { bmRequestType: 0xa1, bRequest: 0xfe, wValue: 0, wIndex: 4, wLength: 1 });
  await control('clear_halt_0x86', { bmRequestType: 0x02, bRequest: 1, wValue: 0, wIndex: 0x86, wLength: 0 });
  await control('max_lun', { bmRequestType: 0xa1, bRequest: 0xfe, wValue: 0, wIndex: 0, wLength: 1 });
  await control('device_descriptor', { bmRequestType: 0x80, bRequest: 6, wValue: 0x0100, wIndex: 0, wLength: 18 });
  console.log(JSON.stringify(out));
  await dev.close();
}

if (process.argv[1]?.endsWith('real-hotplug-client.js')) await main();
