import { readFileSync } from 'node:fs';

let cached: string | undefined;

/** usbwire's package version, for the hello version string. */
export function usbwireVersion(): string {
  if (cached) return cached;
  cached = '0.0.0';
  // Same relative path from src/server/usbredir and from dist/src/server/usbredir: try both.
  for (const rel of ['../../../package.json', '../../../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'usbwire' && pkg.version) {
        cached = pkg.version;
        break;
      }
    } catch {
      // not there: try the next one
    }
  }
  return cached;
}
