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
import { maxStreamsOf } from '../usb/streams.js';
import type { Transfer } from '../usb/transfer.js';
import { EndpointQueues } from './endpoint-queues.js';

/** One configuration: its bConfigurationValue, string, and the functions in it. */
export interface ConfigurationSpec {
  value: number;
  name?: string;
  functions: UsbFunction[];
}

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
  /** The functions of a single-configuration device (bConfigurationValue 1)... */
  functions?: UsbFunction[];
  /** ...or several configurations, in descriptor index order. */
  configurations?: ConfigurationSpec[];
  /** Runs after the functions closed (e.g. flush and close a backing file). */
  onClose?: () => Promise<void>;
}

interface BoundFunction {
  fn: UsbFunction;
  firstInterface: number;
  interfaceCount: number;
}

interface Configuration {
  value: number;
  bound: BoundFunction[];
}

/**
 * A device made of UsbFunctions. Standard requests are answered here, once for every class:
 * descriptors (device, configuration, strings, qualifier, other-speed, BOS), configurations and
 * alternate settings, status and endpoint halts. The device owns the endpoints: transfers wait
 * in per-endpoint queues until their function takes them, and cancel, halt, reset and
 * reconfiguration are handled here. Class/vendor requests go to the function that owns the
 * interface or endpoint.
 */
export class EmulatedDevice extends EventEmitter<UsbDeviceEvents> implements UsbDevice {
  readonly name: string;
  readonly speed: UsbSpeed;
  readonly descriptors: DeviceDescriptors;
  readonly #strings = new StringTable();
  readonly #configs: Configuration[] = [];
  readonly #deviceDescriptor: DeviceDescriptor;
  readonly #otherSpeedConfigs: Buffer[] = [];
  readonly #qualifier: Buffer | undefined;
  readonly #bos: Buffer | undefined;
  readonly #selfPowered: boolean;
  readonly #onClose: (() => Promise<void>) | undefined;
  readonly #queues = new EndpointQueues();
  #active: Configuration | undefined;
  readonly #alternates = new Map<number, number>();
  readonly #halted = new Set<number>();
  readonly #wedged = new Set<number>();
  /** Endpoint address → owning function, for the active configuration and alternate settings. */
  readonly #endpointOwner = new Map<number, BoundFunction>();
  readonly #endpointSpec = new Map<number, EndpointSpec>();
  /** Bulk streams allocated, by endpoint address (USB 3). */
  readonly #streams = new Map<number, number>();
  /** Control transfers whose answer is still coming (a class request may take its time). */
  readonly #controls = new Map<Transfer, () => void>();
  #closed = false;

  constructor(opts: EmulatedDeviceOptions) {
    super();
    this.name = opts.name;
    this.speed = opts.speed;
    this.#selfPowered = opts.selfPowered ?? false;
    this.#onClose = opts.onClose;
    const superSpeed = opts.speed === 'super' || opts.speed === 'super-plus';
    const specs = opts.configurations ?? [{ value: 1, functions: opts.functions ?? [] }];
    const host = this.#functionHost();
    for (const spec of specs) {
      const config: Configuration = { value: spec.value, bound: [] };
      let next = 0;
      for (const fn of spec.functions) {
        const count = fn.interfaces(opts.speed).length;
        config.bound.push({ fn, firstInterface: next, interfaceCount: count });
        fn.bind(host, next);
        next += count;
      }
      this.#configs.push(config);
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
      numConfigurations: specs.length,
    };
    const other: UsbSpeed | undefined = opts.speed === 'high' ? 'full' : opts.speed === 'full' ? 'high' : undefined;
    const configurations: Buffer[] = [];
    for (const [i, spec] of specs.entries()) {
      const configOpts = {
        value: spec.value,
        attributes: this.#selfPowered ? 0x40 : 0,
        maxPowerMa: opts.maxPowerMa ?? 100,
        superSpeed,
        name: this.#strings.add(spec.name),
      };
      const config = this.#configs[i]!;
      configurations.push(buildConfiguration(configOpts, this.#interfacesAt(config, opts.speed), this.#strings));
      if (other) {
        this.#otherSpeedConfigs.push(
          buildConfiguration(
            configOpts,
            this.#interfacesAt(config, other),
            this.#strings,
            DescriptorType.OtherSpeedConfiguration,
          ),
        );
      }
    }
    this.descriptors = { device: buildDeviceDescriptor(this.#deviceDescriptor), configurations };
    const streamCapable = this.#configs.some((c) =>
      this.#interfacesAt(c, opts.speed).some((i) =>
        i.alternates.some((a) => a.endpoints.some((e) => maxStreams(e) > 0)),
      ),
    );
    if (streamCapable) {
      this.allocStreams = (endpoints, streams) => Promise.resolve(this.#allocStreams(endpoints, streams));
      this.freeStreams = (endpoints) => Promise.resolve(this.#freeStreams(endpoints));
    }
    if (other) this.#qualifier = buildDeviceQualifier(this.#deviceDescriptor, 64);
    if (this.#deviceDescriptor.bcdUSB >= 0x0201) this.#bos = buildBos(superSpeed);
  }

  /** Present only on a device with SuperSpeed bulk endpoints that declare streams. */
  allocStreams?: (endpoints: number[], streams: number) => Promise<number | TransferStatus>;
  freeStreams?: (endpoints: number[]) => Promise<TransferStatus>;

  get configuration(): number {
    return this.#active?.value ?? 0;
  }

  alternateSetting(interfaceNumber: number): number {
    return this.#alternates.get(interfaceNumber) ?? 0;
  }

  submit(t: Transfer): Promise<void> {
    if (this.#closed) return failNow(t, TransferStatus.NoDevice);
    if (t.endpointNumber === 0) return this.#submitControl(t);
    const owner = this.#endpointOwner.get(t.endpoint);
    if (!owner) return failNow(t, TransferStatus.Invalid);
    if (this.#halted.has(t.endpoint)) return failNow(t, TransferStatus.Stall);
    const streams = this.#streams.get(t.endpoint) ?? 0;
    if (streams === 0 ? t.streamId !== 0 : t.streamId === 0 || t.streamId > streams) {
      return failNow(t, TransferStatus.Invalid);
    }
    const done = this.#queues.enqueue(t);
    owner.fn.transferWaiting(t.endpoint, t.streamId);
    return done;
  }

  cancel(t: Transfer): void {
    if (t.endpointNumber === 0) this.#failControl(t, TransferStatus.Cancelled);
    else this.#queues.cancel(t);
  }

  async reset(): Promise<void> {
    for (const t of [...this.#controls.keys()]) this.#failControl(t, TransferStatus.Cancelled);
    this.#deconfigure(TransferStatus.Cancelled);
    for (const b of this.#allBound()) b.fn.reset();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of [...this.#controls.keys()]) this.#failControl(t, TransferStatus.NoDevice);
    this.#deconfigure(TransferStatus.NoDevice);
    for (const b of this.#allBound()) b.fn.reset();
    await Promise.all(this.#allBound().map((b) => b.fn.close()));
    await this.#onClose?.();
  }

  #allBound(): BoundFunction[] {
    return this.#configs.flatMap((c) => c.bound);
  }

  #interfacesAt(config: Configuration, speed: UsbSpeed): InterfaceSpec[] {
    return config.bound.flatMap((b) =>
      b.fn.interfaces(speed).map((i) => ({ ...i, number: i.number + b.firstInterface })),
    );
  }

  #functionHost(): FunctionHost {
    const queues = this.#queues;
    return {
      speed: this.speed,
      peek: (ep, stream) => queues.peek(ep, stream),
      take: (ep, stream) => queues.take(ep, stream),
      waiting: (ep, stream) => queues.waiting(ep, stream),
      complete: (t) => queues.complete(t),
      haltEndpoint: (ep) => this.#halt(ep),
      wedgeEndpoint: (ep) => {
        this.#halt(ep);
        this.#wedged.add(ep);
      },
      unhaltEndpoint: (ep) => {
        this.#halted.delete(ep);
        this.#wedged.delete(ep);
      },
      isHalted: (ep) => this.#halted.has(ep),
      streams: (ep) => this.#streams.get(ep) ?? 0,
    };
  }

  /** Grants up to what every endpoint's companion descriptor declares (as xHCI does: the smallest). */
  #allocStreams(endpoints: number[], streams: number): number | TransferStatus {
    if (this.#closed) return TransferStatus.NoDevice;
    if (!this.#active || endpoints.length === 0 || !Number.isInteger(streams) || streams < 1) {
      return TransferStatus.Invalid;
    }
    let granted = streams;
    const owners = new Set<BoundFunction>();
    for (const ep of endpoints) {
      const spec = this.#endpointSpec.get(ep);
      const owner = this.#endpointOwner.get(ep);
      if (!spec || !owner || maxStreams(spec) === 0 || this.#streams.has(ep)) return TransferStatus.Invalid;
      granted = Math.min(granted, maxStreams(spec));
      owners.add(owner);
    }
    this.#queues.flush(TransferStatus.Cancelled, new Set(endpoints));
    for (const ep of endpoints) this.#streams.set(ep, granted);
    for (const owner of owners) owner.fn.streamsChanged?.(endpoints, granted);
    return granted;
  }

  #freeStreams(endpoints: number[]): TransferStatus {
    if (this.#closed) return TransferStatus.NoDevice;
    const freed = endpoints.filter((ep) => this.#streams.delete(ep));
    if (freed.length === 0) return TransferStatus.Ok;
    this.#queues.flush(TransferStatus.Cancelled, new Set(freed));
    const owners = new Set(freed.map((ep) => this.#endpointOwner.get(ep)));
    for (const owner of owners) owner?.fn.streamsChanged?.(freed, 0);
    return TransferStatus.Ok;
  }

  #halt(ep: number): void {
    this.#halted.add(ep);
    this.#queues.flush(TransferStatus.Stall, new Set([ep]));
  }

  #deconfigure(status: TransferStatus): void {
    this.#queues.flush(status);
    if (this.#active) for (const b of this.#active.bound) b.fn.setConfigured(false);
    this.#active = undefined;
    this.#alternates.clear();
    this.#halted.clear();
    this.#wedged.clear();
    this.#endpointOwner.clear();
    this.#endpointSpec.clear();
    this.#streams.clear();
  }

  #mapEndpoints(): void {
    this.#endpointOwner.clear();
    this.#endpointSpec.clear();
    for (const b of this.#active?.bound ?? []) {
      for (const iface of b.fn.interfaces(this.speed)) {
        const abs = iface.number + b.firstInterface;
        const alt = iface.alternates.find((a) => a.alternate === this.alternateSetting(abs)) ?? iface.alternates[0];
        for (const e of alt?.endpoints ?? []) {
          this.#endpointOwner.set(e.address, b);
          this.#endpointSpec.set(e.address, e);
        }
      }
    }
  }

  #functionForInterface(iface: number): BoundFunction | undefined {
    return this.#active?.bound.find((b) => iface >= b.firstInterface && iface < b.firstInterface + b.interfaceCount);
  }

  #interfaceSpec(iface: number): { owner: BoundFunction; spec: InterfaceSpec } | undefined {
    const owner = this.#functionForInterface(iface);
    const spec = owner?.fn.interfaces(this.speed).find((i) => i.number + owner.firstInterface === iface);
    return owner && spec ? { owner, spec } : undefined;
  }

  /** Control transfers stay cancellable while their function works on the answer. */
  #submitControl(t: Transfer): Promise<void> {
    return new Promise<void>((resolve) => {
      this.#controls.set(t, resolve);
      void this.#answer(t).then((result) => {
        if (!this.#controls.delete(t)) return; // cancelled meanwhile: the answer is dropped
        this.#applyControl(t, result);
        resolve();
      });
    });
  }

  #failControl(t: Transfer, status: TransferStatus): void {
    const resolve = this.#controls.get(t);
    if (!resolve) return;
    this.#controls.delete(t);
    t.fail(status);
    resolve();
  }

  async #answer(t: Transfer): Promise<ControlResult> {
    const setup = t.setup;
    if (!setup) return { status: TransferStatus.Invalid };
    const dataOut = t.isIn ? undefined : t.data.subarray(0, setup.wLength);
    try {
      const result = isStandardForDevice(setup) ? this.#standard(setup) : await this.#classOrVendor(setup, dataOut);
      return result ?? { status: TransferStatus.Stall };
    } catch {
      return { status: TransferStatus.Stall };
    }
  }

  #applyControl(t: Transfer, result: ControlResult): void {
    const setup = t.setup;
    if (result.status !== TransferStatus.Ok || !setup) {
      t.fail(result.status);
      return;
    }
    if (t.isIn) {
      const data = result.data ?? Buffer.alloc(0);
      t.completeIn(data.length > setup.wLength ? data.subarray(0, setup.wLength) : data);
    } else {
      t.status = TransferStatus.Ok;
      t.actualLength = Math.min(t.data.length, setup.wLength);
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
    for (const b of this.#active?.bound ?? []) {
      const r = b.fn.control(setup, data);
      if (r) return r;
    }
    return undefined;
  }

  #setConfiguration(value: number): boolean {
    const config = value === 0 ? undefined : this.#configs.find((c) => c.value === value);
    if (value !== 0 && !config) return false;
    this.#deconfigure(TransferStatus.Cancelled);
    this.#active = config;
    this.#mapEndpoints();
    for (const b of config?.bound ?? []) b.fn.setConfigured(true);
    return true;
  }

  #setInterface(iface: number, alternate: number): boolean {
    const found = this.#interfaceSpec(iface);
    if (!this.#active || !found) return false;
    if (!found.spec.alternates.some((a) => a.alternate === alternate)) return false;
    const old = found.spec.alternates.find((a) => a.alternate === this.alternateSetting(iface));
    const endpoints = new Set((old?.endpoints ?? []).map((e) => e.address));
    this.#queues.flush(TransferStatus.Cancelled, endpoints);
    for (const ep of endpoints) {
      this.#halted.delete(ep);
      this.#wedged.delete(ep);
      this.#streams.delete(ep);
    }
    this.#alternates.set(iface, alternate);
    this.#mapEndpoints();
    found.owner.fn.setAlternate(iface - found.owner.firstInterface, alternate);
    return true;
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
        return ok(Buffer.from([this.configuration]));
      case StandardRequest.SetConfiguration:
        return this.#setConfiguration(s.wValue & 0xff) ? ok() : undefined;
      case StandardRequest.GetInterface: {
        if (!this.#active || !this.#interfaceSpec(s.wIndex & 0xff)) return undefined;
        return ok(Buffer.from([this.alternateSetting(s.wIndex & 0xff)]));
      }
      case StandardRequest.SetInterface:
        return this.#setInterface(s.wIndex & 0xff, s.wValue) ? ok() : undefined;
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
          if (set) this.#halt(ep);
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
        return ok(this.#otherSpeedConfigs[index]);
      case DescriptorType.Bos:
        return ok(this.#bos);
      default:
        return undefined;
    }
  }
}

/**
 * Standard requests are the device's, except GET_DESCRIPTOR to an interface: class descriptors
 * such as HID's report descriptor belong to the function.
 */
function isStandardForDevice(s: SetupPacket): boolean {
  if ((s.bmRequestType & RequestType.TypeMask) !== RequestType.Standard) return false;
  const recipient = s.bmRequestType & RequestType.RecipientMask;
  return !(recipient === RequestType.Interface && s.bRequest === StandardRequest.GetDescriptor);
}

/** Streams a bulk endpoint declares in its SuperSpeed companion (2^MaxStreams), 0 for none. */
function maxStreams(e: EndpointSpec): number {
  return maxStreamsOf({ type: e.type, companionAttributes: e.companion?.attributes });
}

function failNow(t: Transfer, status: TransferStatus): Promise<void> {
  t.fail(status);
  return Promise.resolve();
}
