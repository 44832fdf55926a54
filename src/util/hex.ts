/** Lower-case hex, zero-padded: a byte ("0a"), a 16-bit id ("046d"). */
export function hex2(n: number): string {
  return n.toString(16).padStart(2, '0');
}

export function hex4(n: number): string {
  return n.toString(16).padStart(4, '0');
}
