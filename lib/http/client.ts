/**
 * The one HTTP layer of the library, on got: the registry, Harbor and thinkube-control clients all
 * send through it. It owns what they used to repeat:
 * - TLS verified by default, caFile added to the system's CAs (./tls.ts); plain HTTP only to
 *   loopback hosts unless the caller opts in, redirects included; no cookie jar (never a cookie).
 * - Retries through got's own `retry` option: limit, methods, status and error codes from the
 *   policy below, `calculateDelay` giving the backoff of the schema's `retry` option (validated
 *   here, so its defaults come from schemas/common.schema.json) within its total time budget, a
 *   429 retried whatever the method (the server did not process it), each retry reported as the
 *   project's `retry` event before its wait; AbortSignal stops a request and a wait alike.
 * - Failures in the project's error codes (./errors.ts), never with a secret in them.
 * Any HTTP status resolves: what an answer means is the caller's; `error()` words it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import got, { type Got, type Method, type RequestError, type Response } from 'got';
import { RetryBudget, retrySettings, type RetryListener, type RetrySettings } from '../core/retry.js';
import { Redactor } from '../core/redact.js';
import { validate } from '../options/schema.js';
import type { RetryOptions } from '../options/generated/types.js';
import { HttpErrors, type HttpService, type RequestInfo } from './errors.js';
import { httpsOptions, isLoopbackHost } from './tls.js';

export type { Method };

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
   * Runs after the wait and before the retry goes out (got's beforeRetry). Throw to stop retrying:
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

function failureOf(error: unknown, attempt: number): RetryFailure {
  const failure: RetryFailure = { attempt };
  const status = (error as RequestError).response?.statusCode;
  const code = (error as RequestError).code;
  if (status !== undefined) failure.status = status;
  else if (typeof code === 'string') failure.errorCode = code;
  return failure;
}

export class HttpClient {
  readonly service: HttpService;
  readonly timeoutSeconds: number;
  /** The resolved retry option. */
  readonly retry: Readonly<Required<RetryOptions>>;
  readonly plainHttp: boolean;
  readonly errors: HttpErrors;
  readonly #settings: RetrySettings;
  readonly #got: Got;
  readonly #redactor = new Redactor();
  readonly #retryMethods: readonly Method[];
  readonly #signal: AbortSignal | undefined;
  readonly #onRetry: RetryListener | undefined;
  readonly #onExchange: ((event: ExchangeEvent) => void) | undefined;

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
    this.#got = got.extend({
      throwHttpErrors: false,
      responseType: 'buffer',
      decompress: options.decompress !== false,
      followRedirect: options.followRedirect === true,
      timeout: { request: Math.round(options.timeoutSeconds * 1000) },
      https: httpsOptions({ validateCerts: options.validateCerts, caFile: options.caFile }, options.service.name),
      headers: { 'user-agent': 'thinkube-custom-images', ...options.headers },
      // No cookieJar: cookies are never stored or sent (Harbor's CSRF check only applies to cookie sessions).
      retry: {
        limit: this.retry.limit,
        statusCodes: [...RETRY_STATUS_CODES],
        errorCodes: [...RETRY_ERROR_CODES],
        backoffLimit: this.#settings.maxDelayMs,
        // The budget (calculateDelay) decides about a long Retry-After, and says so.
        maxRetryAfter: Number.POSITIVE_INFINITY,
      },
    });
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
    // What a hook threw: request() rejects with it rather than with got's wrapper.
    let stopped: { error: unknown } | undefined;
    const stop = (error: unknown): never => {
      stopped = { error };
      throw error;
    };
    const exchange = this.#onExchange;
    let attempts = 0;
    // When the retry got scheduled is due; undefined once it went out (or none is pending).
    let pending: number | undefined;
    let response: Response<Buffer> | undefined;
    // Hooks of an abandoned call (see the catch below) must not act for the next one.
    let calls = 0;
    while (!response) {
      const call = ++calls;
      const current = (): boolean => call === calls;
      try {
        response = await this.#got(url, {
          method: req.method,
          responseType: 'buffer',
          ...(req.headers ? { headers: req.headers } : {}),
          ...(req.body !== undefined ? { body: req.body } : {}),
          ...(req.json !== undefined ? { json: req.json } : {}),
          ...(req.form !== undefined ? { form: req.form } : {}),
          ...(signal ? { signal } : {}),
          retry: {
            // What is left of the limit: a call after the first continues the same budget.
            limit: this.retry.limit - budget.retries,
            methods: [...(req.retryMethods ?? this.#retryMethods)],
            calculateDelay: ({ error, retryAfter, computedValue }) => {
              if (signal?.aborted || !current()) return 0;
              const status = error.response?.statusCode;
              // got's verdict (limit, methods, status and error codes); a 429 for any method. The
              // budget holds the limit and the total time across calls.
              if (computedValue <= 0 && status !== 429) return 0;
              const delay = budget.take(status ? `HTTP ${status}` : (error.code ?? error.message), retryAfter);
              if (delay === undefined) return 0;
              // 0 would mean "no retry" to got: a Retry-After of 0 waits a millisecond.
              const wait = Math.max(1, delay);
              pending = Date.now() + wait;
              return wait;
            },
          },
          hooks: {
            beforeRetry: [
              async (error: RequestError) => {
                if (!current()) return;
                pending = undefined;
                try {
                  await req.beforeRetry?.(failureOf(error, budget.retries));
                } catch (hookError) {
                  stop(hookError);
                }
              },
            ],
            beforeRedirect: [
              (options) => {
                const next = options.url instanceof URL ? options.url : new URL(String(options.url));
                if (!this.#plainAllowed(next)) stop(this.errors.plainHttp({ ...info, display: `${next.origin}${next.pathname}`, host: next.host }));
              },
            ],
            beforeRequest: [
              () => {
                attempts++;
                exchange?.({ type: 'request', method: req.method, url: info.display, attempt: attempts });
              },
            ],
            afterResponse: [
              (res) => {
                exchange?.({ type: 'response', method: req.method, url: info.display, status: res.statusCode, attempt: attempts });
                return res;
              },
            ],
          },
        });
      } catch (error) {
        if (stopped) throw stopped.error;
        calls++; // the hooks of this call go quiet
        const due = pending;
        if (due !== undefined && !signal?.aborted) {
          // got 14 on Node >= 24.20 (sindresorhus/got#2469): a refused connection also fails the
          // request's end() (ERR_SOCKET_CLOSED_BEFORE_CONNECTION), which rejects the promise while
          // the retry got scheduled waits. That retry was counted and reported: send it.
          pending = undefined;
          try {
            await sleep(Math.max(0, due - Date.now()), undefined, signal ? { signal } : {});
          } catch (abort) {
            throw this.errors.transport(abort, { ...info, retries: budget.retries }, this.timeoutSeconds, true);
          }
          await req.beforeRetry?.(failureOf(error, budget.retries));
          continue;
        }
        throw this.errors.transport(error, { ...info, retries: budget.retries, gaveUp: gaveUp() }, this.timeoutSeconds, signal?.aborted === true);
      }
    }
    const body = response.body ?? Buffer.alloc(0);
    return {
      ...info,
      retries: budget.retries,
      gaveUp: gaveUp(),
      status: response.statusCode,
      headers: response.headers,
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
        const v = response.headers[name.toLowerCase()];
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
