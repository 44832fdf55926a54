import { controlTransfer } from '../../usb/control.js';
import { DescriptorType, decodeStringDescriptor, parseDeviceDescriptor } from '../../usb/descriptors.js';
import type { UsbDevice } from '../../usb/device.js';
import { StandardRequest } from '../../usb/setup.js';
import type { UsbSpeed } from '../../usb/speed.js';
import { TransferStatus } from '../../usb/status.js';
import { createLogger } from '../../util/log.js';
import { EmulatedDevice } from '../emulated-device.js';
import type { ScsiTarget } from './bot-function.js';
import { BotInitiator, queuesEarlyTransfers } from './bot-initiator.js';
import { buildFixedSense, Sense } from './scsi/sense.js';
import { UasFunction } from './uas-function.js';

const log = createLogger('bot-as-uas');

export interface BotAsUasOptions {
  /** Speed shown to the host (default: the BOT device's). SuperSpeed gives the host bulk streams. */
  speed?: UsbSpeed;
}

/**
 * Presents a Bulk-Only mass storage device (real, remote or emulated) as a UAS device: the host
 * queues many commands (one round trip each over a link instead of BOT's three, and no waiting
 * for the previous one), and they are fed to the BOT device one at a time, each command's CBW,
 * data and CSW submitted back to back so the next starts as soon as the previous CSW is in.
 * A failed command's sense comes from the device's own REQUEST SENSE. Same VID:PID and strings.
 */
export async function presentBotAsUas(inner: UsbDevice, opts: BotAsUasOptions = {}): Promise<EmulatedDevice> {
  // usbwire's own BOT function queues early transfers; anything else gets one phase at a time.
  const initiator = await BotInitiator.open(inner, { pipelined: queuesEarlyTransfers(inner) });
  const desc = parseDeviceDescriptor(inner.descriptors.device);
  const [manufacturer, product, serial] = await Promise.all(
    [desc.iManufacturer, desc.iProduct, desc.iSerialNumber].map((i) => readString(inner, i)),
  );
  const target: ScsiTarget = {
    plan: (cdb) => initiator.planner.plan(cdb),
    async execute(cdb, dataOut) {
      const plan = initiator.planner.plan(cdb);
      const r = await initiator.execute(cdb, { ...plan, ...(dataOut ? { dataOut } : {}) });
      if (r.status === 'good') return { status: 'good', data: r.data };
      return { status: 'check-condition', sense: r.sense ?? buildFixedSense(Sense.CommunicationFailure) };
    },
    reset() {
      void initiator.reset();
    },
  };
  const dev = new EmulatedDevice({
    name: `${inner.name} (as UAS)`,
    speed: opts.speed ?? inner.speed,
    vendorId: desc.vendorId,
    productId: desc.productId,
    bcdDevice: desc.bcdDevice,
    ...(manufacturer ? { manufacturer } : {}),
    ...(product ? { product } : {}),
    ...(serial ? { serial } : {}),
    maxPowerMa: 100,
    functions: [new UasFunction(target)],
    onClose: async () => {
      initiator.close();
      await inner.close();
    },
  });
  inner.once('disconnect', () => {
    log.info(`${inner.name} went away`);
    void dev.close().then(() => dev.emit('disconnect'));
  });
  log.info(`${inner.name}: presented as UAS at ${dev.speed} speed`);
  return dev;
}

/** A string descriptor in US English, undefined when there is none or it cannot be read. */
async function readString(dev: UsbDevice, index: number): Promise<string | undefined> {
  if (index === 0) return undefined;
  const t = await controlTransfer(dev, {
    bmRequestType: 0x80,
    bRequest: StandardRequest.GetDescriptor,
    wValue: (DescriptorType.String << 8) | index,
    wIndex: 0x0409,
    wLength: 255,
  });
  if (t.status !== TransferStatus.Ok) return undefined;
  try {
    return decodeStringDescriptor(t.data.subarray(0, t.actualLength)) || undefined;
  } catch {
    return undefined;
  }
}
