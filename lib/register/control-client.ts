/**
 * HTTP client of thinkube-control's image registration endpoint (the contract in
 * schemas/control-api.schema.json): an upsert keyed by image name that never writes when nothing
 * changed, retries connection errors, 429 and 5xx answers with backoff and jitter (never other
 * 4xx), bounded in count and total time and each one reported, and never lets a
 * retried POST create an image twice.
 */
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import got, { type Got } from 'got';
import { ThinkubeImageError } from '../core/errors.js';
import { Redactor } from '../core/redact.js';
import { RetryBudget, parseRetryAfter, retrySettings, type RetryOptions, type RetrySettings } from '../core/retry.js';
import { schemaDocuments } from '../options/schema.js';
import type { RegisteredImage } from '../options/generated/types.js';

export interface ControlClientOptions {
  /** Base URL of thinkube-control's API, e.g. https://control.example.com/api. */
  controlUrl: string;
  /** API token (tk_...), sent as Authorization: Bearer. Never printed. */
  token?: string;
  caFile?: string;
  /** Default true. */
  validateCerts?: boolean;
  /** Per request. Default 30. */
  timeoutSeconds?: number;
  /** Retries after a connection error or a 5xx. Default 3. */
  retries?: number;
  /** First backoff delay, doubled on each retry (capped at 8 s) plus up to 25% jitter. Default 500. */
  retryBaseMs?: number;
  /** The schema's retry option: limit (overrides retries), total time, delays. */
  retry?: RetryOptions;
  signal?: AbortSignal;
  onEvent?: (event: ControlEvent) => void;
}

/** Progress of the HTTP exchange. URLs never carry the token (it only travels in a header). */
export type ControlEvent =
  | { type: 'request'; method: string; url: string; attempt: number }
  | { type: 'response'; method: string; url: string; status: number }
  | { type: 'retry'; operation: string; method: string; url: string; attempt: number; delayMs: number; reason: string };

export type UpsertOutcome = 'created' | 'updated' | 'unchanged' | 'endpoint-unavailable';

export interface UpsertResult {
  outcome: UpsertOutcome;
  /** The stored entry before (only the contract's fields), or null when there was none. */
  before: RegisteredImage | null;
  /** What is stored afterwards (for a dry run: what would be). Null when the endpoint is missing. */
  after: RegisteredImage | null;
  /** URL of the image's resource. */
  url: string;
  warnings: string[];
  /** For endpoint-unavailable: the request and status that showed it. */
  unavailable?: { method: string; url: string; status: number };
}

/** Fields of a registered image (the contract); anything else a server returns is server-set. */
export const REGISTERED_FIELDS: readonly string[] = Object.keys(
  (schemaDocuments['control-api.schema.json'] as unknown as { definitions: { registeredImage: { properties: object } } }).definitions
    .registeredImage.properties,
);

/** `<controlUrl>/v1/images`, trailing slashes of controlUrl removed. */
export function imagesUrl(controlUrl: string): string {
  return `${controlUrl.replace(/\/+$/, '')}/v1/images`;
}

export function imageUrl(controlUrl: string, name: string): string {
  return `${imagesUrl(controlUrl)}/${encodeURIComponent(name)}`;
}

/** The contract's fields of a record, nulls dropped (FastAPI sends null for unset optionals). */
export function comparableEntry(record: Record<string, unknown>): RegisteredImage {
  const out: Record<string, unknown> = {};
  for (const key of REGISTERED_FIELDS) {
    const value = record[key];
    if (value !== null && value !== undefined) out[key] = value;
  }
  return out as unknown as RegisteredImage;
}

/** JSON with sorted keys and no nulls: equal for equal content whatever the key order. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      return Object.fromEntries(
        Object.keys(v as object)
          .sort()
          .filter((k) => (v as Record<string, unknown>)[k] !== null && (v as Record<string, unknown>)[k] !== undefined)
          .map((k) => [k, (v as Record<string, unknown>)[k]]),
      );
    }
    return v;
  });
}

export function sameEntry(a: Record<string, unknown>, b: Record<string, unknown>): boolean {
  return canonicalJson(comparableEntry(a)) === canonicalJson(comparableEntry(b));
}

interface Answer {
  status: number;
  body: unknown;
  text: string;
  headers: Record<string, string | string[] | undefined>;
}

type Attempt = { ok: true; answer: Answer } | { ok: false; reason: string; code: string };

/** Connection-level failures worth another try. DNS "not found" and TLS failures are not. */
const RETRY_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE']);
const TLS_CODE = /CERT|SELF_SIGNED|UNABLE_TO_|ERR_TLS|ERR_SSL|EPROTO/;
const MAX_RETRY_AFTER_MS = 30_000;
/** Total time the retries of one request may take (waits and attempts), unless retry.maxTotalSeconds says otherwise. */
const MAX_TOTAL_MS = 120_000;

/** A sanitized cause: got's errors carry the request options, Authorization header included. */
function safeCause(code: string, message: string): Error {
  const error = new Error(`${code}: ${message}`);
  error.stack = error.message;
  return error;
}

export class ControlClient {
  readonly controlUrl: string;
  private readonly opts: Required<Pick<ControlClientOptions, 'validateCerts' | 'timeoutSeconds' | 'retries' | 'retryBaseMs'>> & ControlClientOptions;
  private readonly redactor = new Redactor();
  private http: Got | undefined;

  constructor(options: ControlClientOptions) {
    this.opts = { validateCerts: true, timeoutSeconds: 30, retries: 3, retryBaseMs: 500, ...options };
    this.controlUrl = options.controlUrl;
    this.redactor.add(options.token);
  }

  /** Lazily built so that a bad caFile is reported as an error of the registration, not of construction. */
  private client(): Got {
    if (this.http) return this.http;
    let certificateAuthority: string[] | undefined;
    if (this.opts.caFile) {
      let pem: string;
      try {
        pem = readFileSync(this.opts.caFile, 'utf8');
      } catch (error) {
        throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `Cannot read the thinkube-control CA file ${this.opts.caFile} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`, {
          hint: 'Give caFile as the path of a readable PEM bundle',
          details: { field: 'caFile', file: this.opts.caFile },
        });
      }
      if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
        throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `The thinkube-control CA file ${this.opts.caFile} holds no PEM certificate`, {
          hint: 'Give caFile as a PEM bundle (-----BEGIN CERTIFICATE----- blocks)',
          details: { field: 'caFile', file: this.opts.caFile },
        });
      }
      // Added to the system roots, not replacing them.
      certificateAuthority = [...rootCertificates, pem];
    }
    const headers: Record<string, string> = { accept: 'application/json', 'user-agent': 'thinkube-custom-images' };
    if (this.opts.token) headers.authorization = `Bearer ${this.opts.token}`;
    this.http = got.extend({
      headers,
      throwHttpErrors: false,
      // Retries are ours: got would retry a POST blindly, which may register twice.
      retry: { limit: 0 },
      // A redirect could carry the token elsewhere, and turns POST into GET: report it instead.
      followRedirect: false,
      timeout: { request: this.opts.timeoutSeconds * 1000 },
      responseType: 'text',
      https: { rejectUnauthorized: this.opts.validateCerts, ...(certificateAuthority ? { certificateAuthority } : {}) },
    });
    return this.http;
  }

  private emit(event: ControlEvent): void {
    this.opts.onEvent?.(event);
  }

  private redact(text: string): string {
    return this.redactor.redact(text);
  }

  private aborted(what: string): ThinkubeImageError {
    return new ThinkubeImageError('ERR_ABORTED', `Registration with thinkube-control at ${this.controlUrl} aborted during ${what}`, {
      hint: 'The registration may or may not have been stored; run it again to make sure',
    });
  }

  /** One HTTP exchange. Retryable failures come back as { ok: false }; others throw. */
  private async send(method: string, url: string, body: unknown, attempt: number): Promise<Attempt> {
    if (this.opts.signal?.aborted) throw this.aborted(`${method} ${url}`);
    const http = this.client();
    this.emit({ type: 'request', method, url, attempt });
    try {
      const response = await http(url, {
        method: method as 'GET',
        ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
        ...(this.opts.signal ? { signal: this.opts.signal } : {}),
      });
      const text = String(response.body ?? '');
      let parsed: unknown;
      try {
        parsed = text ? JSON.parse(text) : undefined;
      } catch {
        parsed = undefined;
      }
      this.emit({ type: 'response', method, url, status: response.statusCode });
      return { ok: true, answer: { status: response.statusCode, body: parsed, text, headers: response.headers } };
    } catch (error) {
      const code = String((error as { code?: unknown }).code ?? 'ERR');
      const message = this.redact(String((error as Error).message ?? error));
      if (this.opts.signal?.aborted || code === 'ERR_ABORTED') throw this.aborted(`${method} ${url}`);
      if (RETRY_CODES.has(code)) return { ok: false, code, reason: `${code}: ${message}` };
      if (TLS_CODE.test(code)) {
        const handshake = code === 'EPROTO' || code.startsWith('ERR_SSL');
        throw new ThinkubeImageError(
          'ERR_REGISTRATION',
          handshake
            ? `TLS handshake with thinkube-control at ${this.controlUrl} failed (${code})`
            : `Could not verify the TLS certificate of thinkube-control at ${this.controlUrl} (${code}: ${message})`,
          {
            hint: handshake
              ? 'Check the scheme of controlUrl (http:// for a plain HTTP service, https:// for TLS)'
              : 'Pass caFile with the PEM of the CA that signed its certificate (validateCerts: false only for a throwaway test install)',
            cause: safeCause(code, message),
            details: { url, errno: code },
          },
        );
      }
      if (code === 'ENOTFOUND') {
        throw new ThinkubeImageError('ERR_REGISTRATION', `Cannot resolve the host of thinkube-control at ${this.controlUrl} (ENOTFOUND)`, {
          hint: 'Check the host name in controlUrl (outside the cluster it is usually https://control.<domain>/api)',
          cause: safeCause(code, message),
          details: { url, errno: code },
        });
      }
      throw new ThinkubeImageError('ERR_REGISTRATION', `${method} ${url} to thinkube-control failed (${code}: ${message})`, {
        hint: 'Check controlUrl and that thinkube-control is running',
        cause: safeCause(code, message),
        details: { url, errno: code },
      });
    }
  }

  /** The retry rules of one request: retries, retryBaseMs and retry (which wins). */
  private settings(): RetrySettings {
    return retrySettings(this.opts.retry, {
      limit: this.opts.retries,
      maxTotalMs: MAX_TOTAL_MS,
      initialDelayMs: this.opts.retryBaseMs,
      maxDelayMs: 8000,
      maxRetryAfterMs: MAX_RETRY_AFTER_MS,
    });
  }

  private budget(method: string, url: string): RetryBudget {
    return new RetryBudget(`${method} ${url}`, this.settings(), {
      signal: this.opts.signal,
      onRetry: (e) => this.emit({ ...e, method, url }),
    });
  }

  /** Report and wait before the next attempt; false when the budget is spent. */
  private async backoff(budget: RetryBudget, method: string, url: string, reason: string, answer?: Answer): Promise<boolean> {
    try {
      return await budget.wait(reason, parseRetryAfter(answer?.headers['retry-after']));
    } catch {
      throw this.aborted(`the wait before retrying ${method} ${url}`);
    }
  }

  private giveUp(method: string, url: string, attempts: number, last: Attempt, budget?: RetryBudget): ThinkubeImageError {
    const why = budget?.exhausted && budget.settings.limit > 0 && budget.retries < budget.settings.limit ? `; ${budget.exhausted}` : '';
    if (!last.ok) {
      return new ThinkubeImageError('ERR_REGISTRATION', `Could not reach thinkube-control at ${this.controlUrl} (${last.reason}) after ${attempts} attempt(s) of ${method} ${url}${why}`, {
        hint: 'Check that thinkube-control is running and that controlUrl is right; from outside the cluster it is usually https://control.<domain>/api',
        cause: safeCause(last.code, last.reason),
        details: { url, method, attempts, errno: last.code },
      });
    }
    return this.httpError(method, url, last.answer, `after ${attempts} attempt(s)${why}`);
  }

  /** An idempotent request (GET, PUT) with retries on connection errors, 429 and 5xx. */
  private async idempotent(method: 'GET' | 'PUT', url: string, body?: unknown): Promise<Answer> {
    const budget = this.budget(method, url);
    for (let attempt = 0; ; attempt++) {
      const result = await this.send(method, url, body, attempt + 1);
      const retryable = !result.ok || result.answer.status >= 500 || result.answer.status === 429;
      if (!retryable) return result.answer;
      if (!(await this.backoff(budget, method, url, result.ok ? `HTTP ${result.answer.status}` : result.reason, result.ok ? result.answer : undefined))) {
        throw this.giveUp(method, url, attempt + 1, result, budget);
      }
    }
  }

  /** The server's FastAPI `detail` as one line, secrets removed. */
  detailOf(answer: Answer): string {
    const body = answer.body as { detail?: unknown } | undefined;
    let detail: string;
    if (body && typeof body === 'object' && 'detail' in body) {
      const d = body.detail;
      if (typeof d === 'string') detail = d;
      else if (Array.isArray(d)) {
        detail = d
          .map((p: { loc?: unknown[]; msg?: unknown }) => `${Array.isArray(p?.loc) ? p.loc.filter((x) => x !== 'body').join('.') : '?'}: ${String(p?.msg ?? 'invalid')}`)
          .join('; ');
      } else detail = JSON.stringify(d);
    } else {
      detail = answer.text.replace(/\s+/g, ' ').trim().slice(0, 300);
    }
    return this.redact(detail || '(no detail)');
  }

  private httpError(method: string, url: string, answer: Answer, suffix = ''): ThinkubeImageError {
    const status = answer.status;
    const detail = this.detailOf(answer);
    const tail = suffix ? ` ${suffix}` : '';
    if (status === 401 || status === 403) {
      const token = this.opts.token;
      // Only the well-known prefix, never any part of the secret itself.
      const which = !token ? 'no API token was given' : token.startsWith('tk_') ? 'it rejected the API token (tk_…)' : 'it rejected the API token';
      return new ThinkubeImageError('ERR_REGISTRATION_AUTH', `thinkube-control at ${this.controlUrl} answered ${status} to ${method} ${url}: ${which} (${detail})`, {
        hint: !token
          ? 'Pass an API token of thinkube-control in token (or THINKUBE_CONTROL_TOKEN)'
          : status === 403
            ? 'The token is valid but not allowed to manage images: use a token of a user with that right'
            : 'The token is expired, revoked or wrong: create a new API token in thinkube-control and pass it in token (or THINKUBE_CONTROL_TOKEN)',
        details: { url, method, status, detail },
      });
    }
    if (status >= 300 && status < 400) {
      const location = answer.headers.location;
      return new ThinkubeImageError('ERR_REGISTRATION', `thinkube-control at ${this.controlUrl} answered ${status} to ${method} ${url}, redirecting to ${String(location ?? '(no location)')}`, {
        hint: 'Set controlUrl to the address that answers directly (often https:// instead of http://, or a missing /api)',
        details: { url, method, status, location },
      });
    }
    const hint =
      status === 422
        ? 'thinkube-control rejected the entry (the field names are in the message): client and server may follow different versions of the contract'
        : status >= 500
          ? 'thinkube-control failed internally: read its logs (kubectl logs -n thinkube-control deploy/backend) and run again'
          : 'Read the server message; the entry or controlUrl may be wrong';
    return new ThinkubeImageError('ERR_REGISTRATION', `thinkube-control at ${this.controlUrl} answered ${status} to ${method} ${url}${tail}: ${detail}`, {
      hint,
      details: { url, method, status, detail },
    });
  }

  /** The stored entry, or null when thinkube-control does not know the name (or has no such route). */
  async getImage(name: string, warnings: string[] = []): Promise<Record<string, unknown> | null> {
    const url = imageUrl(this.controlUrl, name);
    const answer = await this.idempotent('GET', url);
    if (answer.status === 200) {
      const body = answer.body as Record<string, unknown> | undefined;
      if (body && typeof body === 'object' && !Array.isArray(body) && body.name === name) return body;
      // E.g. a web front end answering every path with its index page: not a record.
      warnings.push(`GET ${url} answered 200 without an image record named ${name}; is controlUrl the API base (ending in /api)?`);
      return null;
    }
    // 404: unknown image (or unknown route: the POST will tell). 405/422: a server whose route takes something else here.
    if (answer.status === 404 || answer.status === 405 || answer.status === 422) return null;
    throw this.httpError('GET', url, answer);
  }

  private unavailable(method: string, url: string, status: number, before: RegisteredImage | null, warnings: string[]): UpsertResult {
    warnings.push(`thinkube-control at ${this.controlUrl} has no /api/v1/images endpoint yet (HTTP ${status} to ${method} ${url}); the image was not registered there`);
    return { outcome: 'endpoint-unavailable', before, after: null, url: imagesUrl(this.controlUrl), warnings, unavailable: { method, url, status } };
  }

  /**
   * Create or update the entry (keyed by name). Unchanged content is not written. A POST whose
   * answer was lost (5xx, connection error) is followed by a GET before any new POST, so a retry
   * never registers the image twice.
   */
  async upsertImage(entry: RegisteredImage, options: { dryRun?: boolean } = {}): Promise<UpsertResult> {
    const warnings: string[] = [];
    const collection = imagesUrl(this.controlUrl);
    const item = imageUrl(this.controlUrl, entry.name);
    const wanted = entry as unknown as Record<string, unknown>;
    const existing = await this.getImage(entry.name, warnings);
    let before = existing ? comparableEntry(existing) : null;
    if (existing && sameEntry(existing, wanted)) return { outcome: 'unchanged', before, after: before, url: item, warnings };

    if (options.dryRun) {
      if (!existing) {
        // Without writing, a 404/405 on the collection is the only sign of a missing endpoint.
        const probe = await this.idempotent('GET', collection);
        if (probe.status === 404 || probe.status === 405) return this.unavailable('GET', collection, probe.status, before, warnings);
        if (probe.status === 401 || probe.status === 403) throw this.httpError('GET', collection, probe);
      }
      return { outcome: existing ? 'updated' : 'created', before, after: entry, url: item, warnings };
    }

    let current = existing;
    let existed = existing !== null; // someone else's entry was there: writing it is an update
    let posted = false; // a POST of ours may have been applied without us seeing the answer
    let failures = 0;
    let rounds = 0;
    const postBudget = this.budget('POST', collection);
    const done = (outcome: UpsertOutcome): UpsertResult => ({ outcome, before, after: entry, url: item, warnings });
    for (;;) {
      if (++rounds > 10 + postBudget.settings.limit) {
        throw new ThinkubeImageError('ERR_REGISTRATION', `Registration of ${entry.name} at ${this.controlUrl} did not settle: the image kept appearing and disappearing`, {
          hint: 'Another process is creating and deleting this image at the same time; stop it and run again',
          details: { url: item },
        });
      }
      if (current) {
        const answer = await this.idempotent('PUT', item, entry);
        if (answer.status === 200 || answer.status === 201 || answer.status === 204) return done(existed ? 'updated' : 'created');
        if (answer.status === 405) return this.unavailable('PUT', item, answer.status, before, warnings);
        if (answer.status === 404) {
          current = null; // deleted since we read it: create it
          continue;
        }
        throw this.httpError('PUT', item, answer);
      }

      const result = await this.send('POST', collection, entry, failures + 1);
      if (!result.ok || result.answer.status >= 500 || result.answer.status === 429) {
        // A 429 was not processed; a 5xx or a lost answer may have been.
        if (!(result.ok && result.answer.status === 429)) posted = true;
        if (!(await this.backoff(postBudget, 'POST', collection, result.ok ? `HTTP ${result.answer.status}` : result.reason, result.ok ? result.answer : undefined))) {
          throw this.giveUp('POST', collection, failures + 1, result, postBudget);
        }
        failures++;
        // The server may have stored it before failing: look before posting again.
        current = await this.getImage(entry.name, warnings);
        if (current && sameEntry(current, wanted)) return done('created');
        continue;
      }
      const { answer } = result;
      if (answer.status === 200 || answer.status === 201) return done('created');
      if (answer.status === 404 || answer.status === 405) return this.unavailable('POST', collection, answer.status, before, warnings);
      if (answer.status === 409) {
        // Created meanwhile: by someone else, or by a POST of ours whose answer was lost.
        current = await this.getImage(entry.name, warnings);
        if (!current) {
          throw new ThinkubeImageError('ERR_REGISTRATION', `thinkube-control at ${this.controlUrl} answered 409 (already exists) to POST ${collection} for ${entry.name}, but GET ${item} does not find it`, {
            hint: 'The server is inconsistent about this image name: read its logs, or register under another name',
            details: { url: item, detail: this.detailOf(answer) },
          });
        }
        if (!posted) {
          existed = true;
          before = comparableEntry(current);
        }
        if (sameEntry(current, wanted)) return posted ? done('created') : { outcome: 'unchanged', before, after: before, url: item, warnings };
        continue;
      }
      throw this.httpError('POST', collection, answer);
    }
  }
}
