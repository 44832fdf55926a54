import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  capsFrom,
  encodePacket,
  Negotiation,
  type Packet,
  type Role,
  PacketType as T,
  UsbredirParser,
  UsbredirProtocolError,
} from '../../src/protocol/usbredir/index.js';
import { prng } from '../support/prng.js';

const ALL = [0, 1, 2, 3, 4, 5, 6, 7];

/** A plausible guest stream to mutate: hello then a few requests. */
function validGuestStream(): Buffer {
  const guest = new Negotiation('guest', capsFrom(ALL));
  const hello = encodePacket({ type: T.Hello, id: 0n, version: 'fuzz guest', caps: [0xff] }, guest);
  guest.setPeerCaps(capsFrom(ALL));
  const packets: Packet[] = [
    {
      type: T.ControlPacket,
      id: 1n,
      endpoint: 0x80,
      request: 6,
      requestType: 0x80,
      status: 0,
      value: 0x100,
      index: 0,
      length: 18,
      data: Buffer.alloc(0),
    },
    { type: T.BulkPacket, id: 2n, endpoint: 0x02, status: 0, length: 31, streamId: 0, data: Buffer.alloc(31, 0x55) },
    { type: T.StartInterruptReceiving, id: 3n, endpoint: 0x81 },
    { type: T.FilterFilter, id: 0n, filter: '-1,-1,-1,-1,1' },
    { type: T.SetAltSetting, id: 4n, interface: 0, alt: 1 },
  ];
  return Buffer.concat([...hello, ...packets.flatMap((p) => encodePacket(p, guest))]);
}

function feed(role: Role, bytes: Buffer, rand: () => number): number {
  const neg = new Negotiation(role, capsFrom(ALL));
  let count = 0;
  const parser = new UsbredirParser(neg, () => count++);
  let at = 0;
  while (at < bytes.length) {
    const n = 1 + Math.floor(rand() * Math.min(64, bytes.length - at));
    try {
      parser.push(bytes.subarray(at, at + n));
    } catch (err) {
      assert.ok(err instanceof UsbredirProtocolError, `unexpected ${String(err)}`);
      assert.ok(err.message.length > 0);
      return count;
    }
    at += n;
  }
  // Whatever is left waits for more bytes; it never exceeds what was pushed.
  assert.ok(parser.buffered <= bytes.length);
  return count;
}

describe('usbredir parser on random input', () => {
  it('random bytes: only typed errors, no crash', () => {
    const rand = prng(0x5eed);
    for (let i = 0; i < 3000; i++) {
      const len = Math.floor(rand() * 400);
      const bytes = Buffer.alloc(len);
      for (let j = 0; j < len; j++) bytes[j] = Math.floor(rand() * 256);
      // Small type and length values reach deeper into the parser than uniform noise.
      if (len >= 12 && rand() < 0.7) {
        bytes.writeUInt32LE(rand() < 0.5 ? Math.floor(rand() * 28) : 100 + Math.floor(rand() * 5), 0);
        bytes.writeUInt32LE(Math.floor(rand() * 300), 4);
      }
      feed(rand() < 0.5 ? 'host' : 'guest', bytes, rand);
    }
  });

  it('mutated valid streams: only typed errors, no crash', () => {
    const rand = prng(42);
    const base = validGuestStream();
    let parsedSome = 0;
    for (let i = 0; i < 3000; i++) {
      const bytes = Buffer.from(base);
      const flips = 1 + Math.floor(rand() * 4);
      for (let f = 0; f < flips; f++) {
        const at = Math.floor(rand() * bytes.length);
        bytes[at] = rand() < 0.5 ? Math.floor(rand() * 256) : bytes[at]! ^ (1 << Math.floor(rand() * 8));
      }
      const cut = rand() < 0.3 ? bytes.subarray(0, Math.floor(rand() * bytes.length)) : bytes;
      if (feed('host', cut, rand) > 1) parsedSome++;
    }
    assert.ok(parsedSome > 100, 'mutations should not all fail at the first packet');
  });

  it('the unmutated stream parses completely in random pieces', () => {
    const rand = prng(7);
    const base = validGuestStream();
    for (let i = 0; i < 200; i++) assert.equal(feed('host', base, rand), 6);
  });
});
