/**
 * One runner for every bin/ script, in both of its roles: an ad hoc command (flags in, one JSON
 * object out, progress on stderr) and an Ansible module (args file in, one JSON result out).
 * The command's work itself is loaded lazily, after its options were validated, so that --help, a
 * usage error and bad options start fast.
 */
import { getCompileCacheDir } from 'node:module';
import path, { basename } from 'node:path';
import { looksLikeAnsibleInvocation, readAnsibleArgs, toSnakeKeys } from './ansible.js';
import { UsageError, createProgressRenderer, helpText, parseArgs, type CliCommandInfo } from './cli.js';
import type { SchemaFile } from '../options/generated/schemas.js';
import type { Naming } from '../options/naming-types.js';
import { optionSpecs } from '../options/option-spec.js';
import type { ImageEvent, OperationControls } from '../core/progress.js';
import { Redactor } from '../core/redact.js';
import { ValidationError, isThinkubeImageError } from '../core/errors.js';
import { convertNameLight } from '../options/naming.js';
import { MIN_SECRET_LENGTH, buildArgSecrets } from '../core/secrets.js';
import { setCodeCacheDir } from '../core/code-cache.js';
import { stderrSink, writeOutput } from './output.js';

export interface CommandContext {
  /** Ansible check mode or --check: report what would happen, change nothing. */
  checkMode: boolean;
  /** Ansible diff mode: include {before, after} where it means something. */
  diffMode: boolean;
  controls: OperationControls;
  /** How the caller spells option names (for validation messages). */
  naming: Naming;
  warn(message: string): void;
}

export interface CommandOutcome {
  changed: boolean;
  msg: string;
  diff?: { before: unknown; after: unknown };
  /** Failures that still carry results (e.g. a pipeline where one image failed). */
  failed?: boolean;
  [key: string]: unknown;
}

export interface CommandImplementation {
  /** `options` are validated against the command's schema (defaults filled in) by runCommand. */
  run(options: Record<string, unknown>, context: CommandContext): Promise<CommandOutcome>;
}

export interface CommandDefinition extends CliCommandInfo {
  /** Ansible module name, e.g. thinkube_image_build (scripts without one are command-line only). */
  module?: string;
  /** Words naming the options in a validation error. Default "<name> options". */
  what?: string;
  load(): Promise<CommandImplementation>;
}

const NO_LOG_PLACEHOLDER = 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER';

/** A secret value of the options, with the option it came from (path in the schema's naming). */
interface FoundSecret {
  value: string;
  /** The option as the caller spells it, for a refusal. */
  field: (naming: 'snake' | 'kebab') => string;
  /** A user name next to a password lets the redactor also hide the Basic-auth encoding. */
  username?: string;
  /** Where a too-short value is explained. */
  why?: string;
}

/** Values of the fields the schema marks x-secret. */
function optionSecrets(schema: SchemaFile, options: Record<string, unknown>): FoundSecret[] {
  const found: FoundSecret[] = [];
  for (const spec of optionSpecs(schema)) {
    if (!spec.secret) continue;
    let node: unknown = options;
    for (const part of spec.path) node = (node as Record<string, unknown> | undefined)?.[part];
    if (typeof node !== 'string' || node === '') continue;
    let parent: unknown = options;
    for (const part of spec.path.slice(0, -1)) parent = (parent as Record<string, unknown> | undefined)?.[part];
    const username = (parent as { username?: unknown } | undefined)?.username;
    found.push({
      value: node,
      field: (naming) => (naming === 'kebab' ? `--${spec.path.map((p) => convertNameLight(p, 'kebab')).join('-')}` : spec.path.map((p) => convertNameLight(p, 'snake')).join('.')),
      username: typeof username === 'string' ? username : undefined,
    });
  }
  return found;
}

/** Build args whose values are secrets (secretBuildArgs, secret-looking names, passwords in URLs). */
function buildArgSecretValues(options: Record<string, unknown>): FoundSecret[] {
  const args = options.buildArgs;
  if (!args || typeof args !== 'object' || Array.isArray(args)) return [];
  const declared = Array.isArray(options.secretBuildArgs) ? options.secretBuildArgs.filter((n): n is string => typeof n === 'string') : [];
  return buildArgSecrets(args as Record<string, string>, declared).values.map(({ name, value, inUrl }) => ({
    value,
    field: (naming) => (naming === 'kebab' ? `--build-arg ${name}` : `build_args.${name}`),
    why: inUrl ? 'holds a URL whose password' : declared.includes(name) ? 'is a secret (secret_build_args) and' : 'is treated as a secret (its name looks like one) and',
  }));
}

/**
 * Secrets shorter than MIN_SECRET_LENGTH are refused before anything runs: every output is
 * redacted by replacing the secret, and a short one would mask ordinary text (a result's digests
 * and names) and show itself through the gaps. The message names the option, never the value.
 */
function refuseShortSecrets(secrets: FoundSecret[], naming: 'snake' | 'kebab', what: string): void {
  const problems = secrets
    .filter((s) => s.value.length < MIN_SECRET_LENGTH)
    .map((s) => ({
      field: s.field(naming),
      message: `${s.why ? `${s.why} ` : ''}is shorter than ${MIN_SECRET_LENGTH} characters: too short to keep out of the output without masking ordinary text; use a longer password or token${s.why?.includes('name looks like') ? ', or a build arg name that does not look like a secret' : ''}`,
    }));
  if (problems.length > 0) throw new ValidationError(what, problems);
}

function hideSecrets(schema: SchemaFile, args: Record<string, unknown>, naming: 'snake' | 'camel'): Record<string, unknown> {
  const copy = structuredClone(args);
  for (const spec of optionSpecs(schema)) {
    if (!spec.secret) continue;
    let node: Record<string, unknown> | undefined = copy;
    const path = spec.path.map((p) => (naming === 'snake' ? p.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`) : p));
    for (const part of path.slice(0, -1)) node = node?.[part] as Record<string, unknown> | undefined;
    const last = path[path.length - 1] as string;
    if (node && typeof node === 'object' && node[last] !== undefined) node[last] = NO_LOG_PLACEHOLDER;
  }
  return copy;
}

/** Strings longer than this are cut in `invocation` (a 1 MB value is not echoed back whole). */
const MAX_ECHOED_CHARS = 2048;

function shortenLongStrings(value: unknown): unknown {
  if (typeof value === 'string') return value.length > MAX_ECHOED_CHARS ? `${value.slice(0, 64)}... (${value.length} characters)` : value;
  if (Array.isArray(value)) return value.map(shortenLongStrings);
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) Object.defineProperty(out, key, { value: shortenLongStrings(item), enumerable: true, writable: true, configurable: true });
    return out;
  }
  return value;
}

function failure(error: unknown): Record<string, unknown> {
  if (isThinkubeImageError(error)) {
    const e = error;
    const { logTail, ...details } = e.details ?? {};
    return {
      failed: true,
      changed: false,
      msg: e.fullMessage,
      error_code: e.code,
      ...(toSnakeKeys(details) as Record<string, unknown>),
      ...(Array.isArray(logTail) && logTail.length ? { log_tail: logTail, stdout_lines: logTail } : {}),
    };
  }
  if (error instanceof UsageError) return { failed: true, changed: false, msg: error.message, error_code: 'ERR_USAGE' };
  // Anything else is a bug of ours: say so plainly, without a stack trace.
  const message = error instanceof Error ? error.message : String(error);
  return {
    failed: true,
    changed: false,
    msg: `Internal error: ${message}. Please report this with the command that caused it.`,
    error_code: 'ERR_INTERNAL',
  };
}

/** At most this many retries become warnings one by one; the rest are counted. */
const MAX_RETRY_WARNINGS = 20;

/** A retry event as an Ansible warning: what was retried, why, and after how long. */
export function retryWarning(event: Extract<ImageEvent, { type: 'retry' }>): string {
  return `Retry ${event.attempt} of ${event.operation} in ${(event.delayMs / 1000).toFixed(1)} s after: ${event.reason}`;
}

/** Error codes of input problems found past the schema (a missing folder, an unreadable CA file). */
const INPUT_ERRORS = new Set(['ERR_INVALID_OPTIONS', 'ERR_CONTEXT', 'ERR_CATALOG']);

/**
 * The option an input error is about, in the caller's naming: the error's `field` detail, or a
 * detail named like a top-level option (e.g. imagesDir holding the folder that was not found).
 */
function optionOf(error: unknown, schema: SchemaFile, naming: Naming): string | undefined {
  if (!isThinkubeImageError(error) || error instanceof ValidationError || !INPUT_ERRORS.has(error.code)) return undefined;
  const top = new Set(optionSpecs(schema).map((spec) => spec.path[0]));
  const field = typeof error.details.field === 'string' ? error.details.field : Object.keys(error.details).find((key) => top.has(key));
  if (!field) return undefined;
  const name = field
    .split('.')
    .map((part) => convertNameLight(part, naming === 'kebab' ? 'kebab' : naming))
    .join(naming === 'kebab' ? '-' : '.');
  return naming === 'kebab' ? `--${name}` : name;
}

function writeResult(result: Record<string, unknown>, redactor: Redactor): void {
  writeOutput(1, `${JSON.stringify(redactor.redactValue(result))}\n`);
}

/**
 * Where the code cache of generated code (lib/core/code-cache.ts) is kept: in Node's compile cache
 * folder (bin/ turns that cache on). An Ansible module uses the folder Node would use: Node's own
 * cache is not turned on for it, as it would keep a new entry for every run (Ansible copies the
 * module to a new path each time).
 */
function codeCacheDir(ansible: boolean): string | undefined {
  if (process.env.NODE_DISABLE_COMPILE_CACHE) return undefined;
  const own = getCompileCacheDir?.();
  if (own || !ansible) return own;
  return process.env.NODE_COMPILE_CACHE || path.join(process.getBuiltinModule('node:os').tmpdir(), 'node-compile-cache');
}

/** Entry point of every bin/ script. */
export async function runCommand(definition: CommandDefinition, argv: string[] = process.argv.slice(2)): Promise<void> {
  const redactor = new Redactor();
  const ansible = looksLikeAnsibleInvocation(argv);
  setCodeCacheDir(codeCacheDir(ansible));
  const warnings: string[] = [];
  let retries = 0;
  // Warnings reported as events; kept for a failure, whose result has no warnings of its own.
  const eventWarnings: string[] = [];
  const abort = new AbortController();
  let interrupted: string | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (interrupted) process.exit(130);
    interrupted = signal;
    abort.abort(new Error(`interrupted by ${signal}`));
  };
  // `on`, not `once`: with no listener of ours left, signal-exit (used by proper-lockfile) would
  // re-raise the signal and kill the process before the result is written.
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let invocation: Record<string, unknown> | undefined;
  let exitCode = 0;
  let result: Record<string, unknown>;
  try {
    let options: Record<string, unknown>;
    let checkMode: boolean;
    let diffMode = false;
    let naming: Naming;
    let onEvent: ((event: ImageEvent) => void) | undefined;
    if (ansible) {
      const args = readAnsibleArgs(argv[0] as string, definition.schema);
      options = args.options;
      checkMode = args.checkMode;
      diffMode = args.diffMode;
      naming = 'snake';
      invocation = { module_args: shortenLongStrings(hideSecrets(definition.schema, args.moduleArgs, 'snake')) };
    } else {
      const parsed = parseArgs(definition, argv);
      if (parsed.help) {
        writeOutput(1, `${helpText(definition, basename(process.argv[1] ?? definition.name))}\n`);
        return;
      }
      options = parsed.options;
      checkMode = parsed.check;
      naming = 'kebab';
      for (const secret of parsed.secrets) redactor.add(secret);
      if (!parsed.quiet) onEvent = createProgressRenderer(stderrSink(), (s) => redactor.redact(s));
    }
    const secrets = [...optionSecrets(definition.schema, options), ...buildArgSecretValues(options)];
    for (const secret of secrets) redactor.add(secret.value, secret.username);
    refuseShortSecrets(secrets, naming === 'snake' ? 'snake' : 'kebab', `${definition.name} options`);
    // Validated before the command (and the engine, SSH and HTTP stacks it imports) is loaded:
    // bad options fail at the cost of a start-up. --help and usage errors load no validator.
    const { validate } = await import('../options/schema.js');
    options = validate<Record<string, unknown>>(definition.schema, options, { naming, what: definition.what ?? `${definition.name} options` });
    const implementation = await definition.load();
    const render = onEvent;
    // Every retry is reported: an event on the progress display and a warning in the result.
    const observe = (event: ImageEvent): void => {
      if (event.type === 'retry') {
        retries++;
        if (retries <= MAX_RETRY_WARNINGS) warnings.push(retryWarning(event));
      } else if (event.type === 'warning' && eventWarnings.length < 50) eventWarnings.push(event.message);
      render?.(event);
    };
    const outcome = await implementation.run(options, {
      checkMode,
      diffMode,
      naming,
      controls: { signal: abort.signal, onEvent: observe },
      warn: (message) => warnings.push(message),
    });
    const { diff, ...rest } = outcome;
    result = toSnakeKeys(rest) as Record<string, unknown>;
    result.failed = outcome.failed === true;
    if (diffMode && diff) result.diff = diff;
    if (outcome.failed) exitCode = 1;
  } catch (error) {
    result = failure(error);
    warnings.push(...eventWarnings);
    // Name the option in the message, so the playbook line to fix is obvious.
    const option = optionOf(error, definition.schema, ansible ? 'snake' : 'kebab');
    if (option && !String(result.msg).includes(option)) result.msg = `${option}: ${String(result.msg)}`;
    exitCode = result.error_code === 'ERR_USAGE' && !ansible ? 2 : 1;
  }
  if (interrupted) {
    // Whatever finished is in the result (e.g. the pipeline's images done / failed / not started);
    // work that completed before the signal took effect stays a success.
    result.msg = `${String(result.msg)} (interrupted by ${interrupted})`;
    result.interrupted = interrupted;
    if (result.failed) exitCode = ansible ? 1 : 130;
  }
  if (retries > MAX_RETRY_WARNINGS) warnings.push(`... and ${retries - MAX_RETRY_WARNINGS} more retries`);
  const allWarnings = [...warnings, ...((result.warnings as string[] | undefined) ?? [])];
  result.warnings = [...new Set(allWarnings)];
  if (invocation) result.invocation = invocation;
  if (!ansible && exitCode !== 0) writeOutput(2, `Error: ${redactor.redact(String(result.msg))}\n`);
  writeResult(result, redactor);
  process.exitCode = exitCode;
}
