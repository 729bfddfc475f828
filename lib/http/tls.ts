/**
 * Transport rules every HTTP client of this library shares: which hosts may be reached over plain
 * HTTP (loopback only, unless the caller opts in), how certificates are verified (always by
 * default; a caFile adds CAs to the system's, it does not replace them), and which socket errors
 * are TLS failures.
 */
import { readFileSync } from 'node:fs';
import { ThinkubeImageError } from '../core/errors.js';

const IPV4_LOOPBACK = /^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** The host part of `host`, `host:port`, `[v6]:port` or a bare IPv6 address, brackets kept ("[::1]:5000" -> "[::1]"). */
export function hostName(host: string): string {
  const h = host.trim();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return end >= 0 ? h.slice(0, end + 1) : h;
  }
  // A bare IPv6 address has several colons and no port.
  if ((h.match(/:/g) ?? []).length > 1) return h;
  const colon = h.lastIndexOf(':');
  return colon >= 0 ? h.slice(0, colon) : h;
}

/**
 * Loopback host (localhost, 127.0.0.0/8, ::1), with or without port or brackets. The one test of
 * "is this this machine" for every client: such hosts may be reached over plain HTTP (like Docker
 * treats registries), any other only when the caller opts in.
 */
export function isLoopbackHost(host: string): boolean {
  const h = hostName(host).toLowerCase();
  if (h === 'localhost' || h === '[::1]' || h === '::1') return true;
  const m = IPV4_LOOPBACK.exec(h);
  return m !== null && m.slice(1).every((octet) => Number(octet) <= 255);
}

/** Certificate problems: the server speaks TLS, but its certificate is not trusted for this name. */
export const TLS_CERTIFICATE_ERRORS: ReadonlySet<string> = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  'CERT_SIGNATURE_FAILURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_REVOKED',
  'CERT_CHAIN_TOO_LONG',
  'INVALID_CA',
  'INVALID_PURPOSE',
  'PATH_LENGTH_EXCEEDED',
  'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** Handshake failures where the other side does not speak TLS at all (a plain HTTP port, usually). */
export const TLS_PROTOCOL_ERRORS: ReadonlySet<string> = new Set([
  'EPROTO',
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'ERR_SSL_PACKET_LENGTH_TOO_LONG',
  'ERR_SSL_HTTP_REQUEST',
  'ERR_SSL_UNKNOWN_PROTOCOL',
]);

export type TlsFailure = 'certificate' | 'protocol';

/** Which kind of TLS failure a socket error code is, if any. */
export function tlsFailure(code: string | undefined): TlsFailure | undefined {
  if (!code) return undefined;
  if (TLS_CERTIFICATE_ERRORS.has(code)) return 'certificate';
  if (TLS_PROTOCOL_ERRORS.has(code) || code.startsWith('ERR_SSL_')) return 'protocol';
  return undefined;
}

export interface TlsOptions {
  /** Verify the server's certificate (the validated option; the schemas default it to true). */
  validateCerts: boolean;
  /** PEM bundle of extra CAs, added to the system's. */
  caFile?: string | undefined;
}

/** node:https request options for these TLS options; a caFile is read now (ERR_INVALID_OPTIONS naming it). */
export function httpsOptions(tls: TlsOptions, service: string): { rejectUnauthorized: boolean; ca?: string[] } {
  const out: { rejectUnauthorized: boolean; ca?: string[] } = { rejectUnauthorized: tls.validateCerts };
  if (tls.caFile === undefined) return out;
  const file = tls.caFile;
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `Cannot read the CA file ${file} for ${service} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`, {
      hint: 'Give caFile as the path of a readable PEM bundle',
      details: { field: 'caFile', file },
    });
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `The CA file ${file} for ${service} holds no PEM certificate`, {
      hint: 'Give caFile as a PEM bundle (-----BEGIN CERTIFICATE----- blocks)',
      details: { field: 'caFile', file },
    });
  }
  // Node replaces its trust store when `ca` is set: keep the public roots and add the given CAs.
  // (node:tls read here, not imported: only a caFile needs it before a request does.)
  out.ca = [...process.getBuiltinModule('node:tls').rootCertificates, pem];
  return out;
}
