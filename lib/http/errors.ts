/**
 * What went wrong with an HTTP exchange, in the project's error codes: one classification for every
 * client (registry, Harbor, thinkube-control). A service names itself and its codes; the kind of
 * failure decides the code, the message names the host and the request, the hint says what to do.
 * Messages, hints and details pass through the client's Redactor: no password, token or
 * Authorization header ever appears in them, even when a server echoes one back.
 */
import { ThinkubeImageError, type ErrorCode } from '../core/errors.js';
import type { Redactor } from '../core/redact.js';
import { tlsFailure } from './tls.js';

/** The codes a service's failures get (timeouts, cancellations and quota have one code everywhere). */
export interface ServiceCodes {
  /** Nothing answered: refused, DNS, TLS, network. */
  unreachable: ErrorCode;
  /** HTTP 401 and 403 (except a full quota). */
  auth: ErrorCode;
  /** Any other answer that is not the expected one, and 5xx after the retries. */
  failed: ErrorCode;
}

export type FailureKind =
  | 'aborted'
  | 'timeout'
  | 'certificate'
  | 'protocol'
  | 'dns'
  | 'unreachable'
  | 'plain-http'
  | 'auth'
  | 'quota'
  | 'server'
  | 'failed';

export interface HttpService {
  /** Names the service with its address, mid-sentence: "registry harbor.example.com", "Harbor at https://h/api/v2.0". */
  name: string;
  /** The same at the start of a sentence. Default: name with a capital first letter. */
  subject?: string;
  codes: ServiceCodes;
  /** Advice specific to the service, by kind of failure, instead of the generic one. */
  hints?: Partial<Record<FailureKind, string>>;
  /** Added to every error's details (e.g. { registry }). Never secrets. */
  details?: Record<string, unknown>;
}

/** One request as messages show it. */
export interface RequestInfo {
  method: string;
  /** The URL without query (or what the client chose to show). */
  display: string;
  /** host[:port] the request went to. */
  host: string;
  /** What the request is for, e.g. `read project "library"`. */
  what?: string | undefined;
  /** Retries made before the last failure. */
  retries: number;
  /** Why the retries stopped before their limit (the time budget, a too long Retry-After). */
  gaveUp?: string | undefined;
}

/** One entry of a registry-style error body `{"errors": [{"code", "message", "detail"}]}` (Harbor's API uses it too). */
export interface RegistryErrorEntry {
  code?: string;
  message?: string;
  detail?: unknown;
}

/** The entries of a registry-style error body; [] when the body is not one. */
export function registryErrorsOf(body: Buffer | string | undefined): RegistryErrorEntry[] {
  if (body === undefined || body.length === 0 || body.length > 1_000_000) return [];
  try {
    const parsed = JSON.parse(Buffer.isBuffer(body) ? body.toString('utf8') : body) as { errors?: unknown };
    if (!Array.isArray(parsed?.errors)) return [];
    return parsed.errors
      .filter((e): e is Record<string, unknown> => e !== null && typeof e === 'object')
      .map((e) => {
        const out: RegistryErrorEntry = {};
        if (typeof e.code === 'string') out.code = e.code;
        if (typeof e.message === 'string') out.message = e.message;
        if (e.detail !== undefined) out.detail = e.detail;
        return out;
      });
  } catch {
    return [];
  }
}

/** "CODE: message; CODE: message" of registry-style error entries. */
export function summarizeErrors(entries: RegistryErrorEntry[]): string {
  return entries.map((e) => [e.code, e.message].filter(Boolean).join(': ')).join('; ');
}

/**
 * Harbor's full quota: HTTP 403 with code DENIED and a message starting "Quota exceeded" (a
 * FastAPI-style `{"detail": "Quota exceeded ..."}` counts too). The message, or undefined.
 */
export function quotaExceededMessage(status: number, body: Buffer | string | undefined): string | undefined {
  if (status !== 403) return undefined;
  const entry = registryErrorsOf(body).find((e) => e.code === 'DENIED' && /^\s*quota exceeded/i.test(e.message ?? ''));
  if (entry) return entry.message?.trim();
  try {
    const detail = (JSON.parse(Buffer.isBuffer(body) ? body.toString('utf8') : (body ?? '')) as { detail?: unknown })?.detail;
    if (typeof detail === 'string' && /^\s*quota exceeded/i.test(detail)) return detail.trim();
  } catch {
    // not JSON: not a quota answer
  }
  return undefined;
}

/** The kind of failure an HTTP status is (2xx and 3xx are the caller's business: 'failed'). */
export function statusKind(status: number, body?: Buffer | string): FailureKind {
  if (quotaExceededMessage(status, body) !== undefined) return 'quota';
  if (status === 401 || status === 403) return 'auth';
  if (status >= 500) return 'server';
  return 'failed';
}

/** The kind of a transport failure (what an attempt of ./transport.ts rejected with, or a wait's abort). */
export function transportKind(error: unknown, aborted: boolean): FailureKind {
  const name = (error as { name?: unknown } | null)?.name;
  const code = (error as { code?: unknown } | null)?.code;
  if (aborted || name === 'AbortError' || code === 'ERR_ABORTED') return 'aborted';
  // The attempt's own time limit (./transport.ts, code ETIMEDOUT too); a socket's ETIMEDOUT is a network failure.
  if (name === 'TimeoutError') return 'timeout';
  const text = typeof code === 'string' ? code : undefined;
  const tls = tlsFailure(text);
  if (tls) return tls;
  if (text === 'ENOTFOUND' || text === 'EAI_AGAIN') return 'dns';
  return 'unreachable';
}

function codeFor(service: HttpService, kind: FailureKind): ErrorCode {
  switch (kind) {
    case 'aborted':
      return 'ERR_ABORTED';
    case 'timeout':
      return 'ERR_TIMEOUT';
    case 'quota':
      return 'ERR_QUOTA_EXCEEDED';
    case 'auth':
      return service.codes.auth;
    case 'certificate':
    case 'protocol':
    case 'dns':
    case 'unreachable':
      return service.codes.unreachable;
    default:
      return service.codes.failed;
  }
}

function subjectOf(service: HttpService): string {
  return service.subject ?? service.name.charAt(0).toUpperCase() + service.name.slice(1);
}

function genericHint(service: HttpService, kind: FailureKind, host: string): string {
  switch (kind) {
    case 'aborted':
      return 'Run it again';
    case 'timeout':
      return `Check that ${service.name} is up and not overloaded, or raise timeoutSeconds`;
    case 'certificate':
      return `Pass caFile with the PEM of the CA that signed the certificate of ${host} (it is added to the system's CAs), or set validateCerts: false for a throwaway test service only`;
    case 'protocol':
      return `${host} does not speak TLS on that port: check the URL scheme (http:// for a plain HTTP service) and the port`;
    case 'dns':
      return `Check the host name ${host.replace(/:\d+$/, '')} (DNS or /etc/hosts on this machine)`;
    case 'unreachable':
      return `Check the address and port of ${service.name}, that it is running, and the network (proxy, firewall) between here and ${host}`;
    case 'plain-http':
      return `Use https:// for ${host}, or allow plain HTTP to it explicitly (plainHttp) on a network you trust`;
    case 'auth':
      return `Check the credentials given for ${service.name} and the account's permissions`;
    case 'quota':
      return "The project's storage quota is full: delete unused artifacts and run garbage collection in Harbor, or raise the project's quota";
    case 'server':
      return `${subjectOf(service)} has a problem: check its health and logs, then run again`;
    default:
      return `Check the request against ${service.name} (names, permissions, versions)`;
  }
}

function attempts(info: RequestInfo): string {
  if (!info.retries) return info.gaveUp ? ` (${info.gaveUp})` : '';
  return `, after ${info.retries + 1} attempts${info.gaveUp ? ` (${info.gaveUp})` : ''}`;
}

/** Builds a service's errors, redacted. */
export class HttpErrors {
  constructor(
    readonly service: HttpService,
    private readonly redactor: Redactor,
  ) {}

  /** A ThinkubeImageError whose message, hint and details carry no secret. */
  make(code: ErrorCode, message: string, options: { hint?: string | undefined; details?: Record<string, unknown>; cause?: Error }): ThinkubeImageError {
    const r = this.redactor;
    return new ThinkubeImageError(code, r.redact(message), {
      ...(options.hint ? { hint: r.redact(options.hint) } : {}),
      ...(options.cause ? { cause: options.cause } : {}),
      details: r.redactValue({ ...this.service.details, ...options.details }),
    });
  }

  /** What an attempt rejected with, as the service's error: cancelled, timed out, TLS, DNS, unreachable. */
  transport(error: unknown, info: RequestInfo, timeoutSeconds: number, aborted: boolean): ThinkubeImageError {
    const service = this.service;
    const kind = transportKind(error, aborted);
    const code = (error as { code?: unknown } | null)?.code;
    const errorCode = typeof code === 'string' ? code : undefined;
    const text = this.redactor.redact(error instanceof Error ? error.message : String(error));
    // A bare cause (message and code only): an HTTP library's errors may carry the request options, the Authorization header included.
    const cause = Object.assign(new Error(text), errorCode ? { code: errorCode } : {});
    cause.stack = cause.message;
    const request = ` for ${info.method} ${info.display}${info.what ? ` (${info.what})` : ''}`;
    const host = info.host;
    let message: string;
    switch (kind) {
      case 'aborted':
        message = `Request to ${service.name} was cancelled${request}`;
        break;
      case 'timeout':
        message = `${subjectOf(service)} did not answer ${info.method} ${info.display}${info.what ? ` (${info.what})` : ''} within ${timeoutSeconds} s${attempts(info)}`;
        break;
      case 'certificate':
        message = `TLS with ${service.name} failed (${errorCode}: ${text})${request}: the certificate of ${host} is not trusted`;
        break;
      case 'protocol':
        message = `TLS with ${service.name} failed (${errorCode})${request}: ${host} does not speak TLS there`;
        break;
      case 'dns':
        message = `Cannot resolve the host name of ${service.name} (${errorCode})${request}${attempts(info)}`;
        break;
      default:
        message = `Cannot reach ${service.name} (${errorCode ?? text})${request}${attempts(info)}`;
    }
    const details: Record<string, unknown> = { method: info.method, url: info.display, errorCode };
    if (info.retries) details.retries = info.retries;
    return this.make(codeFor(service, kind), message, { hint: service.hints?.[kind] ?? genericHint(service, kind, host), details, cause });
  }

  /** Plain HTTP to a host that is not loopback, without the caller's consent. */
  plainHttp(info: RequestInfo): ThinkubeImageError {
    const host = info.host;
    return this.make(codeFor(this.service, 'plain-http'), `Refusing plain HTTP to ${host} (${this.service.name}; only loopback hosts are reached over http:// without plainHttp) for ${info.method} ${info.display}`, {
      hint: this.service.hints?.['plain-http'] ?? genericHint(this.service, 'plain-http', host),
      details: { method: info.method, url: info.display },
    });
  }

  /**
   * An answer that is not the expected one. The status decides the code (401/403: the service's
   * auth code; Harbor's full quota: ERR_QUOTA_EXCEEDED, whatever the caller says; else the
   * service's failure code); the caller may word the message and the hint.
   */
  status(
    response: { status: number; body: Buffer },
    info: RequestInfo,
    custom: { message?: string | undefined; hint?: string | undefined; details?: Record<string, unknown> } = {},
  ): ThinkubeImageError {
    const kind = statusKind(response.status, response.body);
    const registryErrors = registryErrorsOf(response.body);
    const details: Record<string, unknown> = { method: info.method, url: info.display, status: response.status, registryErrors, ...custom.details };
    if (info.retries) details.retries = info.retries;
    const host = info.host;
    if (kind === 'quota') {
      const said = quotaExceededMessage(response.status, response.body) as string;
      return this.make('ERR_QUOTA_EXCEEDED', `${subjectOf(this.service)} refused ${info.what ?? `${info.method} ${info.display}`}: ${said}`, {
        hint: genericHint(this.service, 'quota', host),
        details: { ...details, quotaExceeded: true },
      });
    }
    const summary = summarizeErrors(registryErrors);
    const message =
      custom.message ??
      `${subjectOf(this.service)} answered HTTP ${response.status} to ${info.method} ${info.display}${info.what ? ` (${info.what})` : ''}${summary ? `: ${summary}` : ''}${attempts(info)}`;
    return this.make(codeFor(this.service, kind), message, { hint: custom.hint ?? this.service.hints?.[kind] ?? genericHint(this.service, kind, host), details });
  }
}
