// Credential files: each bad one is one line naming the flag, the file and what is wrong; the
// CLI turns it into a non-zero exit before anything listens.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseServeArgs } from '../../src/cli/args.js';
import { parseRemoteUrl } from '../../src/client/remote-url.js';
import {
  CredentialError,
  type CredentialFlags,
  loadClientCredentials,
  loadServerCredentials,
  parsePskFile,
} from '../../src/transport/credentials.js';
import { makePki, makePskFile, type Pki } from '../support/tls-pki.js';

const root = mkdtempSync(join(tmpdir(), 'usbwire-creds-'));
let pki: Pki;
const bin = resolve(dirname(fileURLToPath(import.meta.url)), '../../../bin/usbwire.js');

before(() => {
  pki = makePki(root);
});
after(() => rmSync(root, { recursive: true, force: true }));

const f = (flag: string, path: string) => ({ flag, path });
const server = (c: CredentialFlags, warnings: string[] = []) => loadServerCredentials(c, (m) => warnings.push(m));

function file(name: string, content: string, mode = 0o600): string {
  const p = join(root, name);
  mkdirSync(dirname(p), { recursive: true });
  writeFileSync(p, content);
  chmodSync(p, mode);
  return p;
}

function rejects(c: CredentialFlags, re: RegExp): void {
  assert.throws(
    () => server(c),
    (err: unknown) => err instanceof CredentialError && re.test(err.message) && !err.message.includes('\n'),
  );
}

test('certificate, key and CA load; the CA makes it mutual; connections out use the same identity', () => {
  const s = server({
    cert: f('--tls-cert', pki.server.cert),
    key: f('--tls-key', pki.server.key),
    ca: f('--tls-ca', pki.ca),
  });
  assert.equal(s?.listen.kind, 'x509');
  assert.ok(s?.listen.kind === 'x509' && s.listen.ca);
  const out = s!.connect();
  assert.ok(out.kind === 'x509' && out.cert && out.key && out.ca);
  assert.equal(server({}), undefined, 'no flags: plain TCP');
});

test('bad certificate files: missing, not PEM, malformed, key of another certificate, encrypted key', () => {
  const key = f('--tls-key', pki.server.key);
  rejects({ cert: f('--tls-cert', join(root, 'nope.pem')), key }, /^--tls-cert .*nope\.pem: no such file$/);
  rejects({ cert: f('--tls-cert', root), key }, /is a directory/);
  rejects({ cert: f('--tls-cert', file('text.pem', 'hello\n')), key }, /no PEM certificate in it/);
  const broken = readFileSync(pki.server.cert, 'latin1').replace(/[A-Za-z]{8}(?=\n)/, 'AAAAAAAA');
  rejects(
    { cert: f('--tls-cert', file('broken.pem', broken)), key },
    /^--tls-cert .*broken\.pem: malformed certificate/,
  );
  rejects(
    { cert: f('--tls-cert', pki.server.cert), key: f('--tls-key', pki.client.key) },
    /^--tls-key .*client-key\.pem: not the key of the certificate in --tls-cert/,
  );
  rejects(
    { cert: f('--tls-cert', pki.server.cert), key: f('--tls-key', pki.server.cert) },
    /^--tls-key .*: not a PEM private key/,
  );
  const enc = spawnSync('openssl', ['pkey', '-in', pki.server.key, '-aes256', '-passout', 'pass:x'], {
    encoding: 'utf8',
  }).stdout;
  rejects(
    { cert: f('--tls-cert', pki.server.cert), key: f('--tls-key', file('enc.pem', enc)) },
    /the key is encrypted/,
  );
  rejects(
    { cert: f('--tls-cert', pki.server.cert), key, ca: f('--tls-ca', file('ca.txt', 'junk')) },
    /^--tls-ca .*: no PEM certificate/,
  );
});

test('flag combinations: cert without key, CA without cert, PSK with certificates', () => {
  rejects({ cert: f('--tls-cert', pki.server.cert) }, /--tls-cert needs --tls-key too/);
  rejects({ key: f('--tls-key', pki.server.key) }, /--tls-key needs --tls-cert too/);
  rejects({ ca: f('--tls-ca', pki.ca) }, /--tls-ca needs --tls-cert and --tls-key/);
  const psk = makePskFile(join(root, 'p1'), ['a']).path;
  rejects(
    { pskFile: f('--psk-file', psk), cert: f('--tls-cert', pki.server.cert), key: f('--tls-key', pki.server.key) },
    /exclude each other/,
  );
});

test('PSK files: identity:hexkey lines, comments; bad hex, short keys, duplicates, empty files refused by line', () => {
  const pf = f('--psk-file', 'keys.psk');
  const keys = parsePskFile(pf, `# made with psktool\nalice:${'ab'.repeat(32)}\n\nbob:${'0F'.repeat(16)}\r\n`);
  assert.deepEqual([...keys.keys()], ['alice', 'bob']);
  assert.equal(keys.get('bob')!.toString('hex'), '0f'.repeat(16));
  const bad = (text: string, re: RegExp) =>
    assert.throws(
      () => parsePskFile(pf, text),
      (e: unknown) => e instanceof CredentialError && re.test(e.message),
    );
  bad(`alice:${'zz'.repeat(32)}`, /^--psk-file keys\.psk line 1: the key of "alice" is not hex/);
  bad(`alice:${'a'.repeat(63)}`, /not hex/);
  bad('alice:abcd', /line 1: the key of "alice" is 2 bytes; use 16-256/);
  bad(`a:${'11'.repeat(16)}\na:${'22'.repeat(16)}`, /line 2: identity "a" appears twice/);
  bad('# nothing\n', /no identity:hexkey line/);
  bad(`no colon here`, /line 1: expected identity:hexkey/);
  bad(`:${'11'.repeat(16)}`, /bad identity/);
});

test('PSK: listening takes every identity; connecting out needs one (--psk-identity or the only one)', () => {
  const two = makePskFile(join(root, 'p2'), ['alice', 'bob']);
  const s = server({ pskFile: f('--psk-file', two.path) });
  assert.equal(s?.listen.kind === 'psk' && s.listen.keys.size, 2);
  assert.throws(() => s!.connect(), /has 2 identities: say which one to use with --psk-identity/);
  const chosen = server({ pskFile: f('--psk-file', two.path), pskIdentity: { flag: '--psk-identity', value: 'bob' } });
  const out = chosen!.connect();
  assert.ok(out.kind === 'psk' && out.identity === 'bob' && out.key.equals(two.keys.get('bob')!));
  rejects(
    { pskFile: f('--psk-file', two.path), pskIdentity: { flag: '--psk-identity', value: 'eve' } },
    /--psk-identity eve: no such identity/,
  );
  const one = makePskFile(join(root, 'p3'), ['solo']);
  const c = loadClientCredentials({ pskFile: f('--psk-file', one.path) }, () => {});
  assert.ok(c.kind === 'psk' && c.identity === 'solo');
  const warnings: string[] = [];
  chmodSync(one.path, 0o644);
  server({ pskFile: f('--psk-file', one.path) }, warnings);
  assert.match(warnings.join('\n'), /readable by other users/);
});

test('serve flags and usbip+tls:// / usbredir+tls:// remote URLs', () => {
  const o = parseServeArgs([
    '--tls-cert',
    'c.pem',
    '--tls-key',
    'k.pem',
    '--tls-ca',
    'ca.pem',
    '--usbip',
    '0.0.0.0:3240',
  ]);
  assert.ok(o !== 'help');
  assert.deepEqual(o.credentials, {
    cert: { flag: '--tls-cert', path: 'c.pem' },
    key: { flag: '--tls-key', path: 'k.pem' },
    ca: { flag: '--tls-ca', path: 'ca.pem' },
  });
  assert.deepEqual(parseRemoteUrl('usbip+tls://h:3241/1-2'), {
    kind: 'usbip',
    address: { host: 'h', port: 3241 },
    busid: '1-2',
    tls: true,
  });
  assert.deepEqual(parseRemoteUrl('usbredir+tls://h:4000'), {
    kind: 'usbredir',
    address: { host: 'h', port: 4000 },
    tls: true,
  });
  assert.deepEqual(parseRemoteUrl('usbip://h/1-1'), {
    kind: 'usbip',
    address: { host: 'h', port: 3240 },
    busid: '1-1',
  });
  assert.throws(() => parseRemoteUrl('usbredir-listen+tls://h:1'), /unknown scheme "usbredir-listen\+tls:\/\/"/);
});

function cli(args: string[]) {
  return spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 20_000 });
}

test('CLI: a bad credential file is one line and exit 2 before anything listens', () => {
  const r = cli([
    'serve',
    '--usbip',
    '127.0.0.1:9',
    '--control',
    'none',
    '--tls-cert',
    join(root, 'missing.pem'),
    '--tls-key',
    pki.server.key,
  ]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^usbwire: --tls-cert .*missing\.pem: no such file\n$/);
  assert.doesNotMatch(r.stdout, /listening/);
  const p = file('bad.psk', 'alice:xyz\n');
  const r2 = cli(['tunnel', '--to', 'tls://127.0.0.1:1', '--listen', '127.0.0.1:9', '--psk-file', p]);
  assert.equal(r2.status, 2);
  assert.match(r2.stderr, /^usbwire: --psk-file .*bad\.psk line 1: the key of "alice" is not hex/);
  const r3 = cli(['tunnel', '--listen', '127.0.0.1:0']);
  assert.equal(r3.status, 2);
  assert.match(r3.stderr, /tunnel needs --to tls:\/\/SERVER/);
});
