import { readFileSync } from 'node:fs';

let cached: string | undefined;

/** usbwire's package version: the nearest usbwire package.json above this file (src or dist). */
export function usbwireVersion(): string {
  if (cached) return cached;
  let version = '0.0.0';
  for (let url = new URL('./', import.meta.url); url.pathname !== '/'; url = new URL('../', url)) {
    try {
      const pkg = JSON.parse(readFileSync(new URL('package.json', url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'usbwire' && pkg.version) {
        version = pkg.version;
        break;
      }
    } catch {
      // none here: look one level up
    }
  }
  cached = version;
  return cached;
}
