// A TCP relay the test controls, between the guest's path (QEMU guestfwd → relay.c) and a
// server: cut() resets every connection through it at once, both ways, as a network failure
// would (no FIN exchange, no USB/IP detach), and later connections go through again.
import net from 'node:net';

export interface Cutter {
  port: number;
  /** connections relayed so far */
  readonly accepted: number;
  /** RST every open connection, both sides; returns how many were cut */
  cut(): number;
  close(): Promise<void>;
}

export function startCutter(targetPort: number, host = '127.0.0.1'): Promise<Cutter> {
  const pairs = new Set<[net.Socket, net.Socket]>();
  let accepted = 0;
  const server = net.createServer((inbound) => {
    accepted++;
    inbound.pause();
    const outbound = net.connect(targetPort, host, () => inbound.resume());
    for (const s of [inbound, outbound]) s.setNoDelay(true);
    const pair: [net.Socket, net.Socket] = [inbound, outbound];
    pairs.add(pair);
    inbound.pipe(outbound);
    outbound.pipe(inbound);
    const drop = () => {
      pairs.delete(pair);
      inbound.destroy();
      outbound.destroy();
    };
    for (const s of pair) {
      s.on('error', drop);
      s.on('close', drop);
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      resolve({
        port,
        get accepted() {
          return accepted;
        },
        cut: () => {
          const n = pairs.size;
          for (const [a, b] of [...pairs]) {
            a.resetAndDestroy();
            b.resetAndDestroy();
          }
          pairs.clear();
          return n;
        },
        close: () =>
          new Promise<void>((r) => {
            for (const [a, b] of pairs) {
              a.destroy();
              b.destroy();
            }
            server.close(() => r());
          }),
      });
    });
  });
}
