import { EventEmitter } from 'node:events';
import {
  buildBos,
  buildConfiguration,
  buildDeviceDescriptor,
  buildDeviceQualifier,
  DescriptorType,
  type DeviceDescriptor,
  StringTable,
} from '../usb/descriptors.js';
import type { DeviceDescriptors, UsbDevice, UsbDeviceEvents } from '../usb/device.js';
import type { ControlResult, EndpointSpec, FunctionHost, InterfaceSpec, UsbFunction } from '../usb/function.js';
import { Feature, RequestType, type SetupPacket, StandardRequest } from '../usb/setup.js';
import { ep0MaxPacketFor, type UsbSpeed } from '../usb/speed.js';
import { TransferStatus } from '../usb/status.js';
import type { Transfer } from '../usb/transfer.js';

export interface EmulatedDeviceOptions {
  name: string;
  speed: UsbSpeed;
  vendorId: number;
  productId: number;
  bcdDevice?: number;
  deviceClass?: number;
  deviceSubClass?: number;
  deviceProtocol?: number;
  manufacturer?: string;
  product?: string;
  serial?: string;
  maxPowerMa?: number;
  selfPowered?: boolean;
  functions: UsbFunction[];
  /** Runs after the functions closed (e.g. flush and close a backing file). */
  onClose?: () => Promise<void>;
}

interface BoundFunction {
  fn: UsbFunction;
  firstInterface: number;
  interfaceCount: number;
}

const CONFIG_VALUE = 1;

/**
 * A device made of UsbFunctions. Standard requests are answered here, once for every class:
 * descriptors (device, configuration, strings, qualifier, other-speed, BOS), configuration and
 * alternate settings, status and endpoint halts. Class/vendor requests and data transfers go to
 * the function that owns the interface or endpoint.
 */
export class EmulatedDevice extends EventEmitter<UsbDeviceEvents> implements UsbDevice {
  readonly name: string;
  readonly speed: UsbSpeed;
  readonly descriptors: DeviceDescriptors;
  readonly #strings = new StringTable();
  readonly #bound: BoundFunction[] = [];
  readonly #deviceDescriptor: DeviceDescriptor;
  readonly #otherSpeedConfig: Buffer | undefined;
  readonly #qualifier: Buffer | undefined;
  readonly #bos: Buffer | undefined;
  readonly #selfPowered: boolean;
  readonly #onClose: (() => Promise<void>) | undefined;
  #configuration = 0;
  readonly #alternates = new Map<number, number>();
  readonly #halted = new Set<number>();
  readonly #wedged = new Set<number>();
  /** Endpoint address → owning function, for the active configuration. */
  readonly #endpointOwner = new Map<number, BoundFunction>();
  #closed = false;

  constructor(opts: EmulatedDeviceOptions) {
    super();
    this.name = opts.name;
    this.speed = opts.speed;
    this.#selfPowered = opts.selfPowered ?? false;
    this.#onClose = opts.onClose;
    const superSpeed = opts.speed === 'super' || opts.speed === 'super-plus';
    const host = this.#functionHost();
    let next = 0;
    for (const fn of opts.functions) {
      const count = fn.interfaces(opts.speed).length;
      this.#bound.push({ fn, firstInterface: next, interfaceCount: count });
      fn.bind(host, next);
      next += count;
    }
    this.#deviceDescriptor = {
      bcdUSB: superSpeed ? 0x0320 : opts.speed === 'high' ? 0x0200 : 0x0110,
      deviceClass: opts.deviceClass ?? 0,
      deviceSubClass: opts.deviceSubClass ?? 0,
      deviceProtocol: opts.deviceProtocol ?? 0,
      maxPacketSize0: ep0MaxPacketFor(opts.speed),
      vendorId: opts.vendorId,
      productId: opts.productId,
      bcdDevice: opts.bcdDevice ?? 0x0100,
      iManufacturer: this.#strings.add(opts.manufacturer),
      iProduct: this.#strings.add(opts.product),
      iSerialNumber: this.#strings.add(opts.serial),
      numConfigurations: 1,
    };
    const configOpts = {
      value: CONFIG_VALUE,
      attributes: this.#selfPowered ? 0x40 : 0,
      maxPowerMa: opts.maxPowerMa ?? 100,
      superSpeed,
    };
    const config = buildConfiguration(configOpts, this.#interfacesAt(opts.speed), this.#strings);
    this.descriptors = { device: buildDeviceDescriptor(this.#deviceDescriptor), configurations: [config] };
    if (opts.speed === 'high' || opts.speed === 'full') {
      const other: UsbSpeed = opts.speed === 'high' ? 'full' : 'high';
      this.#qualifier = buildDeviceQualifier(this.#deviceDescriptor, 64);
      this.#otherSpeedConfig = buildConfiguration(
        configOpts,
        this.#interfacesAt(other),
        this.#strings,
        DescriptorType.OtherSpeedConfiguration,
      );
    }
    if (this.#deviceDescriptor.bcdUSB >= 0x0201) this.#bos = buildBos(superSpeed);
  }

  get configuration(): number {
    return this.#configuration;
  }

  alternateSetting(interfaceNumber: number): number {
    return this.#alternates.get(interfaceNumber) ?? 0;
  }

  async submit(t: Transfer): Promise<void> {
    if (this.#closed) return t.fail(TransferStatus.NoDevice);
    if (t.endpointNumber === 0) return this.#control(t);
    const owner = this.#endpointOwner.get(t.endpoint);
    if (!owner) return t.fail(TransferStatus.Invalid);
    if (this.#halted.has(t.endpoint)) return t.fail(TransferStatus.Stall);
    return owner.fn.submit(t);
  }

  cancel(t: Transfer): void {
    if (t.endpointNumber === 0) return;
    this.#endpointOwner.get(t.endpoint)?.fn.cancel(t);
  }

  async reset(): Promise<void> {
    this.#deconfigure();
    for (const b of this.#bound) b.fn.reset();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const b of this.#bound) b.fn.reset();
    await Promise.all(this.#bound.map((b) => b.fn.close()));
    await this.#onClose?.();
  }

  /** Simulate an unplug: functions abort their transfers, listeners hear 'disconnect'. */
  unplug(): void {
    for (const b of this.#bound) b.fn.reset();
    this.emit('disconnect');
  }

  #interfacesAt(speed: UsbSpeed): InterfaceSpec[] {
    return this.#bound.flatMap((b) =>
      b.fn.interfaces(speed).map((i) => ({ number: i.number + b.firstInterface, alternates: i.alternates })),
    );
  }

  #functionHost(): FunctionHost {
    return {
      haltEndpoint: (ep) => void this.#halted.add(ep),
      wedgeEndpoint: (ep) => {
        this.#halted.add(ep);
        this.#wedged.add(ep);
      },
      unhaltEndpoint: (ep) => {
        this.#halted.delete(ep);
        this.#wedged.delete(ep);
      },
      isHalted: (ep) => this.#halted.has(ep),
    };
  }

  #deconfigure(): void {
    if (this.#configuration !== 0) for (const b of this.#bound) b.fn.setConfigured(false);
    this.#configuration = 0;
    this.#alternates.clear();
    this.#halted.clear();
    this.#wedged.clear();
    this.#endpointOwner.clear();
  }

  #mapEndpoints(): void {
    this.#endpointOwner.clear();
    for (const b of this.#bound) {
      for (const iface of b.fn.interfaces(this.speed)) {
        const abs = iface.number + b.firstInterface;
        const alt = iface.alternates.find((a) => a.alternate === this.alternateSetting(abs)) ?? iface.alternates[0];
        for (const e of alt?.endpoints ?? []) this.#endpointOwner.set(e.address, b);
      }
    }
  }

  #functionForInterface(iface: number): BoundFunction | undefined {
    return this.#bound.find((b) => iface >= b.firstInterface && iface < b.firstInterface + b.interfaceCount);
  }

  #altSpecs(
    iface: number,
  ): { fn: BoundFunction; alternates: number[]; endpoints: (alt: number) => EndpointSpec[] } | undefined {
    const fn = this.#functionForInterface(iface);
    if (!fn) return undefined;
    const spec = fn.fn.interfaces(this.speed).find((i) => i.number + fn.firstInterface === iface);
    if (!spec) return undefined;
    return {
      fn,
      alternates: spec.alternates.map((a) => a.alternate),
      endpoints: (alt) => spec.alternates.find((a) => a.alternate === alt)?.endpoints ?? [],
    };
  }

  async #control(t: Transfer): Promise<void> {
    const setup = t.setup;
    if (!setup) return t.fail(TransferStatus.Invalid);
    const dataOut = t.isIn ? undefined : t.data.subarray(0, setup.wLength);
    let result: ControlResult | undefined;
    try {
      result =
        (setup.bmRequestType & RequestType.TypeMask) === RequestType.Standard
          ? this.#standard(setup)
          : await this.#classOrVendor(setup, dataOut);
    } catch {
      result = { status: TransferStatus.Stall };
    }
    if (!result) result = { status: TransferStatus.Stall };
    if (result.status !== TransferStatus.Ok) return t.fail(result.status);
    if (t.isIn) {
      const data = result.data ?? Buffer.alloc(0);
      t.completeIn(data.length > setup.wLength ? data.subarray(0, setup.wLength) : data);
    } else {
      t.status = TransferStatus.Ok;
      t.actualLength = dataOut?.length ?? 0;
    }
  }

  #classOrVendor(setup: SetupPacket, data: Buffer | undefined): Promise<ControlResult> | ControlResult | undefined {
    const recipient = setup.bmRequestType & RequestType.RecipientMask;
    if (recipient === RequestType.Interface) {
      return this.#functionForInterface(setup.wIndex & 0xff)?.fn.control(setup, data);
    }
    if (recipient === RequestType.Endpoint) {
      return this.#endpointOwner.get(setup.wIndex & 0xff)?.fn.control(setup, data);
    }
    for (const b of this.#bound) {
      const r = b.fn.control(setup, data);
      if (r) return r;
    }
    return undefined;
  }

  #standard(s: SetupPacket): ControlResult | undefined {
    const ok = (data?: Buffer): ControlResult =>
      data ? { status: TransferStatus.Ok, data } : { status: TransferStatus.Ok };
    const recipient = s.bmRequestType & RequestType.RecipientMask;
    switch (s.bRequest) {
      case StandardRequest.GetDescriptor:
        return this.#getDescriptor(s.wValue >> 8, s.wValue & 0xff);
      case StandardRequest.SetAddress:
        return ok();
      case StandardRequest.GetConfiguration:
        return ok(Buffer.from([this.#configuration]));
      case StandardRequest.SetConfiguration: {
        const value = s.wValue & 0xff;
        if (value !== 0 && value !== CONFIG_VALUE) return undefined;
        this.#deconfigure();
        if (value === CONFIG_VALUE) {
          this.#configuration = value;
          this.#mapEndpoints();
          for (const b of this.#bound) b.fn.setConfigured(true);
        }
        return ok();
      }
      case StandardRequest.GetInterface: {
        if (this.#configuration === 0 || !this.#altSpecs(s.wIndex & 0xff)) return undefined;
        return ok(Buffer.from([this.alternateSetting(s.wIndex & 0xff)]));
      }
      case StandardRequest.SetInterface: {
        const iface = s.wIndex & 0xff;
        const spec = this.#altSpecs(iface);
        if (this.#configuration === 0 || !spec || !spec.alternates.includes(s.wValue)) return undefined;
        for (const e of spec.endpoints(this.alternateSetting(iface))) {
          this.#halted.delete(e.address);
          this.#wedged.delete(e.address);
        }
        this.#alternates.set(iface, s.wValue);
        this.#mapEndpoints();
        spec.fn.fn.setAlternate(iface - spec.fn.firstInterface, s.wValue);
        return ok();
      }
      case StandardRequest.GetStatus: {
        const status = Buffer.alloc(2);
        if (recipient === RequestType.Device) status[0] = this.#selfPowered ? 1 : 0;
        else if (recipient === RequestType.Endpoint) {
          const ep = s.wIndex & 0xff;
          if ((ep & 0x0f) !== 0 && !this.#endpointOwner.has(ep)) return undefined;
          status[0] = this.#halted.has(ep) ? 1 : 0;
        } else if (recipient === RequestType.Interface && !this.#functionForInterface(s.wIndex & 0xff)) {
          return undefined;
        }
        return ok(status);
      }
      case StandardRequest.ClearFeature:
      case StandardRequest.SetFeature: {
        const set = s.bRequest === StandardRequest.SetFeature;
        if (recipient === RequestType.Endpoint && s.wValue === Feature.EndpointHalt) {
          const ep = s.wIndex & 0xff;
          if ((ep & 0x0f) === 0) return ok();
          const owner = this.#endpointOwner.get(ep);
          if (!owner) return undefined;
          if (set) this.#halted.add(ep);
          else if (!this.#wedged.has(ep)) {
            this.#halted.delete(ep);
            owner.fn.clearHalt?.(ep);
          }
          return ok();
        }
        if (recipient === RequestType.Device && s.wValue === Feature.DeviceRemoteWakeup) return ok();
        return undefined;
      }
      default:
        return undefined;
    }
  }

  #getDescriptor(type: number, index: number): ControlResult | undefined {
    const ok = (data: Buffer | undefined): ControlResult | undefined =>
      data ? { status: TransferStatus.Ok, data } : undefined;
    switch (type) {
      case DescriptorType.Device:
        return ok(this.descriptors.device);
      case DescriptorType.Configuration:
        return ok(this.descriptors.configurations[index]);
      case DescriptorType.String:
        return ok(this.#strings.descriptor(index));
      case DescriptorType.DeviceQualifier:
        return ok(this.#qualifier);
      case DescriptorType.OtherSpeedConfiguration:
        return index === 0 ? ok(this.#otherSpeedConfig) : undefined;
      case DescriptorType.Bos:
        return ok(this.#bos);
      default:
        return undefined;
    }
  }
}
