import { Status, PacketType as T } from '../../protocol/usbredir/constants.js';
import type { SetAltSettingPacket } from '../../protocol/usbredir/packets.js';
import { statusToRedir } from '../../protocol/usbredir/status.js';
import { RequestType, type SetupPacket, StandardRequest } from '../../usb/setup.js';
import { TransferStatus } from '../../usb/status.js';
import { Transfer } from '../../usb/transfer.js';
import type { HostContext } from './context.js';
import { quiesce, resetDevice } from './quiesce.js';

type AltSettingReply = (status: number, alt: number) => void;

/** set/get_configuration, set/get_alt_setting and reset, done as standard requests on the device. */
export class ConfigurationRequests {
  readonly #host: HostContext;

  constructor(host: HostContext) {
    this.#host = host;
  }

  async setConfiguration(id: bigint, configuration: number): Promise<void> {
    const { device, guest } = this.#host;
    let status: number = Status.Success;
    if (!guest.attached) {
      status = Status.IoError;
    } else if (device.configuration !== configuration) {
      await quiesce(this.#host);
      const t = await this.#standardRequest({
        bmRequestType: RequestType.Standard | RequestType.Device,
        bRequest: StandardRequest.SetConfiguration,
        wValue: configuration,
        wIndex: 0,
        wLength: 0,
      });
      status = statusToRedir(t.status);
      if (t.status === TransferStatus.Ok) this.#host.bulkStreams.forget();
      if (t.status === TransferStatus.Ok && !guest.refresh()) status = Status.IoError;
      if (t.status === TransferStatus.Ok) guest.sendInfo();
    }
    this.#host.send({ type: T.ConfigurationStatus, id, status, configuration: device.configuration });
  }

  async getConfiguration(id: bigint): Promise<void> {
    const { device, guest } = this.#host;
    if (!guest.attached) {
      this.#host.send({ type: T.ConfigurationStatus, id, status: Status.IoError, configuration: device.configuration });
      return;
    }
    const t = await this.#standardRequest({
      bmRequestType: RequestType.DirIn | RequestType.Standard | RequestType.Device,
      bRequest: StandardRequest.GetConfiguration,
      wValue: 0,
      wIndex: 0,
      wLength: 1,
    });
    const ok = t.status === TransferStatus.Ok && t.actualLength >= 1;
    this.#host.send({
      type: T.ConfigurationStatus,
      id,
      status: ok ? Status.Success : statusToRedir(t.status === TransferStatus.Ok ? TransferStatus.IoError : t.status),
      configuration: ok ? t.data[0]! : device.configuration,
    });
  }

  async setAltSetting(p: SetAltSettingPacket): Promise<void> {
    const reply = this.#altSettingReply(p.id, p.interface);
    if (!reply) return;
    const endpoints = this.#host.guest.interfaceEndpoints(p.interface);
    await quiesce(this.#host, endpoints);
    const t = await this.#standardRequest({
      bmRequestType: RequestType.Standard | RequestType.Interface,
      bRequest: StandardRequest.SetInterface,
      wValue: p.alt,
      wIndex: p.interface,
      wLength: 0,
    });
    let status = statusToRedir(t.status);
    if (t.status === TransferStatus.Ok) {
      this.#host.bulkStreams.forget(endpoints);
      if (!this.#host.guest.refresh()) status = Status.IoError;
      this.#host.guest.sendInfo();
    }
    reply(status, this.#host.device.alternateSetting(p.interface));
  }

  async getAltSetting(id: bigint, iface: number): Promise<void> {
    const reply = this.#altSettingReply(id, iface);
    if (!reply) return;
    const t = await this.#standardRequest({
      bmRequestType: RequestType.DirIn | RequestType.Standard | RequestType.Interface,
      bRequest: StandardRequest.GetInterface,
      wValue: 0,
      wIndex: iface,
      wLength: 1,
    });
    if (t.status === TransferStatus.Ok && t.actualLength >= 1) reply(Status.Success, t.data[0]!);
    else reply(t.status === TransferStatus.Ok ? Status.IoError : statusToRedir(t.status), 0xff);
  }

  async reset(): Promise<void> {
    const { guest, streams, pending, transfers } = this.#host;
    if (!guest.attached) return;
    // Running streams are reported stalled so the guest restarts them after the reset.
    streams.stopAll(true);
    pending.cancelAll();
    await transfers.drain();
    await resetDevice(this.#host);
    this.#host.bulkStreams.forget();
    guest.refresh();
  }

  /** The alt_setting_status sender for a request, or undefined once refused (detached, unknown interface). */
  #altSettingReply(id: bigint, iface: number): AltSettingReply | undefined {
    const reply: AltSettingReply = (status, alt) =>
      this.#host.send({ type: T.AltSettingStatus, id, status, interface: iface, alt });
    if (!this.#host.guest.attached) {
      reply(Status.IoError, 0xff);
      return undefined;
    }
    if (!this.#host.guest.hasInterface(iface)) {
      reply(Status.Inval, 0xff);
      return undefined;
    }
    return reply;
  }

  async #standardRequest(setup: SetupPacket): Promise<Transfer> {
    const isIn = (setup.bmRequestType & RequestType.DirIn) !== 0;
    const t = new Transfer({ type: 'control', endpoint: isIn ? 0x80 : 0x00, setup, length: setup.wLength });
    await this.#host.transfers.submit(t);
    return t;
  }
}
