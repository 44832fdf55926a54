/** usbredirfilter: device filter rules, their string form and the allow/deny check. */

export interface FilterRule {
  /** -1 = any. */
  deviceClass: number;
  vendorId: number;
  productId: number;
  deviceVersionBcd: number;
  allow: boolean;
}

export class FilterParseError extends Error {
  override name = 'FilterParseError';
}

export interface FilterSeparators {
  /** Characters that separate the 5 values of a rule (usbredir wire: ","; QEMU's filter= property: ":"). */
  token: string;
  /** Characters that separate rules. */
  rule: string;
}

export const WIRE_SEPARATORS: FilterSeparators = { token: ',', rule: '|' };

/** strtok: the non-empty pieces between any of the separator characters. */
function strtok(s: string, separators: string): string[] {
  const out: string[] = [];
  let start = 0;
  for (let i = 0; i <= s.length; i++) {
    if (i === s.length || separators.includes(s[i]!)) {
      if (i > start) out.push(s.slice(start, i));
      start = i + 1;
    }
  }
  return out;
}

const SPACE = /^[ \t\n\v\f\r]*/;

/**
 * C strtol(token, &end, 0) that must consume the whole token: optional leading white space and
 * sign, "0x" hex, leading "0" octal, else decimal. Values outside the C int range are refused
 * (the C code would silently truncate them).
 */
function strtolWhole(token: string): number | undefined {
  let s = token.replace(SPACE, '');
  let sign = 1;
  if (s[0] === '+' || s[0] === '-') {
    if (s[0] === '-') sign = -1;
    s = s.slice(1);
  }
  let digits: RegExp;
  let base: number;
  if (/^0[xX][0-9a-fA-F]/.test(s)) {
    s = s.slice(2);
    digits = /^[0-9a-fA-F]+$/;
    base = 16;
  } else if (s.startsWith('0')) {
    digits = /^[0-7]+$/;
    base = 8;
  } else {
    digits = /^[0-9]+$/;
    base = 10;
  }
  if (!digits.test(s)) return undefined;
  const v = sign * Number.parseInt(s, base);
  if (!Number.isSafeInteger(v) || v < -0x80000000 || v > 0x7fffffff) return undefined;
  return v;
}

function inRange(v: number, max: number): boolean {
  return v >= -1 && v <= max;
}

/** usbredirfilter_verify: class -1..255, ids and version -1..65535. */
export function verifyRules(rules: readonly FilterRule[]): string | undefined {
  for (const [i, r] of rules.entries()) {
    if (!inRange(r.deviceClass, 0xff)) return `rule ${i + 1}: class ${r.deviceClass} out of range`;
    if (!inRange(r.vendorId, 0xffff)) return `rule ${i + 1}: vendor ${r.vendorId} out of range`;
    if (!inRange(r.productId, 0xffff)) return `rule ${i + 1}: product ${r.productId} out of range`;
    if (!inRange(r.deviceVersionBcd, 0xffff)) return `rule ${i + 1}: version ${r.deviceVersionBcd} out of range`;
  }
  return undefined;
}

/** usbredirfilter_string_to_rules. Throws FilterParseError. An empty string gives no rules. */
export function parseFilter(text: string, sep: FilterSeparators = WIRE_SEPARATORS): FilterRule[] {
  const rules: FilterRule[] = [];
  for (const ruleText of strtok(text, sep.rule)) {
    const tokens = strtok(ruleText, sep.token);
    if (tokens.length !== 5) {
      throw new FilterParseError(`filter rule "${ruleText}" has ${tokens.length} values, needs 5`);
    }
    const values = tokens.map((t) => {
      const v = strtolWhole(t);
      if (v === undefined) throw new FilterParseError(`filter rule "${ruleText}": "${t}" is not a number`);
      return v;
    });
    rules.push({
      deviceClass: values[0]!,
      vendorId: values[1]!,
      productId: values[2]!,
      deviceVersionBcd: values[3]!,
      allow: values[4] !== 0,
    });
  }
  const bad = verifyRules(rules);
  if (bad) throw new FilterParseError(bad);
  return rules;
}

function hex(v: number, width: number): string {
  return v === -1 ? '-1' : `0x${v.toString(16).padStart(width, '0')}`;
}

/** usbredirfilter_rules_to_string (without the C version's trailing rule separator). */
export function formatFilter(rules: readonly FilterRule[], sep: FilterSeparators = WIRE_SEPARATORS): string {
  const bad = verifyRules(rules);
  if (bad) throw new FilterParseError(bad);
  const t = sep.token[0]!;
  return rules
    .map((r) =>
      [
        hex(r.deviceClass, 2),
        hex(r.vendorId, 4),
        hex(r.productId, 4),
        hex(r.deviceVersionBcd, 4),
        r.allow ? '1' : '0',
      ].join(t),
    )
    .join(sep.rule[0]!);
}

export interface FilterDeviceInfo {
  deviceClass: number;
  deviceSubclass: number;
  deviceProtocol: number;
  vendorId: number;
  productId: number;
  deviceVersionBcd: number;
  /** Class triple of each interface (current alt setting of the active configuration). */
  interfaces: readonly { interfaceClass: number; interfaceSubclass: number; interfaceProtocol: number }[];
}

export interface FilterCheckFlags {
  /** No matching rule means allow (usbredirfilter_fl_default_allow). */
  defaultAllow?: boolean;
  /** Check non-boot HID interfaces of multi-interface devices too (usbredirfilter_fl_dont_skip_non_boot_hid). */
  dontSkipNonBootHid?: boolean;
}

export type FilterVerdict =
  | { allowed: true }
  | { allowed: false; reason: 'denied' | 'no-match' | 'invalid-rules'; rule?: number };

function checkClass(
  rules: readonly FilterRule[],
  cls: number,
  dev: FilterDeviceInfo,
  defaultAllow: boolean,
): FilterVerdict {
  for (const [i, r] of rules.entries()) {
    const match =
      (r.deviceClass === -1 || r.deviceClass === cls) &&
      (r.vendorId === -1 || r.vendorId === dev.vendorId) &&
      (r.productId === -1 || r.productId === dev.productId) &&
      (r.deviceVersionBcd === -1 || r.deviceVersionBcd === dev.deviceVersionBcd);
    if (match) return r.allow ? { allowed: true } : { allowed: false, reason: 'denied', rule: i };
  }
  return defaultAllow ? { allowed: true } : { allowed: false, reason: 'no-match' };
}

/** usbredirfilter_check: device class pass, then one pass per interface; first match wins. */
export function checkFilter(
  rules: readonly FilterRule[],
  dev: FilterDeviceInfo,
  flags: FilterCheckFlags = {},
): FilterVerdict {
  if (verifyRules(rules)) return { allowed: false, reason: 'invalid-rules' };
  const defaultAllow = flags.defaultAllow ?? false;
  // Composite (0x00) and IAD (0xEF) devices say nothing by their class: only interfaces count.
  if (dev.deviceClass !== 0x00 && dev.deviceClass !== 0xef) {
    const v = checkClass(rules, dev.deviceClass, dev, defaultAllow);
    if (!v.allowed) return v;
  }
  const ifaces = dev.interfaces;
  let skipped = 0;
  for (const iface of ifaces) {
    const nonBootHid =
      iface.interfaceClass === 0x03 && iface.interfaceSubclass === 0x00 && iface.interfaceProtocol === 0x00;
    if (!flags.dontSkipNonBootHid && ifaces.length > 1 && nonBootHid) {
      skipped++;
      continue;
    }
    const v = checkClass(rules, iface.interfaceClass, dev, defaultAllow);
    if (!v.allowed) return v;
  }
  // A device made only of skippable HID interfaces is still checked (usbredir 0.7.1 KVM fix).
  if (ifaces.length > 0 && skipped === ifaces.length) {
    return checkFilter(rules, dev, { ...flags, dontSkipNonBootHid: true });
  }
  return { allowed: true };
}
