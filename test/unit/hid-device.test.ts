import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DeviceActionError } from '../../src/devices/classes.js';
import { createKeyboard, createMouse, HID_QUEUE_CAPACITY } from '../../src/devices/hid/index.js';
import type { SetupPacket } from '../../src/usb/setup.js';
import { TransferStatus } from '../../src/usb/status.js';
import { Transfer } from '../../src/usb/transfer.js';
import { control, getDescriptor, setConfiguration } from '../support/drive.js';

const invalidArgs = (e: unknown) => e instanceof DeviceActionError && e.reason === 'invalid';

function classReq(bRequest: number, dirIn: boolean, wValue: number, wLength: number, wIndex = 0): SetupPacket {
  return { bmRequestType: dirIn ? 0xa1 : 0x21, bRequest, wValue, wIndex, wLength };
}

function interruptIn(dev: { submit(t: Transfer): Promise<void> }, length = 8) {
  const t = new Transfer({ type: 'interrupt', endpoint: 0x81, length });
  let done = false;
  const p = dev.submit(t).then(() => {
    done = true;
  });
  return { t, p, isDone: () => done };
}

const tick = () => new Promise((r) => setImmediate(r));

async function configuredKeyboard(capacity?: number) {
  const kb = createKeyboard(capacity === undefined ? {} : { queueCapacity: capacity });
  assert.equal((await setConfiguration(kb, 1)).status, TransferStatus.Ok);
  return kb;
}

test('keyboard descriptors: boot interface 3/1/1, HID descriptor, interrupt IN, report descriptor by GET_DESCRIPTOR(0x22)', async () => {
  const kb = createKeyboard();
  const cfg = kb.descriptors.configurations[0]!;
  const iface = cfg.indexOf(Buffer.from([9, 4, 0, 0, 1, 3, 1, 1]));
  assert.ok(iface > 0, 'interface descriptor 3/1/1 with one endpoint');
  assert.equal(cfg.subarray(iface + 9, iface + 18).toString('hex'), '09211101000122' + '3f00');
  assert.equal(cfg.subarray(iface + 18, iface + 25).toString('hex'), '07058103080007');
  await setConfiguration(kb, 1);
  const rd = await control(kb, { bmRequestType: 0x81, bRequest: 6, wValue: 0x2200, wIndex: 0, wLength: 63 });
  assert.equal(rd.status, TransferStatus.Ok);
  assert.equal(rd.actualLength, 63);
  assert.equal(rd.data[0], 0x05);
  const hd = await control(kb, { bmRequestType: 0x81, bRequest: 6, wValue: 0x2100, wIndex: 0, wLength: 9 });
  assert.equal(hd.data.toString('hex'), '092111010001223f00');
  const wrongIf = await control(kb, { bmRequestType: 0x81, bRequest: 6, wValue: 0x2200, wIndex: 1, wLength: 63 });
  assert.equal(wrongIf.status, TransferStatus.Stall);
  const wrongType = await control(kb, { bmRequestType: 0x81, bRequest: 6, wValue: 0x2300, wIndex: 0, wLength: 63 });
  assert.equal(wrongType.status, TransferStatus.Stall);
  const dev = await getDescriptor(kb, 1, 0, 18);
  assert.equal(dev.data.readUInt16LE(8), 0x1209);
  const mouse = createMouse();
  assert.ok(mouse.descriptors.configurations[0]!.includes(Buffer.from([9, 4, 0, 0, 1, 3, 1, 2])));
  assert.ok(mouse.descriptors.configurations[0]!.includes(Buffer.from('0921110100012234', 'hex')));
});

test('interrupt IN stays pending until there is input, then completes with the report', async () => {
  const kb = await configuredKeyboard();
  const a = interruptIn(kb);
  const b = interruptIn(kb);
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(a.isDone(), false, 'no input: the IN is a NAK, not an empty report');
  kb.actions.type({ text: 'A' });
  await a.p;
  await b.p;
  assert.equal(a.t.status, TransferStatus.Ok);
  assert.equal(a.t.data.toString('hex'), '0200040000000000');
  assert.equal(b.t.data.toString('hex'), '0000000000000000');
  const c = interruptIn(kb);
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(c.isDone(), false, 'after the queue drained nothing is invented');
  // reports queued before the host polls wait for it, in order
  kb.actions.key({ combo: 'ctrl+alt+f2' });
  await c.p;
  assert.equal(c.t.data.toString('hex'), '05003b0000000000');
  const d = interruptIn(kb);
  await d.p;
  assert.equal(d.t.data.toString('hex'), '0000000000000000');
  kb.cancel(interruptIn(kb).t);
});

test('a cancelled interrupt IN does not lose a report', async () => {
  const kb = await configuredKeyboard();
  const a = interruptIn(kb);
  kb.cancel(a.t);
  await a.p;
  assert.equal(a.t.status, TransferStatus.Cancelled);
  kb.actions.type({ text: 'b' });
  const b = interruptIn(kb);
  await b.p;
  assert.equal(b.t.data.toString('hex'), '0000050000000000');
});

test('key down/up hold a key across reports', async () => {
  const kb = await configuredKeyboard();
  kb.actions.key({ combo: 'shift', action: 'down' });
  kb.actions.type({ text: 'a' });
  kb.actions.key({ combo: 'shift', action: 'up' });
  const got: string[] = [];
  for (let i = 0; i < 4; i++) {
    const x = interruptIn(kb);
    await x.p;
    got.push(x.t.data.toString('hex'));
  }
  assert.deepEqual(got, ['0200000000000000', '0200040000000000', '0200000000000000', '0000000000000000']);
});

test('class requests: idle, protocol, reports, LEDs; bad ones STALL and the device keeps working', async () => {
  const kb = await configuredKeyboard();
  const ok = async (s: SetupPacket, data?: Buffer) => {
    const t = await control(kb, s, data);
    assert.equal(t.status, TransferStatus.Ok, JSON.stringify(s));
    return t;
  };
  const stall = async (s: SetupPacket, data?: Buffer) => {
    const t = await control(kb, s, data);
    assert.equal(t.status, TransferStatus.Stall, JSON.stringify(s));
  };
  assert.equal((await ok(classReq(0x03, true, 0, 1))).data[0], 1, 'report protocol after configuration');
  await ok(classReq(0x0b, false, 0, 0));
  assert.equal((await ok(classReq(0x03, true, 0, 1))).data[0], 0);
  await stall(classReq(0x0b, false, 2, 0));
  assert.equal((await ok(classReq(0x02, true, 0, 1))).data[0], 0);
  await ok(classReq(0x0a, false, 0x7d00, 0));
  assert.equal((await ok(classReq(0x02, true, 0, 1))).data[0], 0x7d);
  await ok(classReq(0x0a, false, 0, 0));
  await stall(classReq(0x0a, false, 0x0001, 0)); // report id 1: we have none
  await stall(classReq(0x0a, false, 0, 4)); // SET_IDLE has no data stage
  await stall(classReq(0x02, true, 0, 0));
  // LEDs: SET_REPORT(Output) on ep0
  await ok(classReq(0x09, false, 0x0200, 1), Buffer.from([0x02]));
  assert.equal(kb.actions.leds({}) && (kb.actions.leds({}) as { capsLock: boolean }).capsLock, true);
  assert.equal((await ok(classReq(0x01, true, 0x0200, 1))).data.toString('hex'), '02');
  await stall(classReq(0x09, false, 0x0200, 2), Buffer.from([0x02, 0x00])); // longer than the report
  await stall(classReq(0x09, false, 0x0200, 0));
  await stall(classReq(0x09, false, 0x0300, 1), Buffer.from([1])); // no feature report
  await stall(classReq(0x09, false, 0x0100, 8), Buffer.alloc(8)); // input reports are not written
  await stall(classReq(0x09, false, 0x0200, 1, 1), Buffer.from([1])); // wrong interface
  await stall(classReq(0x09, false, 0x0200, 1, 0x0100), Buffer.from([1])); // wIndex high byte
  await stall(classReq(0x01, true, 0x0300, 8));
  await stall(classReq(0x01, true, 0x0101, 8));
  await stall({ bmRequestType: 0xc1, bRequest: 0x01, wValue: 0x0100, wIndex: 0, wLength: 8 }); // vendor
  await stall(classReq(0x42, true, 0, 8));
  assert.equal((await ok(classReq(0x01, true, 0x0100, 8))).data.toString('hex'), '0000000000000000');
  assert.equal((kb.actions.leds({}) as { raw: number }).raw, 2, 'bad requests left the LED state alone');
  kb.actions.type({ text: 'x' });
  const x = interruptIn(kb);
  await x.p;
  assert.equal(x.t.data.toString('hex'), '00001b0000000000', 'still working');
  assert.equal((await ok(classReq(0x01, true, 0x0100, 8))).data.toString('hex'), '00001b0000000000');
});

test('mouse has no output report: SET_REPORT stalls; GET_REPORT gives the last input', async () => {
  const m = createMouse();
  await setConfiguration(m, 1);
  const t = await control(m, classReq(0x09, false, 0x0200, 1), Buffer.from([1]));
  assert.equal(t.status, TransferStatus.Stall);
  m.actions.move({ dx: -3, dy: 4 });
  const r = interruptIn(m, 4);
  await r.p;
  assert.equal(r.t.data.toString('hex'), '00fd0400');
  m.actions.click({ button: 'right' });
  m.actions.wheel({ delta: 1 });
  m.actions.button({ button: 'middle', down: true });
  const got: string[] = [];
  for (let i = 0; i < 4; i++) {
    const x = interruptIn(m, 4);
    await x.p;
    got.push(x.t.data.toString('hex'));
  }
  assert.deepEqual(got, ['02000000', '00000000', '00000001', '04000000']);
  assert.throws(() => m.actions.click({ button: 'fourth' }), invalidArgs);
  assert.throws(() => m.actions.move({ dx: 1.5 }), invalidArgs);
  assert.throws(() => m.actions.wheel({}), invalidArgs);
  assert.throws(() => m.actions.button({ button: 'left' }), invalidArgs);
});

test('SET_IDLE with a duration repeats the last report when nothing changes; 0 stops it', async () => {
  const kb = await configuredKeyboard();
  kb.actions.type({ text: 'a' });
  for (let i = 0; i < 2; i++) await interruptIn(kb).p;
  await control(kb, classReq(0x0a, false, 0x0500, 0)); // 20 ms
  const keepAlive = setInterval(() => {}, 1000); // the device's idle timer does not hold the loop
  const started = Date.now();
  const r = interruptIn(kb);
  await r.p;
  const waited = Date.now() - started;
  assert.ok(waited >= 15, `repeat after the idle period (${waited} ms)`);
  assert.equal(r.t.data.toString('hex'), '0000000000000000');
  await control(kb, classReq(0x0a, false, 0, 0));
  const s = interruptIn(kb);
  await new Promise((res) => setTimeout(res, 60));
  assert.equal(s.isDone(), false, 'idle 0: only on change');
  kb.cancel(s.t);
  clearInterval(keepAlive);
});

test('the input queue is bounded: an action that does not fit is refused whole', async () => {
  const kb = await configuredKeyboard(10);
  kb.actions.type({ text: 'abcd' }); // 8 reports
  assert.throws(
    () => kb.actions.type({ text: 'ef' }),
    (e: Error) => e instanceof DeviceActionError && e.reason === 'unavailable' && /queue full/.test(e.message),
  );
  assert.equal(kb.input.fn.queued, 8, 'nothing of the refused action was queued');
  kb.actions.type({ text: 'e' });
  assert.equal(kb.input.fn.queued, 10);
  assert.equal(HID_QUEUE_CAPACITY, 4096);
});

test('input before a host configured the device is refused; reset empties the queue', async () => {
  const kb = createKeyboard();
  assert.throws(() => kb.actions.type({ text: 'a' }), DeviceActionError);
  await setConfiguration(kb, 1);
  kb.actions.type({ text: 'abc' });
  await kb.reset();
  await setConfiguration(kb, 1);
  assert.equal(kb.input.fn.queued, 0);
  assert.throws(() => kb.actions.type({ text: 7 }), invalidArgs);
  assert.throws(() => kb.actions.key({ combo: 'a', action: 'hold' }), invalidArgs);
  assert.throws(() => kb.actions.key({ combo: 'nope' }), invalidArgs);
  assert.throws(() => kb.actions.type({ text: 'snowman ☃' }), invalidArgs);
  await kb.close();
  await tick();
});
