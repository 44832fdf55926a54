import type { SafeRelease } from '../safe-release.js';
import type { ScsiDisk } from './scsi/scsi-disk.js';

/**
 * SafeRelease of a USB disk from its SCSI state: the host holds the disk while it has
 * prevented medium removal (Linux sd does so while the disk is mounted or open); eject is a
 * medium removal the host sees as UNIT ATTENTION then NOT READY, MEDIUM NOT PRESENT.
 */
export function diskSafeRelease(disk: ScsiDisk): SafeRelease {
  return {
    hold() {
      const since = disk.mediumLockedSince;
      if (!since) return undefined;
      return (
        `the host has locked the medium since ${since.toISOString()} ` +
        '(SCSI PREVENT ALLOW MEDIUM REMOVAL, prevent=1: Linux does this while the disk is mounted or open)'
      );
    },
    async eject() {
      await disk.removeMedium();
      return { noticed: disk.removalSeenByHost };
    },
    flush: () => disk.backend.flush(),
    restore: () => disk.insertMedium(),
  };
}
