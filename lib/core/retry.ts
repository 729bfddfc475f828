/**
 * The retry rules every retried operation shares: exponential backoff with jitter, a Retry-After
 * from the server honoured, bounded by a number of retries and a total time, and every retry
 * reported as a `retry` event (Ansible shows them as warnings). HTTP requests get them through
 * HttpClient's retry loop (lib/http/client.ts: `take`, then its own abortable wait); engine pushes
 * wait here (`wait`). What is safe to retry is each caller's decision: only requests that cannot have
 * taken effect, or that are idempotent.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { RetryOptions } from '../options/generated/types.js';

export type { RetryOptions };

export interface RetrySettings {
  /** Retries after the first attempt (0: none). */
  limit: number;
  /** No retry starts when the time since the first attempt plus the wait would exceed this. */
  maxTotalMs: number;
  /** Wait before the first retry; doubled for each further one. */
  initialDelayMs: number;
  /** Upper bound of one backoff wait. */
  maxDelayMs: number;
  /** A Retry-After longer than this is not waited for: no retry. Default maxDelayMs. */
  maxRetryAfterMs?: number;
}

/** Reported before each wait. `attempt` counts retries: 1 is the first retry. */
export interface RetryEvent {
  type: 'retry';
  /** What is retried, e.g. "push harbor.example.com/library/x:latest" or "GET https://.../v2/". */
  operation: string;
  attempt: number;
  delayMs: number;
  /** Why, e.g. "HTTP 503" or "ECONNRESET"; never carries credentials. */
  reason: string;
}

export type RetryListener = (event: RetryEvent) => void;

/** Upward jitter: a wait is never shorter than the backoff, up to this fraction longer. */
export const JITTER = 0.25;

/**
 * Settings from the schema's `retry` option (seconds). A validated option carries every field (the
 * defaults live in schemas/common.schema.json): pass it alone. `defaults` fill what is missing.
 */
export function retrySettings(options: Required<RetryOptions>): RetrySettings;
export function retrySettings(options: RetryOptions | undefined, defaults: RetrySettings): RetrySettings;
export function retrySettings(options: RetryOptions | undefined, defaults?: RetrySettings): RetrySettings {
  const ms = (seconds: number | undefined, fallback: number | undefined): number => {
    const value = seconds === undefined ? fallback : Math.round(seconds * 1000);
    if (value === undefined) throw new TypeError('retrySettings: an option without defaults must be validated (every field set)');
    return value;
  };
  const limit = options?.limit ?? defaults?.limit;
  if (limit === undefined) throw new TypeError('retrySettings: an option without defaults must be validated (every field set)');
  return {
    limit,
    maxTotalMs: ms(options?.maxTotalSeconds, defaults?.maxTotalMs),
    initialDelayMs: ms(options?.initialDelaySeconds, defaults?.initialDelayMs),
    maxDelayMs: ms(options?.maxDelaySeconds, defaults?.maxDelayMs),
  };
}

/** Wait before retry number `retry` (0-based): initial x 2^retry, capped, plus up to 25% jitter. */
export function backoffDelay(retry: number, settings: Pick<RetrySettings, 'initialDelayMs' | 'maxDelayMs'>, random: () => number = Math.random): number {
  const base = Math.min(settings.maxDelayMs, settings.initialDelayMs * 2 ** retry);
  return Math.min(settings.maxDelayMs, Math.round(base * (1 + JITTER * random())));
}

/**
 * One operation's retry budget. After a retryable failure, `take(reason)` reports the retry and
 * returns the wait (for a caller that sleeps itself, like HttpClient), `wait(reason)` reports, sleeps
 * (abortable) and resolves true. Both say no (undefined, false) when the budget (count, total
 * time, a too long Retry-After) is spent and the caller should give up with the last failure.
 */
export class RetryBudget {
  readonly started = Date.now();
  /** Retries done so far. */
  retries = 0;
  /** Why the budget refused the last retry (for the final error message). */
  exhausted: string | undefined;

  constructor(
    readonly operation: string,
    readonly settings: RetrySettings,
    private readonly hooks: { onRetry?: RetryListener | undefined; signal?: AbortSignal | undefined } = {},
  ) {}

  /** The wait before the next retry, or undefined when no retry is left (see `exhausted`). */
  next(retryAfterMs?: number): number | undefined {
    if (this.retries >= this.settings.limit) {
      this.exhausted = this.settings.limit === 0 ? 'retries are off' : `gave up after ${this.retries} ${this.retries === 1 ? 'retry' : 'retries'}`;
      return undefined;
    }
    const maxRetryAfter = this.settings.maxRetryAfterMs ?? this.settings.maxDelayMs;
    if (retryAfterMs !== undefined && retryAfterMs > maxRetryAfter) {
      this.exhausted = `the server asked to retry after ${Math.ceil(retryAfterMs / 1000)} s, longer than the ${maxRetryAfter / 1000} s allowed`;
      return undefined;
    }
    const delay = retryAfterMs ?? backoffDelay(this.retries, this.settings);
    if (Date.now() - this.started + delay > this.settings.maxTotalMs) {
      this.exhausted = `gave up after ${this.retries} ${this.retries === 1 ? 'retry' : 'retries'}: the ${Math.round(this.settings.maxTotalMs / 1000)} s retry time budget is spent`;
      return undefined;
    }
    return delay;
  }

  /** Count and report the next retry; its wait in ms, or undefined when no retry is left (see `exhausted`). */
  take(reason: string, retryAfterMs?: number): number | undefined {
    const delayMs = this.next(retryAfterMs);
    if (delayMs === undefined) return undefined;
    this.retries++;
    try {
      this.hooks.onRetry?.({ type: 'retry', operation: this.operation, attempt: this.retries, delayMs, reason });
    } catch {
      // A failing listener must not change what is retried.
    }
    return delayMs;
  }

  /** Report and wait; false when no retry is left. Rejects (AbortError) when the signal fires. */
  async wait(reason: string, retryAfterMs?: number): Promise<boolean> {
    const delayMs = this.take(reason, retryAfterMs);
    if (delayMs === undefined) return false;
    await sleep(delayMs, undefined, this.hooks.signal ? { signal: this.hooks.signal } : {});
    return true;
  }
}
