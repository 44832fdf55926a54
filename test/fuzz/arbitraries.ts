/** fast-check building blocks shared by the property tests (test/unit/*-property.test.ts). */
import fc from 'fast-check';

/** How many cases a property runs (USBWIRE_PROPERTY_RUNS raises it for a long run). */
export const RUNS = Number(process.env.USBWIRE_PROPERTY_RUNS ?? 300);

/** Records with Object.prototype, as the decoders build them (fast-check's default is a null prototype). */
export const rec = <T>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }) => fc.record(model, { noNullPrototype: true });
export const u8 = fc.integer({ min: 0, max: 0xff });
export const u16 = fc.integer({ min: 0, max: 0xffff });
export const u32 = fc.integer({ min: 0, max: 0xffffffff });
export const i32 = fc.integer({ min: -0x80000000, max: 0x7fffffff });
export const bytes = (length: number) =>
  fc.uint8Array({ minLength: length, maxLength: length }).map((a) => Buffer.from(a));

/** Push `input` in pieces cycling through `pieces`; a typed error ends it, anything else is rethrown. */
export function pushInPieces(
  push: (b: Buffer) => void,
  input: Uint8Array,
  pieces: readonly number[],
  isTyped: (err: unknown) => boolean,
): void {
  const b = Buffer.from(input);
  let at = 0;
  let i = 0;
  try {
    while (at < b.length) {
      const n = pieces[i++ % pieces.length]!;
      push(b.subarray(at, at + n));
      at += n;
    }
  } catch (err) {
    if (!isTyped(err)) throw err;
  }
}
