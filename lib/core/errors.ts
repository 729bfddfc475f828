/**
 * Typed errors. Every failure the library reports is a ThinkubeImageError with a stable `code`
 * (for programs), a message that says what failed, and a `hint` that says what to do (for people).
 * Messages never contain secrets: callers pass secrets only in dedicated fields, never in text.
 */

export type ErrorCode =
  | 'ERR_INVALID_OPTIONS'
  | 'ERR_CONTEXT'
  | 'ERR_ENGINE_UNREACHABLE'
  | 'ERR_ENGINE'
  | 'ERR_BUILD_FAILED'
  | 'ERR_ABORTED'
  | 'ERR_PUSH_FAILED'
  | 'ERR_REGISTRY_UNREACHABLE'
  | 'ERR_REGISTRY_AUTH'
  | 'ERR_REGISTRY'
  | 'ERR_DIGEST_MISMATCH'
  | 'ERR_MANIFEST_NOT_FOUND'
  | 'ERR_REGISTRATION'
  | 'ERR_REGISTRATION_AUTH'
  | 'ERR_ENDPOINT_UNAVAILABLE'
  | 'ERR_CATALOG'
  | 'ERR_HARBOR'
  | 'ERR_LINT'
  | 'ERR_TIMEOUT'
  | 'ERR_SCAN_GATE'
  | 'ERR_QUOTA_EXCEEDED'
  | 'ERR_PLATFORM_MISMATCH'
  | 'ERR_KUBE_CONFIG'
  | 'ERR_KUBE_UNREACHABLE'
  | 'ERR_KUBE_AUTH'
  | 'ERR_KUBE_FORBIDDEN'
  | 'ERR_KUBE'
  | 'ERR_MANIFEST_INVALID'
  | 'ERR_REGISTRATION_NOT_VISIBLE'
  | 'ERR_WORKFLOW'
  | 'ERR_PREFLIGHT';

export interface ErrorDetails {
  [key: string]: unknown;
}

export class ThinkubeImageError extends Error {
  readonly code: ErrorCode;
  /** What the user should check or do next. */
  readonly hint: string | undefined;
  readonly details: ErrorDetails;

  constructor(code: ErrorCode, message: string, options: { hint?: string; cause?: unknown; details?: ErrorDetails } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.hint = options.hint;
    this.details = options.details ?? {};
  }

  /** Message and hint as one human sentence block. */
  get fullMessage(): string {
    return this.hint ? `${this.message}. ${this.hint}` : this.message;
  }

  toJSON(): Record<string, unknown> {
    return { name: this.name, code: this.code, message: this.message, hint: this.hint, ...this.details };
  }
}

export interface FieldProblem {
  /** Option path in the caller's naming, e.g. `tags[0]` or `engine.host`. */
  field: string;
  message: string;
}

export class ValidationError extends ThinkubeImageError {
  readonly problems: FieldProblem[];

  constructor(what: string, problems: FieldProblem[]) {
    const list = problems.map((p) => `${p.field}: ${p.message}`).join('; ');
    super('ERR_INVALID_OPTIONS', `Invalid ${what}: ${list}`, {
      hint: 'Fix the named option(s) and run again',
      details: { problems },
    });
    this.problems = problems;
  }
}

export class BuildError extends ThinkubeImageError {
  /** The failing step as the builder printed it, e.g. "Step 4/9 : RUN make". */
  readonly step: string | undefined;
  /** Last lines of build output before the failure. */
  readonly logTail: string[];

  constructor(message: string, options: { step?: string; logTail: string[]; hint?: string; cause?: unknown; code?: ErrorCode }) {
    super(options.code ?? 'ERR_BUILD_FAILED', message, {
      hint: options.hint ?? 'Read the log tail above the error; fix the Dockerfile or the build context',
      cause: options.cause,
      details: { step: options.step, logTail: options.logTail },
    });
    this.step = options.step;
    this.logTail = options.logTail;
  }
}

export function isThinkubeImageError(error: unknown): error is ThinkubeImageError {
  return error instanceof ThinkubeImageError;
}

export function errorCodeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}
