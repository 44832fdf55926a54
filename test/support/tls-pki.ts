// Test certificates and PSK files, made with the openssl CLI in the layout QEMU's tls-creds-x509
// reads from its dir= (ca-cert.pem, server-cert.pem, server-key.pem, client-cert.pem,
// client-key.pem) and the psktool format tls-creds-psk reads (keys.psk: identity:hexkey).
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

function openssl(args: string[], cwd: string): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`);
}

/** EC P-256 keys: quick to make, and both OpenSSL and GnuTLS take them. */
const NEW_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

/** A self-signed CA in dir/ca-cert.pem (key: dir/ca-key.pem). */
export function makeCa(dir: string, name: string): void {
  mkdirSync(dir, { recursive: true });
  // QEMU's tls-creds-x509 checks the CA has basicConstraints CA:TRUE and keyCertSign.
  openssl(
    [
      'req',
      '-x509',
      ...NEW_KEY,
      '-keyout',
      'ca-key.pem',
      '-out',
      'ca-cert.pem',
      '-days',
      '30',
      '-subj',
      `/CN=${name}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
}

/**
 * A certificate signed by the CA in caDir, as dir/ROLE-cert.pem + dir/ROLE-key.pem, with the key
 * purpose QEMU checks for the role (serverAuth / clientAuth). A server certificate may also
 * authenticate as a client: usbwire uses its own one to connect out (--usbredir-connect).
 */
export function makeLeaf(
  caDir: string,
  dir: string,
  role: 'server' | 'client',
  cn: string,
  san = role === 'server' ? 'IP:127.0.0.1,DNS:localhost' : `DNS:${cn}`,
): { cert: string; key: string } {
  mkdirSync(dir, { recursive: true });
  const key = join(dir, `${role}-key.pem`);
  const cert = join(dir, `${role}-cert.pem`);
  const csr = join(dir, `${role}.csr`);
  const ext = join(dir, `${role}.ext`);
  openssl(['req', ...NEW_KEY, '-keyout', key, '-out', csr, '-subj', `/CN=${cn}/O=usbwire tests`], dir);
  writeFileSync(
    ext,
    'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n' +
      `extendedKeyUsage=${role === 'server' ? 'serverAuth,clientAuth' : 'clientAuth'}\nsubjectAltName=${san}\n`,
  );
  openssl(
    ['x509', '-req', '-in', csr, '-CA', join(caDir, 'ca-cert.pem'), '-CAkey', join(caDir, 'ca-key.pem')].concat([
      '-CAcreateserial',
      '-out',
      cert,
      '-days',
      '30',
      '-extfile',
      ext,
    ]),
    dir,
  );
  return { cert, key };
}

export interface Pki {
  /** dir with the CA, the server's and the client's certificates (QEMU's layout) */
  dir: string;
  ca: string;
  server: { cert: string; key: string };
  client: { cert: string; key: string };
  /** same layout, another CA: certificates the first CA did not sign */
  rogue: { dir: string; ca: string; server: { cert: string; key: string }; client: { cert: string; key: string } };
}

export function makePki(root: string, clientCn = 'client1'): Pki {
  const dir = join(root, 'pki');
  makeCa(dir, 'usbwire test CA');
  const rogueDir = join(root, 'rogue');
  makeCa(rogueDir, 'someone else');
  return {
    dir,
    ca: join(dir, 'ca-cert.pem'),
    server: makeLeaf(dir, dir, 'server', 'usbwire server'),
    client: makeLeaf(dir, dir, 'client', clientCn),
    rogue: {
      dir: rogueDir,
      ca: join(rogueDir, 'ca-cert.pem'),
      server: makeLeaf(rogueDir, rogueDir, 'server', 'usbwire server'),
      client: makeLeaf(rogueDir, rogueDir, 'client', clientCn),
    },
  };
}

/** dir/keys.psk with `identity:hexkey` lines (mode 0600); returns the keys. */
export function makePskFile(dir: string, identities: string[]): { path: string; keys: Map<string, Buffer> } {
  mkdirSync(dir, { recursive: true });
  const keys = new Map(identities.map((id) => [id, randomBytes(32)]));
  const path = join(dir, 'keys.psk');
  writeFileSync(path, [...keys].map(([id, k]) => `${id}:${k.toString('hex')}\n`).join(''), { mode: 0o600 });
  return { path, keys };
}
