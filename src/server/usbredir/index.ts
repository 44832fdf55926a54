export { type ConnectorOptions, UsbredirConnector, UsbredirListener } from './server.js';
export { UsbredirHostSession, type UsbredirHostSessionOptions } from './session.js';
