/**
 * USB Attached SCSI information units (UAS-2, big-endian; torvalds/linux include/linux/usb/uas.h).
 * Pure: bytes in, IUs out, and back.
 */

export const IuId = {
  Command: 0x01,
  Sense: 0x03,
  Response: 0x04,
  TaskManagement: 0x05,
  ReadReady: 0x06,
  WriteReady: 0x07,
} as const;

/** bPipeID of the Pipe Usage descriptor that follows each UAS endpoint. */
export const PipeId = { Command: 1, Status: 2, DataIn: 3, DataOut: 4 } as const;

export const TaskAttribute = { Simple: 0, HeadOfQueue: 1, Ordered: 2, Aca: 4 } as const;

export const TaskFunction = {
  AbortTask: 0x01,
  AbortTaskSet: 0x02,
  ClearTaskSet: 0x04,
  LogicalUnitReset: 0x08,
  ITNexusReset: 0x10,
  ClearAca: 0x40,
  QueryTask: 0x80,
  QueryTaskSet: 0x81,
  QueryAsyncEvent: 0x82,
} as const;

export const ResponseCode = {
  Complete: 0x00,
  InvalidIu: 0x02,
  NotSupported: 0x04,
  Failed: 0x05,
  Succeeded: 0x08,
  IncorrectLun: 0x09,
  OverlappedTag: 0x0a,
} as const;

export const COMMAND_IU_SIZE = 32;
export const TASK_MANAGEMENT_IU_SIZE = 16;
const SENSE_IU_HEADER = 16;

export interface CommandIu {
  kind: 'command';
  tag: number;
  attribute: number;
  /** LUN as Linux and QEMU use it: byte 1 of the 8-byte field (byte 0 must be 0). */
  lun: number;
  cdb: Buffer;
}

export interface TaskManagementIu {
  kind: 'task-management';
  tag: number;
  function: number;
  taskTag: number;
  lun: number;
}

/** An IU the device cannot use; `tag` is set when the IU was long enough to carry one. */
export interface BadIu {
  kind: 'bad';
  tag: number | undefined;
  reason: string;
}

export type HostIu = CommandIu | TaskManagementIu | BadIu;

/** LUN of an 8-byte SAM LUN field in single-level format, or -1 when it is not one we address. */
function decodeLun(b: Buffer, at: number): number {
  if (b[at] !== 0) return -1;
  for (let i = at + 2; i < at + 8; i++) if (b[i] !== 0) return -1;
  return b[at + 1]!;
}

/** Decode what the host sends on the command pipe. */
export function decodeHostIu(b: Buffer): HostIu {
  if (b.length < 4) return { kind: 'bad', tag: undefined, reason: `${b.length}-byte IU` };
  const tag = b.readUInt16BE(2);
  switch (b[0]) {
    case IuId.Command: {
      if (b.length < COMMAND_IU_SIZE) return { kind: 'bad', tag, reason: `${b.length}-byte COMMAND IU` };
      const additional = b[6]! & 0xfc;
      if (b.length < COMMAND_IU_SIZE + additional) {
        return { kind: 'bad', tag, reason: `COMMAND IU shorter than its ${additional} additional CDB bytes` };
      }
      const cdb = additional > 0 ? b.subarray(16, COMMAND_IU_SIZE + additional) : b.subarray(16, 32);
      return { kind: 'command', tag, attribute: b[4]! & 0x07, lun: decodeLun(b, 8), cdb };
    }
    case IuId.TaskManagement:
      if (b.length < TASK_MANAGEMENT_IU_SIZE) {
        return { kind: 'bad', tag, reason: `${b.length}-byte TASK MANAGEMENT IU` };
      }
      return { kind: 'task-management', tag, function: b[4]!, taskTag: b.readUInt16BE(6), lun: decodeLun(b, 8) };
    default:
      return { kind: 'bad', tag, reason: `IU id 0x${b[0]!.toString(16)} on the command pipe` };
  }
}

function header(id: number, tag: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  b[0] = id;
  b.writeUInt16BE(tag, 2);
  return b;
}

/** SENSE IU: the SCSI status of a command and, for CHECK CONDITION, its sense data. */
export function encodeSenseIu(tag: number, status: number, sense?: Buffer): Buffer {
  const length = sense?.length ?? 0;
  const b = header(IuId.Sense, tag, SENSE_IU_HEADER + length);
  b[6] = status;
  b.writeUInt16BE(length, 14);
  sense?.copy(b, SENSE_IU_HEADER);
  return b;
}

export function encodeResponseIu(tag: number, code: number, additional = 0): Buffer {
  const b = header(IuId.Response, tag, 8);
  b.writeUIntBE(additional & 0xffffff, 4, 3);
  b[7] = code;
  return b;
}

export function encodeReadyIu(tag: number, direction: 'in' | 'out'): Buffer {
  return header(direction === 'in' ? IuId.ReadReady : IuId.WriteReady, tag, 4);
}

/** Pipe Usage descriptor (class-specific endpoint descriptor 0x24). */
export function pipeUsage(pipe: number): Buffer {
  return Buffer.from([4, 0x24, pipe, 0]);
}

/** What the host sends, for tests and for initiators (our own UAS host side). */
export function encodeCommandIu(tag: number, cdb: Buffer, opts: { lun?: number; attribute?: number } = {}): Buffer {
  const additional = Math.max(0, Math.ceil((cdb.length - 16) / 4) * 4);
  const b = header(IuId.Command, tag, COMMAND_IU_SIZE + additional);
  b[4] = (opts.attribute ?? TaskAttribute.Simple) & 0x07;
  b[6] = additional;
  b[9] = opts.lun ?? 0;
  cdb.copy(b, 16);
  return b;
}

export function encodeTaskManagementIu(tag: number, fn: number, taskTag: number, lun = 0): Buffer {
  const b = header(IuId.TaskManagement, tag, TASK_MANAGEMENT_IU_SIZE);
  b[4] = fn;
  b.writeUInt16BE(taskTag, 6);
  b[9] = lun;
  return b;
}

/** What the device sends on the status pipe, decoded (for initiators and tests). */
export type DeviceIu =
  | { kind: 'sense'; tag: number; status: number; sense: Buffer }
  | { kind: 'response'; tag: number; code: number }
  | { kind: 'read-ready' | 'write-ready'; tag: number }
  | { kind: 'bad'; reason: string };

export function decodeDeviceIu(b: Buffer): DeviceIu {
  if (b.length < 4) return { kind: 'bad', reason: `${b.length}-byte IU` };
  const tag = b.readUInt16BE(2);
  switch (b[0]) {
    case IuId.Sense: {
      if (b.length < SENSE_IU_HEADER) return { kind: 'bad', reason: `${b.length}-byte SENSE IU` };
      const length = Math.min(b.readUInt16BE(14), b.length - SENSE_IU_HEADER);
      return { kind: 'sense', tag, status: b[6]!, sense: b.subarray(SENSE_IU_HEADER, SENSE_IU_HEADER + length) };
    }
    case IuId.Response:
      if (b.length < 8) return { kind: 'bad', reason: `${b.length}-byte RESPONSE IU` };
      return { kind: 'response', tag, code: b[7]! };
    case IuId.ReadReady:
      return { kind: 'read-ready', tag };
    case IuId.WriteReady:
      return { kind: 'write-ready', tag };
    default:
      return { kind: 'bad', reason: `IU id 0x${b[0]!.toString(16)} on the status pipe` };
  }
}
