export { type Address, UsbipClient, type UsbipClientOptions } from './client.js';
export { type RemoteDeviceOptions, RemoteUsbipDevice, UsbipImportError } from './remote-device.js';
export { UsbipSource, type UsbipSourceOptions } from './source.js';
