// Two clients import the same device at the same instant: exactly one wins, the other is told
// busy (USB/IP: OP_REP_IMPORT DevBusy; usbredir: the server's hello, then the connection closed),
// over USB/IP both, usbredir both, and one of each; many rounds, in both orders.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { UsbipClient } from '../../src/client/usbip/index.js';
import { OpStatus } from '../../src/protocol/usbip/constants.js';
import { encodeReqImport, UsbipParser } from '../../src/protocol/usbip/index.js';
import { encodePacket } from '../../src/protocol/usbredir/codec.js';
import { PacketType as T } from '../../src/protocol/usbredir/constants.js';
import { capsFrom, Negotiation } from '../../src/protocol/usbredir/negotiation.js';
import type { Packet } from '../../src/protocol/usbredir/packets.js';
import { UsbredirParser } from '../../src/protocol/usbredir/parser.js';
import { setLogSink } from '../../src/util/log.js';
import { BotHost } from '../support/bot-host.js';
import { oneDiskBothProtocols } from '../support/one-disk-both-protocols.js';
import { prng } from '../support/prng.js';
import { until } from '../support/usbip-wire.js';

setLogSink('silent');

/** Rounds per pair; USBWIRE_RACE_ROUNDS=N for a longer run. */
const ROUNDS = Number(process.env.USBWIRE_RACE_ROUNDS) || 150;

type Outcome = 'won' | 'busy';

interface Contender {
  /** send the import request / the hello */
  go(): void;
  outcome: Promise<Outcome>;
  socket: net.Socket;
}

function connected(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => resolve(socket));
    socket.setNoDelay(true);
    socket.once('error', reject);
  });
}

async function usbipContender(port: number): Promise<Contender> {
  const socket = await connected(port);
  const outcome = new Promise<Outcome>((resolve, reject) => {
    const parser = new UsbipParser({ role: 'client' }, (p) => {
      if (p.kind !== 'op-rep-import') return reject(new Error(`USB/IP: unexpected ${p.kind}`));
      if (p.status === OpStatus.Ok) resolve('won');
      else if (p.status === OpStatus.DevBusy) resolve('busy');
      else reject(new Error(`USB/IP: import status ${p.status}, neither Ok nor DevBusy`));
    });
    socket.on('data', (c: Buffer) => parser.push(c));
    socket.on('close', () => reject(new Error('USB/IP: closed without an import reply')));
    socket.on('error', () => {});
  });
  return { socket, outcome, go: () => socket.write(Buffer.concat(encodeReqImport('1-1'))) };
}

async function usbredirContender(port: number): Promise<Contender> {
  const socket = await connected(port);
  const neg = new Negotiation('guest', capsFrom([1, 2, 3, 4, 5, 6, 7]));
  const seen: Packet[] = [];
  const outcome = new Promise<Outcome>((resolve, reject) => {
    const parser = new UsbredirParser(neg, (p: Packet) => {
      seen.push(p);
      if (p.type === T.DeviceConnect) resolve('won');
    });
    socket.on('data', (c: Buffer) => parser.push(c));
    socket.on('close', () => {
      // Busy: the server greets every guest, then closes when the claim fails.
      if (seen.length === 1 && seen[0]!.type === T.Hello) resolve('busy');
      else reject(new Error(`usbredir: closed after ${seen.map((p) => p.type).join(',') || 'nothing'}`));
    });
    socket.on('error', () => {});
  });
  const hello = Buffer.concat(encodePacket({ type: T.Hello, id: 0n, version: 'race', caps: [...neg.ourCaps] }, neg));
  return { socket, outcome, go: () => socket.write(hello) };
}

const served = oneDiskBothProtocols();
const { entry } = served;

type Kind = 'usbip' | 'usbredir';
const make = (k: Kind) => (k === 'usbip' ? usbipContender(served.usbipPort) : usbredirContender(served.usbredirPort));

/**
 * Each round: the two connect in a random order (the server accepts and reads them in that
 * order), send in a random order, in the same tick or (one round in four) the second one up to 2 ms
 * later, while the first one's session is starting.
 */
async function race(a: Kind, b: Kind, seed: number): Promise<Record<string, number>> {
  const random = prng(seed);
  const wins: Record<string, number> = { first: 0, second: 0, 'connected first': 0, 'sent first': 0 };
  for (let round = 0; round < ROUNDS; round++) {
    const bConnectsFirst = random() < 0.5;
    const pair: Contender[] = [];
    if (bConnectsFirst) pair[1] = await make(b);
    pair[0] = await make(a);
    if (!bConnectsFirst) pair[1] = await make(b);
    const bSendsFirst = random() < 0.5;
    const gap = random() < 0.25;
    const [one, two] = bSendsFirst ? [pair[1]!, pair[0]!] : [pair[0]!, pair[1]!];
    one.go();
    if (gap) await new Promise((r) => setTimeout(r, random() * 2));
    two.go();
    const outcomes = await Promise.all(pair.map((c) => c!.outcome));
    const how = `round ${round} (${a} vs ${b}; ${bConnectsFirst ? b : a} connected first, ${bSendsFirst ? b : a} sent first${gap ? ', with a gap' : ''})`;
    assert.equal(outcomes.filter((o) => o === 'won').length, 1, `${how}: ${outcomes}`);
    const winnerIsB = outcomes[1] === 'won';
    assert.ok(entry.owner?.startsWith(`${winnerIsB ? b : a} `), `${how}: owner ${entry.owner}`);
    wins[winnerIsB ? 'second' : 'first']!++;
    if (winnerIsB === bConnectsFirst) wins['connected first']!++;
    if (winnerIsB === bSendsFirst) wins['sent first']!++;
    for (const c of pair) c!.socket.destroy();
    await until(() => entry.owner === undefined, `${how}: device released`);
  }
  return wins;
}

for (const [a, b, seed] of [
  ['usbip', 'usbip', 1],
  ['usbredir', 'usbredir', 2],
  ['usbip', 'usbredir', 3],
] as const) {
  test(`faults: ${a} and ${b} import one device at the same instant, ${ROUNDS} rounds: exactly one wins, the other is told busy`, async (t) => {
    const wins = await race(a, b, seed);
    t.diagnostic(`winners (${a} = first, ${b} = second): ${JSON.stringify(wins)}`);
  });
}

test('faults: after the races the device works for the next client (BOT READ through a USB/IP import)', async () => {
  const dev = await new UsbipClient().importDevice({ host: '127.0.0.1', port: served.usbipPort }, '1-1');
  const bot = await BotHost.open(dev);
  // Each release resets the device: the first command reports that reset (UNIT ATTENTION), as to the kernel.
  await assert.rejects(bot.read(0, 8), /CSW status/);
  const data = await bot.read(0, 8);
  assert.equal(data.length, 4096);
  await dev.close();
  await until(() => entry.owner === undefined, 'released');
});
