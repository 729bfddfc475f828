/**
 * Command-line side of the bin/ scripts: flags derived from the command's JSON Schema
 * (--kebab-case, nested options as --engine-host, maps as --build-arg KEY=VALUE), generated
 * --help, and a progress display on stderr. Imports nothing heavy: --help must start fast.
 */
import { readFileSync } from 'node:fs';
import { convertNameLight as convertName } from '../options/naming.js';
import { optionSpecs, schemaDescription, type OptionSpec } from '../options/option-spec.js';
import type { SchemaFile } from '../options/generated/schemas.js';
import type { ImageEvent } from '../core/progress.js';
import { stderrColumns, type TextSink } from './output.js';

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface CliCommandInfo {
  name: string;
  schema: SchemaFile;
  summary: string;
  /** Option filled from a positional argument, e.g. "context". */
  positional?: string;
  /** Extra lines for --help (examples). */
  examples?: string[];
}

function flagName(path: string[]): string {
  return path.map((p) => convertName(p, 'kebab')).join('-');
}

/** A singular alias for list and map options: --tag for tags, --build-arg for build-args. */
function singular(flag: string): string | undefined {
  return flag.endsWith('s') && !flag.endsWith('ss') ? flag.slice(0, -1) : undefined;
}

interface FlagTable {
  byFlag: Map<string, OptionSpec>;
  specs: OptionSpec[];
}

function flagTable(schema: SchemaFile): FlagTable {
  const specs = optionSpecs(schema);
  const byFlag = new Map<string, OptionSpec>();
  for (const spec of specs) {
    const flag = flagName(spec.path);
    byFlag.set(flag, spec);
    if (spec.kind === 'array' || spec.kind === 'map') {
      const alias = singular(flag);
      if (alias && !byFlag.has(alias)) byFlag.set(alias, spec);
    }
  }
  return { byFlag, specs };
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target;
  for (const part of path.slice(0, -1)) {
    if (typeof node[part] !== 'object' || node[part] === null) node[part] = {};
    node = node[part] as Record<string, unknown>;
  }
  node[path[path.length - 1] as string] = value;
}

function getPath(target: Record<string, unknown>, path: string[]): unknown {
  let node: unknown = target;
  for (const part of path) node = (node as Record<string, unknown> | undefined)?.[part];
  return node;
}

function parseValue(spec: OptionSpec, flag: string, raw: string, kind: OptionKindLike = spec.kind): unknown {
  switch (kind) {
    case 'number': {
      const n = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(n)) throw new UsageError(`--${flag} needs a number, got "${raw}"`);
      return n;
    }
    case 'boolean':
      if (/^(true|yes|1|on)$/i.test(raw)) return true;
      if (/^(false|no|0|off)$/i.test(raw)) return false;
      throw new UsageError(`--${flag} needs true or false, got "${raw}"`);
    case 'json':
    case 'object':
      try {
        return JSON.parse(raw) as unknown;
      } catch {
        throw new UsageError(`--${flag} needs JSON, got "${raw}"`);
      }
    default:
      return raw;
  }
}
type OptionKindLike = OptionSpec['kind'];

export interface ParsedArgs {
  options: Record<string, unknown>;
  help: boolean;
  quiet: boolean;
  check: boolean;
  /** Secret values read from the command line, to redact from any output. */
  secrets: string[];
}

/**
 * Parse argv against the schema's options. Secrets may come from a file or an environment
 * variable instead of the command line: --auth-password-file PATH, --auth-password-env NAME.
 */
export function parseArgs(info: CliCommandInfo, argv: string[], env: NodeJS.ProcessEnv = process.env): ParsedArgs {
  const { byFlag } = flagTable(info.schema);
  const options: Record<string, unknown> = {};
  const secrets: string[] = [];
  let help = false;
  let quiet = false;
  let check = false;
  let positionalUsed = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--help' || arg === '-h') {
      help = true;
      continue;
    }
    if (arg === '--quiet' || arg === '-q') {
      quiet = true;
      continue;
    }
    if (arg === '--check') {
      check = true;
      continue;
    }
    if (arg === '--args-file') {
      const file = argv[++i];
      if (!file) throw new UsageError('--args-file needs a path to a JSON file of options');
      let parsed: unknown;
      try {
        parsed = JSON.parse(readFileSync(file, 'utf8'));
      } catch (error) {
        throw new UsageError(`--args-file ${file}: cannot read it as JSON (${(error as Error).message})`);
      }
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new UsageError(`--args-file ${file} must hold a JSON object`);
      Object.assign(options, parsed);
      continue;
    }
    if (!arg.startsWith('--')) {
      if (info.positional && !positionalUsed) {
        options[info.positional] = arg;
        positionalUsed = true;
        continue;
      }
      throw new UsageError(`Unexpected argument "${arg}" (see --help)`);
    }
    let name = arg.slice(2);
    let inline: string | undefined;
    const eq = name.indexOf('=');
    if (eq >= 0) {
      inline = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    let source: 'value' | 'file' | 'env' = 'value';
    let spec = byFlag.get(name);
    if (!spec && name.endsWith('-file') && byFlag.get(name.slice(0, -5))?.secret) {
      spec = byFlag.get(name.slice(0, -5));
      source = 'file';
    } else if (!spec && name.endsWith('-env') && byFlag.get(name.slice(0, -4))?.secret) {
      spec = byFlag.get(name.slice(0, -4));
      source = 'env';
    }
    let negated = false;
    if (!spec && name.startsWith('no-')) {
      const positive = byFlag.get(name.slice(3));
      if (positive?.kind === 'boolean') {
        spec = positive;
        negated = true;
      }
    }
    if (!spec) throw new UsageError(`Unknown option --${name} (see --help)`);
    if (spec.kind === 'boolean' && inline === undefined) {
      setPath(options, spec.path, !negated);
      continue;
    }
    const raw = inline ?? argv[++i];
    if (raw === undefined) throw new UsageError(`--${name} needs a value`);
    let value: string = raw;
    if (source === 'file') {
      try {
        value = readFileSync(raw, 'utf8').replace(/\r?\n$/, '');
      } catch (error) {
        throw new UsageError(`--${name}: cannot read ${raw} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
      }
    } else if (source === 'env') {
      const fromEnv = env[raw];
      if (fromEnv === undefined || fromEnv === '') throw new UsageError(`--${name}: environment variable ${raw} is not set`);
      value = fromEnv;
    }
    if (spec.secret) secrets.push(value);
    if (spec.kind === 'array') {
      const list = (getPath(options, spec.path) as unknown[] | undefined) ?? [];
      list.push(parseValue(spec, name, value, spec.itemKind ?? 'string'));
      setPath(options, spec.path, list);
    } else if (spec.kind === 'map') {
      const at = value.indexOf('=');
      if (at <= 0) throw new UsageError(`--${name} needs KEY=VALUE, got "${value}"`);
      const map = (getPath(options, spec.path) as Record<string, string> | undefined) ?? {};
      map[value.slice(0, at)] = value.slice(at + 1);
      setPath(options, spec.path, map);
    } else {
      setPath(options, spec.path, parseValue(spec, name, value));
    }
  }
  return { options, help, quiet, check, secrets };
}

function wrap(text: string, width: number, indent: number): string {
  const words = text.split(/\s+/).filter(Boolean);
  const lines: string[] = [];
  let line = '';
  for (const word of words) {
    if (line && line.length + word.length + 1 > width - indent) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines.join(`\n${' '.repeat(indent)}`);
}

export function helpText(info: CliCommandInfo, script: string): string {
  const { specs } = flagTable(info.schema);
  const width = Math.min(stderrColumns() ?? 100, 110);
  const out: string[] = [];
  out.push(`Usage: ${script}${info.positional ? ` [${convertName(info.positional, 'kebab').toUpperCase()}]` : ''} [options]`);
  out.push('');
  out.push(wrap(info.summary || schemaDescription(info.schema), width, 0));
  out.push('');
  out.push('Options:');
  for (const spec of specs) {
    const flag = flagName(spec.path);
    const alias = spec.kind === 'array' || spec.kind === 'map' ? singular(flag) : undefined;
    const arg = spec.kind === 'boolean' ? '' : spec.kind === 'map' ? ' KEY=VALUE' : spec.kind === 'array' ? ` ${spec.itemKind === 'number' ? 'N' : 'VALUE'}` : spec.kind === 'number' ? ' N' : spec.kind === 'json' ? ' JSON' : ' VALUE';
    const names = `--${alias ?? flag}${arg}`;
    const notes: string[] = [];
    if (spec.required) notes.push('required');
    if (spec.kind === 'array' || spec.kind === 'map') notes.push('repeatable');
    if (spec.default !== undefined) notes.push(`default ${JSON.stringify(spec.default)}`);
    if (spec.enum) notes.push(`one of ${spec.enum.map((v) => String(v)).join(', ')}`);
    if (spec.secret) notes.push(`or --${flag}-file PATH / --${flag}-env VAR`);
    const text = `${spec.description}${notes.length ? ` (${notes.join('; ')})` : ''}`;
    out.push(`  ${names}`);
    out.push(`      ${wrap(text, width, 6)}`);
  }
  out.push('  --args-file PATH');
  out.push('      Read options from a JSON file (camelCase names as in the library); flags override it.');
  out.push('  --check');
  out.push('      Report what would be done; change nothing.');
  out.push('  --quiet, -q');
  out.push('      No progress on stderr.');
  out.push('  --help, -h');
  out.push('      This help.');
  if (info.examples?.length) {
    out.push('');
    out.push('Examples:');
    for (const example of info.examples) out.push(`  ${example}`);
  }
  out.push('');
  out.push('Output: one JSON object on stdout (the same fields as the Ansible module returns); progress on stderr. Exit 0 on success, 1 on failure, 2 on a usage error.');
  return out.join('\n');
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = -1;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

/**
 * Human progress on stderr: on a terminal a live status line under the step lines; otherwise
 * plain lines that read well in CI logs.
 */
export function createProgressRenderer(stream: TextSink = process.stderr, redact: (s: string) => string = (s) => s): (event: ImageEvent) => void {
  const live = Boolean(stream.isTTY);
  let statusShown = false;
  const width = (): number => Math.max(20, (stream.columns ?? 80) - 1);
  const clear = (): void => {
    if (statusShown) {
      stream.write('\r\u001b[2K');
      statusShown = false;
    }
  };
  const line = (text: string): void => {
    clear();
    stream.write(`${redact(text)}\n`);
  };
  const status = (text: string): void => {
    if (!live) return;
    clear();
    stream.write(redact(text).slice(0, width()));
    statusShown = true;
  };
  const pushTotals = new Map<string, { current: number; total: number }>();
  return (event) => {
    switch (event.type) {
      case 'build-context':
        line(`Sending build context ${event.context}: ${event.files} files, ${formatBytes(event.bytes)}`);
        break;
      case 'build-step':
        line(`Step ${event.step}/${event.total} : ${event.instruction}`);
        break;
      case 'build-log':
        if (live) status(`  ${event.line}`);
        else line(`  ${event.line}`);
        break;
      case 'build-status':
        if (live) status(`  ${event.id ? `${event.id}: ` : ''}${event.status} ${event.progress ?? ''}`);
        else if (!event.progress) line(`  ${event.id ? `${event.id}: ` : ''}${event.status}`);
        break;
      case 'build-image':
        break;
      case 'push-layer': {
        if (event.total) pushTotals.set(event.layer, { current: event.current ?? 0, total: event.total });
        if (event.status === 'Pushing') {
          let current = 0;
          let total = 0;
          for (const t of pushTotals.values()) {
            current += t.current;
            total += t.total;
          }
          status(`Pushing ${event.reference}: ${formatBytes(current)} of ${formatBytes(total)}`);
        } else if (event.status === 'Pushed' || event.status === 'Layer already exists' || event.status.startsWith('Mounted from')) {
          line(`  ${event.layer}: ${event.status}`);
        }
        break;
      }
      case 'push-digest':
        line(`Pushed ${event.reference} ${event.digest}`);
        break;
      case 'retry':
        line(`Retrying ${event.operation} in ${Math.round(event.delayMs / 100) / 10}s (attempt ${event.attempt}): ${event.reason}`);
        break;
      case 'warning':
        line(`Warning: ${event.message}`);
        break;
      case 'info':
        line(event.message);
        break;
      default:
        break;
    }
  };
}
