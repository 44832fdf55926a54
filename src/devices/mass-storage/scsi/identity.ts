import { createHash } from 'node:crypto';

/** What the logical unit says about itself in INQUIRY and its VPD pages. */
export interface DiskIdentity {
  /** T10 vendor identification, at most 8 printable ASCII characters. */
  readonly vendor: string;
  /** At most 16 printable ASCII characters. */
  readonly product: string;
  /** At most 4 printable ASCII characters. */
  readonly revision: string;
  /** Unit serial number (VPD 0x80, NAA id in 0x83); at most 36 printable ASCII characters. */
  readonly serial?: string;
  /** RMB bit: removable medium (sd polls it with TEST UNIT READY, sends PREVENT ALLOW). */
  readonly removable: boolean;
  /** CMDQUE bit: set when the transport queues several commands (UAS), not for BOT. */
  readonly taggedQueuing: boolean;
}

export const DEFAULT_IDENTITY: DiskIdentity = {
  vendor: 'usbwire',
  product: 'Virtual Disk',
  revision: '1.0',
  removable: false,
  taggedQueuing: false,
};

const FIELD_LIMITS = { vendor: 8, product: 16, revision: 4, serial: 36 } as const;

/** Throws a descriptive error if a text field is too long or not printable ASCII. */
export function validateIdentity(identity: DiskIdentity): void {
  for (const field of Object.keys(FIELD_LIMITS) as (keyof typeof FIELD_LIMITS)[]) {
    const value = identity[field];
    if (value === undefined) continue;
    if (value.length > FIELD_LIMITS[field]) {
      throw new Error(`SCSI ${field} "${value}" is longer than ${FIELD_LIMITS[field]} characters`);
    }
    if (!/^[\x20-\x7e]*$/.test(value)) throw new Error(`SCSI ${field} "${value}" must be printable ASCII`);
  }
  if (identity.serial !== undefined && identity.serial.trim() === '') {
    throw new Error('SCSI serial must not be blank (omit it instead)');
  }
}

/** Space-padded ASCII field of exactly `width` bytes. */
export function asciiField(value: string, width: number): Buffer {
  return Buffer.from(value.padEnd(width, ' ').slice(0, width), 'ascii');
}

/**
 * 8-byte NAA designator of type 3 ("locally assigned": we own no IEEE OUI), stable for a
 * given vendor/product/serial so /dev/disk/by-id names survive restarts.
 */
export function naaLocallyAssigned(identity: DiskIdentity): Buffer {
  const digest = createHash('sha256')
    .update(`${identity.vendor}\0${identity.product}\0${identity.serial ?? ''}`)
    .digest();
  const naa = Buffer.from(digest.subarray(0, 8));
  naa[0] = 0x30 | (naa[0]! & 0x0f);
  return naa;
}
