export { UsbipServer, type UsbipServerOptions } from './server.js';
export { describeExport, sysfsPath } from './device-info.js';
