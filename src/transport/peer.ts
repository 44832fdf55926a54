import net from 'node:net';
import tls from 'node:tls';
import { remoteName } from './tcp.js';

/**
 * Who is on the other end of a connection, as far as the transport proved it: a client
 * certificate verified against --tls-ca, a pre-shared key identity, or only a source address
 * (plain TCP, or TLS without client certificates). Access control decides on this.
 */
export type PeerIdentity = (
  | {
      kind: 'cert';
      address: string;
      /** "CN=client1, O=Example" (the certificate's subject, RDNs in certificate order) */
      subject: string;
      commonName: string | undefined;
      /** subjectAltName entries as OpenSSL prints them: "DNS:host", "IP Address:10.0.0.5", "email:..." */
      altNames: string[];
      /** SHA-256 fingerprint, "AB:CD:..." */
      fingerprint256: string;
    }
  | { kind: 'psk'; address: string; identity: string }
  | { kind: 'address'; address: string; encrypted: boolean }
) & {
  /** What TLS negotiated ("TLSv1.3 TLS_AES_256_GCM_SHA384"); undefined on plain TCP. */
  tls?: string;
};

/** PSK identities of TLS sockets, recorded by the PSK callbacks (Node does not expose them). */
const pskIdentities = new WeakMap<tls.TLSSocket, string>();

export function recordPskIdentity(socket: tls.TLSSocket, identity: string): void {
  pskIdentities.set(socket, identity);
}

/** The identity of a connected socket (a TLS socket after its handshake). */
export function peerIdentity(socket: net.Socket): PeerIdentity {
  const address = remoteName(socket);
  if (!(socket instanceof tls.TLSSocket)) return { kind: 'address', address, encrypted: false };
  const negotiated = `${socket.getProtocol() ?? 'TLS'} ${socket.getCipher()?.standardName ?? ''}`.trim();
  const identity = pskIdentities.get(socket);
  if (identity !== undefined) return { kind: 'psk', address, identity, tls: negotiated };
  const cert = socket.authorized ? socket.getPeerX509Certificate() : undefined;
  if (!cert) return { kind: 'address', address, encrypted: true, tls: negotiated };
  const rdns = cert.subject.split('\n').filter((l) => l !== '');
  const cn = rdns.find((r) => r.startsWith('CN='));
  return {
    kind: 'cert',
    address,
    subject: rdns.join(', '),
    commonName: cn?.slice(3),
    altNames: cert.subjectAltName ? cert.subjectAltName.split(', ') : [],
    fingerprint256: cert.fingerprint256,
    tls: negotiated,
  };
}

/** For log lines: `10.0.0.5:41234 (certificate "CN=client1", DNS:client1; TLSv1.3 TLS_AES_256_GCM_SHA384)`. */
export function describePeer(peer: PeerIdentity): string {
  const tls = peer.tls ? `; ${peer.tls}` : '';
  switch (peer.kind) {
    case 'cert': {
      const alt = peer.altNames.length > 0 ? `, ${peer.altNames.join(', ')}` : '';
      return `${peer.address} (certificate "${peer.subject}"${alt}${tls})`;
    }
    case 'psk':
      return `${peer.address} (PSK identity "${peer.identity}"${tls})`;
    case 'address':
      return `${peer.address} (${peer.encrypted ? 'no client certificate' : 'plain TCP'}${tls})`;
  }
}

/** 127.0.0.0/8, ::1, localhost: addresses other machines cannot reach. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (net.isIPv4(host)) return host.startsWith('127.');
  const h = host.toLowerCase();
  return h === '::1' || h.startsWith('::ffff:127.');
}
