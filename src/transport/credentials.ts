import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import tls from 'node:tls';

/** A credential file that cannot be used: the message is one line naming the flag, file and why. */
export class CredentialError extends Error {
  override name = 'CredentialError';
}

/** How a listener secures its connections (none: plain TCP). */
export type ListenSecurity =
  /** TLS with this certificate; with `ca`, clients must present a certificate it signed (mutual TLS). */
  | { kind: 'x509'; cert: Buffer; key: Buffer; ca?: Buffer }
  /** TLS with pre-shared keys by identity, no certificates. */
  | { kind: 'psk'; keys: ReadonlyMap<string, Buffer> };

/** How usbwire secures a connection it makes (none: plain TCP). */
export type ConnectSecurity =
  /** TLS; the server is verified against `ca` (default: the system's CAs); cert+key: our client certificate. */
  { kind: 'x509'; cert?: Buffer; key?: Buffer; ca?: Buffer } | { kind: 'psk'; identity: string; key: Buffer };

/** The files as given, each with the flag that named it (for messages). */
export interface CredentialFlags {
  cert?: { flag: string; path: string };
  key?: { flag: string; path: string };
  ca?: { flag: string; path: string };
  pskFile?: { flag: string; path: string };
  pskIdentity?: { flag: string; value: string };
}

type Warn = (message: string) => void;
type Named = { flag: string; path: string };

/** OpenSSL's limits (PSK_MAX_IDENTITY_LEN, and a key far above any real one). */
const MAX_IDENTITY_BYTES = 128;
const MAX_PSK_BYTES = 256;
/** Shorter keys are guessable offline from one captured handshake. */
const MIN_PSK_BYTES = 16;

function readCredential(f: Named, secret: boolean, warn: Warn): Buffer {
  let data: Buffer;
  try {
    data = readFileSync(f.path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'no such file'
        : code === 'EACCES'
          ? 'permission denied'
          : code === 'EISDIR'
            ? 'is a directory'
            : (err as Error).message;
    throw new CredentialError(`${f.flag} ${f.path}: ${why}`);
  }
  if (secret && (statSync(f.path).mode & 0o077) !== 0) {
    warn(`${f.flag} ${f.path}: readable by other users; chmod 600 it`);
  }
  return data;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

function parseCertificates(f: Named, data: Buffer, warn: Warn): X509Certificate[] {
  const blocks = data.toString('latin1').match(PEM_CERT) ?? [];
  if (blocks.length === 0) {
    throw new CredentialError(`${f.flag} ${f.path}: no PEM certificate in it (expected "-----BEGIN CERTIFICATE-----")`);
  }
  return blocks.map((pem, i) => {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(pem);
    } catch (err) {
      const which = blocks.length > 1 ? ` (certificate ${i + 1})` : '';
      throw new CredentialError(`${f.flag} ${f.path}${which}: malformed certificate: ${(err as Error).message}`);
    }
    const now = Date.now();
    if (Date.parse(cert.validTo) < now) warn(`${f.flag} ${f.path}: certificate expired on ${cert.validTo}`);
    else if (Date.parse(cert.validFrom) > now)
      warn(`${f.flag} ${f.path}: certificate not valid before ${cert.validFrom}`);
    return cert;
  });
}

function parseKey(f: Named, data: Buffer): KeyObject {
  try {
    return createPrivateKey(data);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ERR_MISSING_PASSPHRASE' || /ENCRYPTED/.test(data.toString('latin1'))) {
      throw new CredentialError(`${f.flag} ${f.path}: the key is encrypted; give an unencrypted one (openssl pkey)`);
    }
    throw new CredentialError(`${f.flag} ${f.path}: not a PEM private key (${e.message})`);
  }
}

/** Certificate + key (+ CA): read, parsed and checked to belong together. */
function loadX509(cert: Named, key: Named, ca: Named | undefined, warn: Warn) {
  const certPem = readCredential(cert, false, warn);
  const keyPem = readCredential(key, true, warn);
  const [leaf] = parseCertificates(cert, certPem, warn);
  const keyObject = parseKey(key, keyPem);
  if (!leaf!.checkPrivateKey(keyObject)) {
    throw new CredentialError(`${key.flag} ${key.path}: not the key of the certificate in ${cert.flag} ${cert.path}`);
  }
  const caPem = ca ? loadCa(ca, warn) : undefined;
  checkContext({ cert: certPem, key: keyPem, ...(caPem ? { ca: caPem } : {}) }, cert);
  return { cert: certPem, key: keyPem, ...(caPem ? { ca: caPem } : {}) };
}

function loadCa(ca: Named, warn: Warn): Buffer {
  const pem = readCredential(ca, false, warn);
  parseCertificates(ca, pem, warn);
  return pem;
}

/** Whatever OpenSSL still objects to (a key type it cannot use, say), as one line. */
function checkContext(options: tls.SecureContextOptions, f: Named): void {
  try {
    tls.createSecureContext(options);
  } catch (err) {
    throw new CredentialError(`${f.flag} ${f.path}: ${(err as Error).message}`);
  }
}

/**
 * A PSK file as QEMU's tls-creds-psk and GnuTLS's psktool write it: one `identity:hexkey` per
 * line. Blank lines and lines starting with # are skipped.
 */
export function parsePskFile(f: Named, text: string): Map<string, Buffer> {
  const keys = new Map<string, Buffer>();
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const where = `${f.flag} ${f.path} line ${i + 1}`;
    const colon = line.lastIndexOf(':');
    if (colon < 0) throw new CredentialError(`${where}: expected identity:hexkey`);
    const identity = line.slice(0, colon);
    const hex = line.slice(colon + 1);
    if (identity === '' || /\s/.test(identity) || Buffer.byteLength(identity) > MAX_IDENTITY_BYTES) {
      throw new CredentialError(`${where}: bad identity "${identity}" (1-${MAX_IDENTITY_BYTES} bytes, no spaces)`);
    }
    if (!/^[0-9a-fA-F]*$/.test(hex) || hex.length % 2 !== 0 || hex.length === 0) {
      throw new CredentialError(`${where}: the key of "${identity}" is not hex (an even number of 0-9a-f digits)`);
    }
    const key = Buffer.from(hex, 'hex');
    if (key.length < MIN_PSK_BYTES || key.length > MAX_PSK_BYTES) {
      throw new CredentialError(
        `${where}: the key of "${identity}" is ${key.length} bytes; use ${MIN_PSK_BYTES}-${MAX_PSK_BYTES} (openssl rand -hex 32)`,
      );
    }
    if (keys.has(identity)) throw new CredentialError(`${where}: identity "${identity}" appears twice`);
    keys.set(identity, key);
  });
  if (keys.size === 0) throw new CredentialError(`${f.flag} ${f.path}: no identity:hexkey line in it`);
  return keys;
}

function loadPsk(f: Named, warn: Warn): Map<string, Buffer> {
  return parsePskFile(f, readCredential(f, true, warn).toString('utf8'));
}

/** The one key of `keys` to connect with: the named identity, or the only one. */
function pickPsk(f: Named, keys: ReadonlyMap<string, Buffer>, id: CredentialFlags['pskIdentity']) {
  if (id) {
    const key = keys.get(id.value);
    if (!key) throw new CredentialError(`${id.flag} ${id.value}: no such identity in ${f.path}`);
    return { kind: 'psk' as const, identity: id.value, key };
  }
  if (keys.size > 1) {
    throw new CredentialError(
      `${f.flag} ${f.path} has ${keys.size} identities: say which one to use with --psk-identity`,
    );
  }
  const [[identity, key]] = [...keys] as [[string, Buffer]];
  return { kind: 'psk' as const, identity, key };
}

function conflicts(f: CredentialFlags): void {
  const x509 = f.cert ?? f.key ?? f.ca;
  if (f.pskFile && x509) throw new CredentialError(`${f.pskFile.flag} and ${x509.flag} exclude each other`);
  if (f.cert && !f.key) throw new CredentialError(`${f.cert.flag} needs ${f.cert.flag.replace(/cert$/, 'key')} too`);
  if (f.key && !f.cert) throw new CredentialError(`${f.key.flag} needs ${f.key.flag.replace(/key$/, 'cert')} too`);
  if (f.pskIdentity && !f.pskFile) throw new CredentialError(`${f.pskIdentity.flag} needs --psk-file`);
}

/**
 * The server's credentials (`serve --tls-cert/--tls-key [--tls-ca] | --psk-file`), used to listen
 * and, for its connections out (--usbredir-connect, TLS remotes), as its client identity.
 * Undefined when no flag was given (plain TCP).
 */
export function loadServerCredentials(
  f: CredentialFlags,
  warn: Warn,
): { listen: ListenSecurity; connect: () => ConnectSecurity } | undefined {
  conflicts(f);
  if (f.ca && !f.cert) throw new CredentialError(`${f.ca.flag} needs --tls-cert and --tls-key (the server's own)`);
  if (f.cert && f.key) {
    const x = loadX509(f.cert, f.key, f.ca, warn);
    return { listen: { kind: 'x509', ...x }, connect: () => ({ kind: 'x509', ...x }) };
  }
  if (f.pskFile) {
    const file = f.pskFile;
    const keys = loadPsk(file, warn);
    // Only a connection out needs one identity: a file with many is fine for listening.
    if (f.pskIdentity) pickPsk(file, keys, f.pskIdentity);
    return { listen: { kind: 'psk', keys }, connect: () => pickPsk(file, keys, f.pskIdentity) };
  }
  return undefined;
}

/** A client's credentials (`tunnel --cert/--key/--ca | --psk-file [--psk-identity]`). */
export function loadClientCredentials(f: CredentialFlags, warn: Warn): ConnectSecurity {
  conflicts(f);
  if (f.pskFile) return pickPsk(f.pskFile, loadPsk(f.pskFile, warn), f.pskIdentity);
  const x = f.cert && f.key ? loadX509(f.cert, f.key, undefined, warn) : {};
  const ca = f.ca ? loadCa(f.ca, warn) : undefined;
  return { kind: 'x509', ...x, ...(ca ? { ca } : {}) };
}
