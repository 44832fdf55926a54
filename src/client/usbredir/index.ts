export { GUEST_CAPS, UsbredirClientConnection, type UsbredirClientConnectionOptions } from './connection.js';
export { MAX_IN_FLIGHT, RemoteUsbredirDevice } from './remote-device.js';
export {
  UsbredirConnectSource,
  type UsbredirConnectSourceOptions,
  UsbredirListenSource,
  type UsbredirListenSourceOptions,
} from './source.js';
