/** REPORT LUNS parameter data: 8-byte header, then one 8-byte LUN per entry (SAM addressing). */
export function buildReportLuns(luns: readonly number[]): Buffer {
  const b = Buffer.alloc(8 + 8 * luns.length);
  b.writeUInt32BE(8 * luns.length, 0);
  luns.forEach((lun, i) => {
    const at = 8 + 8 * i;
    if (lun < 256) {
      b[at + 1] = lun; // peripheral device addressing, bus 0
    } else {
      b.writeUInt16BE(0x4000 | (lun & 0x3fff), at); // flat space addressing
    }
  });
  return b;
}
