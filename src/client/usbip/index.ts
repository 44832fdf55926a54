export { type Address, UsbipClient, type UsbipClientOptions } from './client.js';
export { RemoteUsbipDevice } from './remote-device.js';
