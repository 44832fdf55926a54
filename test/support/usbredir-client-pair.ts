import { once } from 'node:events';
import net from 'node:net';
import { UsbredirClientConnection } from '../../src/client/usbredir/connection.js';
import type { RemoteUsbredirDevice } from '../../src/client/usbredir/remote-device.js';
import { UsbredirHostSession } from '../../src/server/usbredir/session.js';
import type { UsbDevice } from '../../src/usb/device.js';
import { createLogger } from '../../src/util/log.js';

export interface ClientPair {
  /** The device as the usbredir client sees it. */
  remote: RemoteUsbredirDevice;
  connection: UsbredirClientConnection;
  session: UsbredirHostSession;
  close(): Promise<void>;
}

/** Our usbredir host exports `device` over TCP on 127.0.0.1; our usbredir client imports it. */
export async function importOverUsbredir(
  device: UsbDevice,
  opts: { bulkStreams?: boolean; timeoutMs?: number; caps?: readonly number[] } = {},
): Promise<ClientPair> {
  let session: UsbredirHostSession | undefined;
  const server = net.createServer((socket) => {
    session = new UsbredirHostSession(socket, {
      device,
      peer: 'test',
      logger: createLogger('host'),
      ...(opts.bulkStreams ? { bulkStreams: true } : {}),
    });
    session.start();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  const socket = net.connect({ host: '127.0.0.1', port });
  await once(socket, 'connect');
  const connection = new UsbredirClientConnection(socket, {
    where: 'usbredir test',
    logger: createLogger('client'),
    timeoutMs: opts.timeoutMs ?? 5000,
    ...(opts.caps ? { caps: opts.caps } : {}),
  });
  const ready = once(connection, 'device') as Promise<[RemoteUsbredirDevice]>;
  connection.start();
  const [remote] = await ready;
  return {
    remote,
    connection,
    session: session!,
    async close() {
      await connection.close();
      await session?.done;
      server.close();
    },
  };
}
