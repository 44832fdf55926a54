import { DescriptorType, parseConfiguration, parseDeviceDescriptor } from './descriptors.js';
import type { DeviceDescriptors } from './device.js';
import { RequestType, type SetupPacket, StandardRequest } from './setup.js';
import { TransferStatus } from './status.js';
import type { Transfer } from './transfer.js';

/** Runs one control IN request on a device and resolves with the data, or rejects with a reason. */
export type ControlIn = (setup: SetupPacket) => Promise<Buffer>;

const MAX_CONFIGURATIONS = 32;

export class DescriptorReadError extends Error {
  override name = 'DescriptorReadError';
}

export function getDescriptorSetup(type: number, index: number, length: number, langId = 0): SetupPacket {
  return {
    bmRequestType: RequestType.DirIn,
    bRequest: StandardRequest.GetDescriptor,
    wValue: (type << 8) | index,
    wIndex: langId,
    wLength: length,
  };
}

export const GET_CONFIGURATION: SetupPacket = Object.freeze({
  bmRequestType: RequestType.DirIn,
  bRequest: StandardRequest.GetConfiguration,
  wValue: 0,
  wIndex: 0,
  wLength: 1,
});

/**
 * Read a device's descriptors over endpoint 0, the way a host enumerates it: the device
 * descriptor, then each configuration's 9-byte head and its full wTotalLength. Every descriptor
 * is checked before it is kept, so a remote device that sends garbage fails here with a reason.
 */
export async function readDescriptors(control: ControlIn): Promise<DeviceDescriptors> {
  const device = await control(getDescriptorSetup(DescriptorType.Device, 0, 18));
  if (device.length < 18) throw new DescriptorReadError(`device descriptor has ${device.length} bytes, need 18`);
  const parsed = parseDeviceDescriptor(device);
  if (parsed.numConfigurations > MAX_CONFIGURATIONS) {
    throw new DescriptorReadError(`device claims ${parsed.numConfigurations} configurations`);
  }
  const configurations: Buffer[] = [];
  for (let i = 0; i < parsed.numConfigurations; i++) {
    const head = await control(getDescriptorSetup(DescriptorType.Configuration, i, 9));
    if (head.length < 9) throw new DescriptorReadError(`configuration ${i}: ${head.length}-byte head, need 9`);
    const total = head.readUInt16LE(2);
    if (total < 9) throw new DescriptorReadError(`configuration ${i}: wTotalLength ${total}`);
    const full =
      total === head.length ? head : await control(getDescriptorSetup(DescriptorType.Configuration, i, total));
    if (full.length !== total) {
      throw new DescriptorReadError(`configuration ${i}: got ${full.length} of ${total} bytes`);
    }
    try {
      parseConfiguration(full);
    } catch (err) {
      throw new DescriptorReadError(`configuration ${i}: ${(err as Error).message}`);
    }
    configurations.push(full);
  }
  return { device: device.subarray(0, 18), configurations };
}

/** GET_CONFIGURATION, or undefined when the device does not answer it sensibly. */
export async function readConfigurationValue(control: ControlIn): Promise<number | undefined> {
  const b = await control(GET_CONFIGURATION).catch(() => undefined);
  return b?.length === 1 ? b[0] : undefined;
}

export function isSetConfiguration(s: SetupPacket): boolean {
  return s.bmRequestType === RequestType.Device && s.bRequest === StandardRequest.SetConfiguration;
}

export function isSetInterface(s: SetupPacket): boolean {
  return s.bmRequestType === RequestType.Interface && s.bRequest === StandardRequest.SetInterface;
}

/**
 * The configuration and alternate settings of a device seen from the host side, kept in step
 * by watching the standard requests that succeed. Protocol-neutral: both clients use it, and
 * any wrapper that has to answer `configuration` / `alternateSetting` for a device it forwards to.
 */
export class ConfigurationTracker {
  #configuration = 0;
  readonly #alternates = new Map<number, number>();

  constructor(configuration = 0) {
    this.#configuration = configuration;
  }

  get configuration(): number {
    return this.#configuration;
  }

  alternateSetting(interfaceNumber: number): number {
    return this.#alternates.get(interfaceNumber) ?? 0;
  }

  /** A new configuration is active: every interface is back at alternate setting 0. */
  setConfiguration(value: number): void {
    this.#configuration = value & 0xff;
    this.#alternates.clear();
  }

  setAlternate(interfaceNumber: number, alternate: number): void {
    this.#alternates.set(interfaceNumber & 0xff, alternate & 0xff);
  }

  /** Port reset: the device is unconfigured again. */
  reset(): void {
    this.setConfiguration(0);
  }

  /** Call with every completed transfer: a successful SET_CONFIGURATION / SET_INTERFACE is applied. */
  observe(t: Transfer): void {
    const s = t.setup;
    if (!s || t.type !== 'control' || t.status !== TransferStatus.Ok) return;
    if (isSetConfiguration(s)) this.setConfiguration(s.wValue);
    else if (isSetInterface(s)) this.setAlternate(s.wIndex, s.wValue);
  }
}
