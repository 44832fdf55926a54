export { describeExport, sysfsPath } from './device-info.js';
export { UsbipServer, type UsbipServerOptions } from './server.js';
