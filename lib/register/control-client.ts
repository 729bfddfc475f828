/**
 * HTTP client of thinkube-control's image registration endpoint (the contract in
 * schemas/control-api.schema.json): an upsert keyed by image name that never writes when nothing
 * changed. Requests go through the HTTP layer (lib/http): connection errors, 429 and 5xx answers
 * are retried with backoff and jitter (never other 4xx), bounded in count and total time and each
 * one reported; a POST is retried only after a GET shows it was not stored, so a retry never
 * creates an image twice.
 */
import { ThinkubeImageError } from '../core/errors.js';
import type { RetryOptions } from '../core/retry.js';
import { schemaDocuments, validate } from '../options/schema.js';
import type { RegisteredImage, RegisterOptions } from '../options/generated/types.js';
import { HttpClient, type HttpRequest, type HttpResponse, type Method } from '../http/client.js';

/** The fields of register-options that reach thinkube-control (validated here: their defaults come from the schema). */
const CLIENT_FIELDS = ['controlUrl', 'token', 'caFile', 'validateCerts', 'timeoutSeconds', 'retry'] as const;

export interface ControlClientOptions {
  /** thinkube-control's address: https://control.example.com, or the same ending in /api or /api/v1. */
  controlUrl: string;
  /** API token (tk_...), sent as Authorization: Bearer. Never printed. */
  token?: string | undefined;
  caFile?: string | undefined;
  /** register-options validateCerts (schema default true). */
  validateCerts?: boolean | undefined;
  /** Per request attempt (register-options timeoutSeconds; schema default 30). */
  timeoutSeconds?: number | undefined;
  /** The schema's retry option: limit, delays, total time (defaults from the schema). */
  retry?: RetryOptions | undefined;
  signal?: AbortSignal | undefined;
  onEvent?: ((event: ControlEvent) => void) | undefined;
}

/** Progress of the HTTP exchange. URLs never carry the token (it only travels in a header). */
export type ControlEvent =
  | { type: 'request'; method: string; url: string; attempt: number }
  | { type: 'response'; method: string; url: string; status: number; attempt?: number }
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

/**
 * thinkube-control's API root (`.../api/v1`) from its address as people write it: the base URL
 * (https://control.example.com, http://backend.thinkube-control:8000) gets /api/v1, one ending in
 * /api gets /v1, one ending in /api/v1 is the root (trailing slashes removed first).
 */
export function controlApiRoot(controlUrl: string): string {
  const trimmed = controlUrl.replace(/\/+$/, '');
  if (/\/api\/v1$/.test(trimmed)) return trimmed;
  if (/\/api$/.test(trimmed)) return `${trimmed}/v1`;
  return `${trimmed}/api/v1`;
}

/** `<root>/images`: the registration endpoint this project defines (target api). */
export function imagesUrl(controlUrl: string): string {
  return `${controlApiRoot(controlUrl)}/images`;
}

/** `<root>/harbor/images`: thinkube-control's image list (its database rows). */
export function harborImagesUrl(controlUrl: string): string {
  return `${controlApiRoot(controlUrl)}/harbor/images`;
}

/** `<root>/harbor/images/sync`: runs thinkube-control's ConfigMap discovery now. */
export function harborSyncUrl(controlUrl: string): string {
  return `${harborImagesUrl(controlUrl)}/sync`;
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

/** A GET that found the entry while a POST was being retried: the POST must not go out again. */
class AlreadyStored extends Error {
  constructor(readonly record: Record<string, unknown>) {
    super('already stored');
  }
}

export class ControlClient {
  readonly controlUrl: string;
  private readonly token: string | undefined;
  private readonly http: HttpClient;
  private readonly emit: (event: ControlEvent) => void;

  constructor(options: ControlClientOptions) {
    const given: Record<string, unknown> = {};
    for (const key of CLIENT_FIELDS) if (options?.[key] !== undefined) given[key] = options[key];
    const opts = validate<Required<Pick<RegisterOptions, 'validateCerts' | 'timeoutSeconds'>> & RegisterOptions>('register-options.schema.json', given, {
      pick: CLIENT_FIELDS,
      what: 'thinkube-control client options',
    });
    this.controlUrl = options.controlUrl;
    this.token = opts.token;
    const onEvent = options.onEvent;
    const emit = (event: ControlEvent): void => {
      try {
        onEvent?.(event);
      } catch {
        // A failing listener must not break the registration.
      }
    };
    this.http = new HttpClient({
      service: {
        name: `thinkube-control at ${this.controlUrl}`,
        subject: `thinkube-control at ${this.controlUrl}`,
        codes: { unreachable: 'ERR_REGISTRATION', auth: 'ERR_REGISTRATION_AUTH', failed: 'ERR_REGISTRATION' },
        hints: {
          unreachable: 'Check that thinkube-control is running and that controlUrl is right; from outside the cluster it is usually https://control.<domain>, inside http://backend.thinkube-control:8000',
          dns: 'Check the host name in controlUrl (outside the cluster it is usually https://control.<domain>, inside http://backend.thinkube-control:8000)',
          protocol: 'Check the scheme of controlUrl (http:// for a plain HTTP service, https:// for TLS)',
          aborted: 'The registration may or may not have been stored; run it again to make sure',
        },
      },
      timeoutSeconds: opts.timeoutSeconds,
      validateCerts: opts.validateCerts,
      caFile: opts.caFile,
      // controlUrl names its scheme: an http:// URL is the caller's choice (register warns when a token goes over it).
      plainHttp: new URL(this.controlUrl).protocol === 'http:',
      retry: opts.retry,
      // A PUT sends the whole record: sending it twice stores the same.
      retryMethods: ['GET', 'HEAD', 'PUT'],
      headers: { accept: 'application/json', ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}) },
      // A redirect could carry the token elsewhere, and turns POST into GET: report it instead.
      followRedirect: false,
      secrets: [{ secret: opts.token }],
      signal: options.signal,
      onExchange: emit,
    });
    this.emit = emit;
  }

  /** One exchange through the HTTP layer; retries reported as control events (with method and URL). */
  private send(method: Method, url: string, body?: unknown, retry: Pick<HttpRequest, 'beforeRetry' | 'retryMethods'> = {}): Promise<HttpResponse> {
    return this.http.request({
      method,
      url,
      ...(body === undefined ? {} : { json: body }),
      ...retry,
      onRetry: (e) => this.emit({ ...e, method, url }),
    });
  }

  /** The server's FastAPI `detail` as one line, secrets removed. */
  detailOf(answer: HttpResponse): string {
    const body = answer.json() as { detail?: unknown } | undefined;
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
      detail = answer.text().replace(/\s+/g, ' ').trim().slice(0, 300);
    }
    return this.http.redact(detail || '(no detail)');
  }

  private httpError(answer: HttpResponse): ThinkubeImageError {
    const { status, method, display: url } = answer;
    const detail = this.detailOf(answer);
    const tail = answer.retries ? ` after ${answer.retries + 1} attempt(s)${answer.gaveUp ? `; ${answer.gaveUp}` : ''}` : '';
    const details = { detail };
    if (status === 401 || status === 403) {
      const token = this.token;
      // Only the well-known prefix, never any part of the secret itself.
      const which = !token ? 'no API token was given' : token.startsWith('tk_') ? 'it rejected the API token (tk_…)' : 'it rejected the API token';
      return this.http.error(answer, {
        message: `thinkube-control at ${this.controlUrl} answered ${status} to ${method} ${url}: ${which} (${detail})`,
        hint: !token
          ? 'Pass an API token of thinkube-control in token (or THINKUBE_CONTROL_TOKEN)'
          : status === 403
            ? 'The token is valid but not allowed to manage images: use a token of a user with that right'
            : 'The token is expired, revoked or wrong: create a new API token in thinkube-control and pass it in token (or THINKUBE_CONTROL_TOKEN)',
        details,
      });
    }
    if (status >= 300 && status < 400) {
      const location = answer.header('location');
      return this.http.error(answer, {
        message: `thinkube-control at ${this.controlUrl} answered ${status} to ${method} ${url}, redirecting to ${location ?? '(no location)'}`,
        hint: 'Set controlUrl to the address that answers directly (often https:// instead of http://)',
        details: { ...details, location },
      });
    }
    const hint =
      status === 422
        ? 'thinkube-control rejected the entry (the field names are in the message): client and server may follow different versions of the contract'
        : status >= 500
          ? 'thinkube-control failed internally: read its logs (kubectl logs -n thinkube-control deploy/backend) and run again'
          : 'Read the server message; the entry or controlUrl may be wrong';
    return this.http.error(answer, { message: `thinkube-control at ${this.controlUrl} answered ${status} to ${method} ${url}${tail}: ${detail}`, hint, details });
  }

  /**
   * Run thinkube-control's image discovery now (POST /api/v1/harbor/images/sync, no body). Returns
   * its answer (200: the counts); any other status is a ThinkubeImageError with the server's
   * detail. Not retried: a failed sync rolled back, and the next registration syncs again.
   */
  async syncImages(): Promise<Record<string, unknown>> {
    const url = harborSyncUrl(this.controlUrl);
    const answer = await this.send('POST', url);
    if (answer.status !== 200) throw this.httpError(answer);
    const body = answer.json();
    return body && typeof body === 'object' && !Array.isArray(body) ? (body as Record<string, unknown>) : {};
  }

  /**
   * thinkube-control's image rows matching `search` (GET /api/v1/harbor/images?search=), every
   * page of them.
   */
  async findImages(search: string): Promise<Array<Record<string, unknown>>> {
    const rows: Array<Record<string, unknown>> = [];
    const limit = 100;
    for (let skip = 0; ; skip += limit) {
      const url = `${harborImagesUrl(this.controlUrl)}?${new URLSearchParams({ search, skip: String(skip), limit: String(limit) })}`;
      const answer = await this.send('GET', url);
      if (answer.status !== 200) throw this.httpError(answer);
      const body = answer.json() as { total?: unknown; images?: unknown } | undefined;
      if (!body || typeof body !== 'object' || !Array.isArray(body.images)) {
        throw new ThinkubeImageError('ERR_REGISTRATION', `GET ${url} answered 200 without an image list ({"total", "images": [...]})`, {
          hint: "Check that controlUrl is thinkube-control's address (a web front end answers every path)",
          details: { url },
        });
      }
      rows.push(...(body.images as Array<Record<string, unknown>>));
      const total = typeof body.total === 'number' ? body.total : rows.length;
      if (body.images.length < limit || rows.length >= total) return rows;
    }
  }

  /** The stored entry, or null when thinkube-control does not know the name (or has no such route). */
  async getImage(name: string, warnings: string[] = []): Promise<Record<string, unknown> | null> {
    const url = imageUrl(this.controlUrl, name);
    const answer = await this.send('GET', url);
    if (answer.status === 200) {
      const body = answer.json() as Record<string, unknown> | undefined;
      if (body && typeof body === 'object' && !Array.isArray(body) && body.name === name) return body;
      // E.g. a web front end answering every path with its index page: not a record.
      warnings.push(`GET ${url} answered 200 without an image record named ${name}; is controlUrl thinkube-control's API (a web front end answers every path)?`);
      return null;
    }
    // 404: unknown image (or unknown route: the POST will tell). 405/422: a server whose route takes something else here.
    if (answer.status === 404 || answer.status === 405 || answer.status === 422) return null;
    throw this.httpError(answer);
  }

  private unavailable(method: string, url: string, status: number, before: RegisteredImage | null, warnings: string[]): UpsertResult {
    warnings.push(`thinkube-control at ${this.controlUrl} has no /api/v1/images endpoint yet (HTTP ${status} to ${method} ${url}); the image was not registered there`);
    return { outcome: 'endpoint-unavailable', before, after: null, url: imagesUrl(this.controlUrl), warnings, unavailable: { method, url, status } };
  }

  /**
   * Create or update the entry (keyed by name). Unchanged content is not written. A POST whose
   * answer was lost (5xx, connection error) is retried only after a GET shows that it was not
   * stored (HttpRequest.beforeRetry), so a retry never registers the image twice.
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
        const probe = await this.send('GET', collection);
        if (probe.status === 404 || probe.status === 405) return this.unavailable('GET', collection, probe.status, before, warnings);
        if (probe.status === 401 || probe.status === 403) throw this.httpError(probe);
      }
      return { outcome: existing ? 'updated' : 'created', before, after: entry, url: item, warnings };
    }

    let current = existing;
    let existed = existing !== null; // someone else's entry was there: writing it is an update
    let posted = false; // a POST of ours may have been applied without us seeing the answer
    let rounds = 0;
    const done = (outcome: UpsertOutcome): UpsertResult => ({ outcome, before, after: entry, url: item, warnings });
    for (;;) {
      if (++rounds > 10 + this.http.retry.limit) {
        throw new ThinkubeImageError('ERR_REGISTRATION', `Registration of ${entry.name} at ${this.controlUrl} did not settle: the image kept appearing and disappearing`, {
          hint: 'Another process is creating and deleting this image at the same time; stop it and run again',
          details: { url: item },
        });
      }
      if (current) {
        const answer = await this.send('PUT', item, entry);
        if (answer.status === 200 || answer.status === 201 || answer.status === 204) return done(existed ? 'updated' : 'created');
        if (answer.status === 405) return this.unavailable('PUT', item, answer.status, before, warnings);
        if (answer.status === 404) {
          current = null; // deleted since we read it: create it
          continue;
        }
        throw this.httpError(answer);
      }

      let answer: HttpResponse;
      try {
        answer = await this.send('POST', collection, entry, {
          retryMethods: ['POST'],
          beforeRetry: async (failure) => {
            // A 429 was not processed; a 5xx or a lost answer may have been: look before posting again.
            if (failure.status === 429) return;
            posted = true;
            const found = await this.getImage(entry.name, warnings);
            if (found) throw new AlreadyStored(found);
          },
        });
      } catch (error) {
        if (!(error instanceof AlreadyStored)) throw error;
        current = error.record;
        if (sameEntry(current, wanted)) return done('created');
        continue;
      }
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
      throw this.httpError(answer);
    }
  }
}
