/**
 * One runner for every bin/ script, in both of its roles: an ad hoc command (flags in, one JSON
 * object out, progress on stderr) and an Ansible module (args file in, one JSON result out).
 * The command's work itself is loaded lazily so that --help starts fast.
 */
import { basename } from 'node:path';
import { looksLikeAnsibleInvocation, readAnsibleArgs, toSnakeKeys } from './ansible.js';
import { UsageError, createProgressRenderer, helpText, parseArgs, type CliCommandInfo } from './cli.js';
import type { SchemaFile } from '../options/generated/schemas.js';
import type { Naming } from '../options/naming-types.js';
import { optionSpecs } from '../options/option-spec.js';
import type { ImageEvent, OperationControls } from '../core/progress.js';
import { Redactor } from '../core/redact.js';
import { ValidationError, isThinkubeImageError } from '../core/errors.js';
import { convertNameLight } from '../options/naming.js';
import { buildArgSecrets } from '../core/secrets.js';

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
  run(options: Record<string, unknown>, context: CommandContext): Promise<CommandOutcome>;
}

export interface CommandDefinition extends CliCommandInfo {
  /** Ansible module name, e.g. thinkube_image_build (scripts without one are command-line only). */
  module?: string;
  load(): Promise<CommandImplementation>;
}

const NO_LOG_PLACEHOLDER = 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER';

function collectSecrets(schema: SchemaFile, options: Record<string, unknown>, redactor: Redactor): void {
  for (const spec of optionSpecs(schema)) {
    if (!spec.secret) continue;
    let node: unknown = options;
    for (const part of spec.path) node = (node as Record<string, unknown> | undefined)?.[part];
    if (typeof node !== 'string') continue;
    // A user name next to a password lets the redactor also hide the Basic-auth encoding.
    let parent: unknown = options;
    for (const part of spec.path.slice(0, -1)) parent = (parent as Record<string, unknown> | undefined)?.[part];
    const username = (parent as { username?: unknown } | undefined)?.username;
    redactor.add(node, typeof username === 'string' ? username : undefined);
  }
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

/** Build args whose values are secrets (secretBuildArgs, secret-looking names) join the redacted values. */
function collectBuildArgSecrets(options: Record<string, unknown>, redactor: Redactor): void {
  const args = options.buildArgs;
  if (!args || typeof args !== 'object' || Array.isArray(args)) return;
  const declared = Array.isArray(options.secretBuildArgs) ? options.secretBuildArgs.filter((n): n is string => typeof n === 'string') : [];
  buildArgSecrets(args as Record<string, string>, declared, redactor);
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
  process.stdout.write(`${redactor.redact(JSON.stringify(result))}\n`);
}

/** Entry point of every bin/ script. */
export async function runCommand(definition: CommandDefinition, argv: string[] = process.argv.slice(2)): Promise<void> {
  const redactor = new Redactor();
  const ansible = looksLikeAnsibleInvocation(argv);
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
      collectSecrets(definition.schema, options, redactor);
      collectBuildArgSecrets(options, redactor);
      invocation = { module_args: shortenLongStrings(hideSecrets(definition.schema, args.moduleArgs, 'snake')) };
    } else {
      const parsed = parseArgs(definition, argv);
      if (parsed.help) {
        process.stdout.write(`${helpText(definition, basename(process.argv[1] ?? definition.name))}\n`);
        return;
      }
      options = parsed.options;
      checkMode = parsed.check;
      naming = 'kebab';
      collectSecrets(definition.schema, options, redactor);
      collectBuildArgSecrets(options, redactor);
      for (const secret of parsed.secrets) redactor.add(secret);
      if (!parsed.quiet) onEvent = createProgressRenderer(process.stderr, (s) => redactor.redact(s));
    }
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
  if (!ansible && exitCode !== 0) process.stderr.write(`Error: ${redactor.redact(String(result.msg))}\n`);
  writeResult(result, redactor);
  process.exitCode = exitCode;
}
