/**
 * The one HTTP layer of the library, on Node's own node:http / node:https (./transport.ts; got
 * cost ~200 ms of every process start): the registry, Harbor and thinkube-control clients all
 * send through it. It owns what they used to repeat:
 * - TLS verified by default, caFile added to the system's CAs (./tls.ts); plain HTTP only to
 *   loopback hosts unless the caller opts in, redirects included; no cookie jar (never a cookie).
 * - Retries in a plain loop: limit, methods, status and error codes from the policy below, the
 *   backoff of the schema's `retry` option (validated here, so its defaults come from
 *   schemas/common.schema.json) within its total time budget (RetryBudget), a Retry-After
 *   honoured, a 429 retried whatever the method (the server did not process it), each retry
 *   reported as the project's `retry` event before its wait; AbortSignal stops a request and a
 *   wait alike.
 * - Failures in the project's error codes (./errors.ts), never with a secret in them.
 * Any HTTP status resolves: what an answer means is the caller's; `error()` words it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { ThinkubeImageError } from '../core/errors.js';
import { RetryBudget, retrySettings, type RetryListener, type RetrySettings } from '../core/retry.js';
import { Redactor } from '../core/redact.js';
import { validate } from '../options/schema.js';
import type { RetryOptions } from '../options/generated/types.js';
import { HttpErrors, type HttpService, type RequestInfo } from './errors.js';
import { httpsOptions, isLoopbackHost } from './tls.js';
import { exchange, type TransportResponse } from './transport.js';

/** HTTP methods (the set got accepted, either case). */
export type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'HEAD' | 'DELETE' | 'OPTIONS' | 'TRACE' | 'get' | 'post' | 'put' | 'patch' | 'head' | 'delete' | 'options' | 'trace';

/** Answers worth another try: the request was not processed (408, 429) or the server failed (5xx). */
export const RETRY_STATUS_CODES: readonly number[] = [408, 429, 500, 502, 503, 504];
/**
 * Network failures worth another try. DNS "not found", TLS and protocol failures are not.
 * ERR_SOCKET_CLOSED_BEFORE_CONNECTION: the socket closed while connecting with the request still
 * buffered (a refused connection seen through the pending write first): nothing was sent.
 */
export const RETRY_ERROR_CODES: readonly string[] = [
  'ETIMEDOUT',
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ERR_STREAM_PREMATURE_CLOSE',
  'ERR_SOCKET_CLOSED_BEFORE_CONNECTION',
];
/** Methods retried after any retryable failure; others only after a 429. */
export const SAFE_METHODS: readonly Method[] = ['GET', 'HEAD'];

/** The schema's retry option with every field set: its defaults come from schemas/common.schema.json. */
export function resolveRetry(retry: RetryOptions | undefined, at = 'retry'): Required<RetryOptions> {
  return validate<Required<RetryOptions>>('common.schema.json', retry ?? {}, { definition: 'retry', at, what: 'retry options' });
}

/** Seen by a client for every attempt (thinkube-control's request/response events). */
export type ExchangeEvent =
  | { type: 'request'; method: string; url: string; attempt: number }
  | { type: 'response'; method: string; url: string; status: number; attempt: number };

export interface HttpClientOptions {
  service: HttpService;
  /** Time limit of each attempt, in seconds (a validated option: its default lives in the schema). */
  timeoutSeconds: number;
  /** Verify certificates (validated option). */
  validateCerts: boolean;
  /** PEM bundle of extra CAs, added to the system's. */
  caFile?: string | undefined;
  /** Plain HTTP to hosts that are not loopback too (loopback hosts always may). */
  plainHttp?: boolean | undefined;
  /** The schema's retry option; resolved (validated, defaulted) here. */
  retry?: RetryOptions | undefined;
  /** Methods retried after any retryable failure. Default SAFE_METHODS. */
  retryMethods?: readonly Method[];
  headers?: Record<string, string>;
  /** Default false: a redirect is the caller's answer to handle. */
  followRedirect?: boolean;
  /** Default true. Off to keep the bytes a digest covers. */
  decompress?: boolean;
  /** Values never to show (passwords, tokens; with a username, the Basic encodings too). */
  secrets?: ReadonlyArray<{ secret: string | undefined; username?: string | undefined }>;
  signal?: AbortSignal | undefined;
  /** Told about every retry before its wait. */
  onRetry?: RetryListener | undefined;
  onExchange?: ((event: ExchangeEvent) => void) | undefined;
}

/** A retryable failure about to be retried (for `beforeRetry`). */
export interface RetryFailure {
  /** The retry about to go out: 1 is the first retry. */
  attempt: number;
  status?: number;
  errorCode?: string;
}

export interface HttpRequest {
  method: Method;
  url: string | URL;
  headers?: Record<string, string>;
  body?: Buffer | string;
  json?: unknown;
  form?: Record<string, string>;
  /** What the request is for, in messages: `read project "library"`. */
  what?: string;
  /** How messages show the request's URL. Default: the URL without its query. */
  display?: string;
  /** What a retry event says is retried. Default: METHOD display. */
  operation?: string;
  /** Methods retried after any retryable failure, for this request. */
  retryMethods?: readonly Method[];
  /**
   * Runs after the wait and before the retry goes out. Throw to stop retrying:
   * request() rejects with what was thrown.
   */
  beforeRetry?: (failure: RetryFailure) => Promise<void> | void;
  /** Per-call controls over the client's. */
  signal?: AbortSignal | undefined;
  onRetry?: RetryListener | undefined;
}

export interface HttpResponse extends RequestInfo {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** The body as UTF-8 text. */
  text(): string;
  /** The body parsed as JSON; undefined when it is empty or not JSON. */
  json(): unknown;
  /** One header, repeated ones joined with ", ". */
  header(name: string): string | undefined;
}

/**
 * A Retry-After header in ms: delay-seconds, or an HTTP date (a date already past: 1 ms, as got
 * did); undefined when absent or unreadable.
 */
export function retryAfterMs(value: string | string[] | undefined): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined || text.trim() === '') return undefined;
  const seconds = Number(text);
  if (!Number.isNaN(seconds)) return seconds >= 0 ? seconds * 1000 : undefined;
  const date = Date.parse(text);
  if (Number.isNaN(date)) return undefined;
  return Math.max(1, date - Date.now());
}

/** The request body and the content-type it implies: body as given, else form, else json (got's order). */
function payload(req: HttpRequest): { body?: Buffer; type?: string } {
  if (req.body !== undefined) return { body: Buffer.isBuffer(req.body) ? req.body : Buffer.from(req.body, 'utf8') };
  if (req.form !== undefined) return { body: Buffer.from(new URLSearchParams(req.form).toString(), 'utf8'), type: 'application/x-www-form-urlencoded' };
  if (req.json !== undefined) return { body: Buffer.from(JSON.stringify(req.json), 'utf8'), type: 'application/json' };
  return {};
}

/** Header names in lower case (later sources win); undefined values dropped. */
function mergeHeaders(...sources: Array<Record<string, string> | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const source of sources) {
    for (const [name, value] of Object.entries(source ?? {})) if (value !== undefined) out[name.toLowerCase()] = value;
  }
  return out;
}

export class HttpClient {
  readonly service: HttpService;
  readonly timeoutSeconds: number;
  /** The resolved retry option. */
  readonly retry: Readonly<Required<RetryOptions>>;
  readonly plainHttp: boolean;
  readonly errors: HttpErrors;
  readonly #settings: RetrySettings;
  readonly #redactor = new Redactor();
  readonly #retryMethods: readonly Method[];
  readonly #signal: AbortSignal | undefined;
  readonly #onRetry: RetryListener | undefined;
  readonly #onExchange: ((event: ExchangeEvent) => void) | undefined;
  readonly #headers: Record<string, string>;
  readonly #tls: ReturnType<typeof httpsOptions>;
  readonly #followRedirect: boolean;
  readonly #decompress: boolean;

  constructor(options: HttpClientOptions) {
    this.service = options.service;
    this.timeoutSeconds = options.timeoutSeconds;
    this.retry = Object.freeze(resolveRetry(options.retry));
    this.#settings = retrySettings(this.retry);
    this.plainHttp = options.plainHttp === true;
    for (const s of options.secrets ?? []) this.#redactor.add(s.secret, s.username);
    this.errors = new HttpErrors(options.service, this.#redactor);
    this.#retryMethods = options.retryMethods ?? SAFE_METHODS;
    this.#signal = options.signal;
    this.#onRetry = options.onRetry;
    this.#onExchange = options.onExchange;
    // No cookie store: cookies are never kept or sent (Harbor's CSRF check only applies to cookie sessions).
    this.#headers = mergeHeaders({ 'user-agent': 'thinkube-custom-images' }, options.headers);
    this.#tls = httpsOptions({ validateCerts: options.validateCerts, caFile: options.caFile }, options.service.name);
    this.#followRedirect = options.followRedirect === true;
    this.#decompress = options.decompress !== false;
  }

  /** Text with every secret of this client replaced. */
  redact(text: string): string {
    return this.#redactor.redact(text);
  }

  /**
   * One exchange, retried under the policy. Resolves with any HTTP status (after the retries a
   * retryable one earned); rejects with a classified ThinkubeImageError when no answer came.
   */
  async request(req: HttpRequest): Promise<HttpResponse> {
    const url = new URL(req.url);
    const info: RequestInfo = { method: req.method, display: req.display ?? `${url.origin}${url.pathname}`, host: url.host, what: req.what, retries: 0 };
    const signal = req.signal ?? this.#signal;
    const budget = new RetryBudget(req.operation ?? `${req.method} ${info.display}`, this.#settings, { onRetry: req.onRetry ?? this.#onRetry });
    const gaveUp = (): string | undefined => (budget.exhausted && budget.retries < this.retry.limit ? budget.exhausted : undefined);
    if (!this.#plainAllowed(url)) throw this.errors.plainHttp(info);
    const method = req.method.toUpperCase();
    const retryMethods = (req.retryMethods ?? this.#retryMethods).map((m) => m.toUpperCase());
    const { body, type } = payload(req);
    const headers = mergeHeaders(this.#headers, req.headers);
    if (type && headers['content-type'] === undefined) headers['content-type'] = type;
    const onExchange = this.#onExchange;
    const beforeRedirect = (next: URL): void => {
      if (!this.#plainAllowed(next)) throw this.errors.plainHttp({ ...info, display: `${next.origin}${next.pathname}`, host: next.host });
    };
    for (let attempt = 1; ; attempt++) {
      onExchange?.({ type: 'request', method: req.method, url: info.display, attempt });
      let response: TransportResponse | undefined;
      let error: unknown;
      try {
        response = await exchange({
          method,
          url,
          headers,
          body,
          timeoutMs: Math.round(this.timeoutSeconds * 1000),
          decompress: this.#decompress,
          tls: this.#tls,
          followRedirect: this.#followRedirect,
          beforeRedirect,
          signal,
        });
      } catch (failure) {
        // A redirect refused (plain HTTP off loopback): already the service's error.
        if (failure instanceof ThinkubeImageError) throw failure;
        error = failure;
      }
      if (response) onExchange?.({ type: 'response', method: req.method, url: info.display, status: response.status, attempt });
      const status = response?.status;
      const code = (error as { code?: unknown } | undefined)?.code;
      const allowed = retryMethods.includes(method);
      // A 429 whatever the method: the server did not process the request.
      const retryable =
        !signal?.aborted &&
        (response ? status === 429 || (allowed && RETRY_STATUS_CODES.includes(response.status)) : allowed && typeof code === 'string' && RETRY_ERROR_CODES.includes(code));
      const delay = retryable
        ? budget.take(response ? `HTTP ${response.status}` : typeof code === 'string' ? code : (error as Error).message, response ? retryAfterMs(response.headers['retry-after']) : undefined)
        : undefined;
      if (delay === undefined) {
        if (response) return this.#answer(response, { ...info, retries: budget.retries, gaveUp: gaveUp() });
        throw this.errors.transport(error, { ...info, retries: budget.retries, gaveUp: gaveUp() }, this.timeoutSeconds, signal?.aborted === true);
      }
      try {
        await sleep(delay, undefined, signal ? { signal } : {});
      } catch (abort) {
        throw this.errors.transport(abort, { ...info, retries: budget.retries }, this.timeoutSeconds, true);
      }
      const failure: RetryFailure = { attempt: budget.retries };
      if (status !== undefined) failure.status = status;
      else if (typeof code === 'string') failure.errorCode = code;
      // What the hook throws stops the retries: request() rejects with it.
      await req.beforeRetry?.(failure);
    }
  }

  #answer(response: TransportResponse, info: RequestInfo): HttpResponse {
    const { body, headers } = response;
    return {
      ...info,
      status: response.status,
      headers,
      body,
      text: () => body.toString('utf8'),
      json: () => {
        if (body.length === 0) return undefined;
        try {
          return JSON.parse(body.toString('utf8')) as unknown;
        } catch {
          return undefined;
        }
      },
      header: (name) => {
        const v = headers[name.toLowerCase()];
        return Array.isArray(v) ? v.join(', ') : v;
      },
    };
  }

  /** The error for an answer that is not the expected one: code from the status (./errors.ts), wording from the caller. */
  error(response: HttpResponse, custom: { message?: string | undefined; hint?: string | undefined; details?: Record<string, unknown> } = {}) {
    return this.errors.status(response, response, custom);
  }

  #plainAllowed(url: URL): boolean {
    return url.protocol !== 'http:' || this.plainHttp || isLoopbackHost(url.host);
  }
}
