import { readFileSync } from 'node:fs';

/** Where distributions install the usb.ids database (Debian: misc, Fedora/Arch: hwdata). */
export const USB_IDS_PATHS = ['/usr/share/misc/usb.ids', '/usr/share/hwdata/usb.ids', '/usr/share/usb.ids'];

/** fgets(buf, 512, f) in names.c: longer lines arrive in pieces of at most 511 bytes. */
const LINE_PIECE = 511;

const isSpace = (c: string | undefined) => c === ' ' || (c !== undefined && c >= '\t' && c <= '\r');
const isHex = (c: string | undefined) => c !== undefined && /^[0-9a-fA-F]$/.test(c);

/**
 * The usb.ids names, read the way usbip's names.c reads them (first entry wins, the same line
 * kinds skipped), so listings match `usbip list` byte for byte. Text is kept as latin1: one
 * character per byte, whatever the file's encoding, and written back the same way.
 */
export class UsbIds {
  readonly #vendors = new Map<number, string>();
  readonly #products = new Map<number, string>();
  readonly #classes = new Map<number, string>();
  readonly #subclasses = new Map<number, string>();
  readonly #protocols = new Map<number, string>();

  /** The first database found, or an empty one (every name unknown). */
  static load(paths: readonly string[] = USB_IDS_PATHS): UsbIds {
    for (const path of paths) {
      let text: string;
      try {
        text = readFileSync(path, 'latin1');
      } catch {
        continue;
      }
      return UsbIds.parse(text);
    }
    return new UsbIds();
  }

  static parse(text: string): UsbIds {
    const ids = new UsbIds();
    const lines = text.split('\n');
    if (lines.at(-1) === '') lines.pop();
    for (const line of lines) {
      for (let at = 0; at <= line.length; at += LINE_PIECE) ids.#line(line.slice(at, at + LINE_PIECE));
    }
    return ids;
  }

  vendor(vendorId: number): string | undefined {
    return this.#vendors.get(vendorId);
  }
  product(vendorId: number, productId: number): string | undefined {
    return this.#products.get(vendorId * 0x10000 + productId);
  }
  class(classId: number): string | undefined {
    return this.#classes.get(classId);
  }
  subclass(classId: number, subclassId: number): string | undefined {
    return this.#subclasses.get((classId << 8) | subclassId);
  }
  protocol(classId: number, subclassId: number, protocolId: number): string | undefined {
    return this.#protocols.get((classId << 16) | (subclassId << 8) | protocolId);
  }

  // names.c parse() state: which section the indented lines belong to.
  #lastVendor = -1;
  #lastClass = -1;
  #lastSubclass = -1;

  #line(raw: string): void {
    const cr = raw.indexOf('\r');
    const buf = cr < 0 ? raw : raw.slice(0, cr);
    if (buf === '' || buf[0] === '#') return;
    // Kinds of lines names.c skips without leaving the current section.
    if (/^(PHYSDES |PHY |BIAS |R |VT|HID |HCC[\t-\r ]|AT[\t-\r ])/.test(buf)) return;
    // HID usages and languages: their indented lines belong to no vendor or class.
    if (buf.startsWith('L ') || buf.startsWith('HUT ')) {
      this.#section(-1, -1);
      return;
    }
    if (buf.startsWith('C ')) {
      const spec = hexAndName(buf, 2);
      if (!spec) return;
      add(this.#classes, spec.value & 0xff, spec.name);
      this.#section(-1, spec.value & 0xff);
      return;
    }
    if (isHex(buf[0])) {
      const spec = hexAndName(buf, 0);
      if (!spec) return;
      add(this.#vendors, spec.value & 0xffff, spec.name);
      this.#section(spec.value & 0xffff, -1);
      return;
    }
    if (buf[0] === '\t' && isHex(buf[1])) {
      const spec = hexAndName(buf, 1);
      if (!spec) return;
      if (this.#lastVendor !== -1) add(this.#products, this.#lastVendor * 0x10000 + (spec.value & 0xffff), spec.name);
      else if (this.#lastClass !== -1) {
        this.#lastSubclass = spec.value & 0xff;
        add(this.#subclasses, (this.#lastClass << 8) | this.#lastSubclass, spec.name);
      }
      return;
    }
    if (buf.startsWith('\t\t') && isHex(buf[2])) {
      const spec = hexAndName(buf, 2);
      if (spec && this.#lastClass !== -1 && this.#lastSubclass !== -1) {
        add(this.#protocols, (this.#lastClass << 16) | (this.#lastSubclass << 8) | (spec.value & 0xff), spec.name);
      }
    }
  }

  #section(vendor: number, classId: number): void {
    this.#lastVendor = vendor;
    this.#lastClass = classId;
    this.#lastSubclass = -1;
  }
}

/** strtoul(cp, &cp, 16), then the name after the blanks; undefined when either is missing. */
function hexAndName(buf: string, from: number): { value: number; name: string } | undefined {
  let at = from;
  while (isSpace(buf[at])) at++;
  const start = at;
  while (isHex(buf[at])) at++;
  if (at === start) return undefined;
  const value = Number.parseInt(buf.slice(start, at).slice(-8), 16);
  while (isSpace(buf[at])) at++;
  if (at >= buf.length) return undefined;
  return { value, name: buf.slice(at) };
}

function add(map: Map<number, string>, key: number, name: string): void {
  if (!map.has(key)) map.set(key, name);
}

/** usbip_names_get_product: "vendor : product (vvvv:pppp)". */
export function productName(ids: UsbIds, vendorId: number, productId: number): string {
  const product = ids.product(vendorId, productId) ?? 'unknown product';
  const vendor = ids.vendor(vendorId) ?? 'unknown vendor';
  return `${vendor} : ${product} (${hex(vendorId, 4)}:${hex(productId, 4)})`;
}

/** usbip_names_get_class: "class / subclass / protocol (cc/ss/pp)". */
export function className(ids: UsbIds, classId: number, subclassId: number, protocolId: number): string {
  const code = `(${hex(classId, 2)}/${hex(subclassId, 2)}/${hex(protocolId, 2)})`;
  if (classId === 0 && subclassId === 0 && protocolId === 0) return `(Defined at Interface level) ${code}`;
  const p = ids.protocol(classId, subclassId, protocolId) ?? 'unknown protocol';
  const s = ids.subclass(classId, subclassId) ?? 'unknown subclass';
  const c = ids.class(classId) ?? 'unknown class';
  return `${c} / ${s} / ${p} ${code}`;
}

function hex(n: number, width: number): string {
  return n.toString(16).padStart(width, '0');
}
