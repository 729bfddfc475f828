/**
 * Ansible side of the bin/ scripts (non-Python modules, WANT_JSON): read the args file, map
 * snake_case option names to the schema's camelCase ones, and shape the one JSON result Ansible
 * reads (changed, failed, msg, warnings, diff, invocation) with secrets hidden.
 */
import { readFileSync, statSync } from 'node:fs';
import { schemaDocuments, type SchemaFile } from './generated/schemas.js';
import { convertNameLight, snakeToCamel } from './naming.js';
import { deref } from './option-spec.js';

export interface AnsibleArgs {
  /** Module options with camelCase names, `_ansible_*` keys removed. */
  options: Record<string, unknown>;
  checkMode: boolean;
  diffMode: boolean;
  verbosity: number;
  /** The args as Ansible gave them (internal keys removed), for `invocation`. */
  moduleArgs: Record<string, unknown>;
}

/** Ansible runs a WANT_JSON module with exactly one argument: a file holding a JSON object. */
export function looksLikeAnsibleInvocation(argv: string[]): boolean {
  if (argv.length !== 1) return false;
  const file = argv[0] as string;
  if (file.startsWith('-')) return false;
  try {
    if (!statSync(file).isFile()) return false;
    const text = readFileSync(file, 'utf8').trimStart();
    return text.startsWith('{');
  } catch {
    return false;
  }
}

type Schema = Record<string, unknown>;

/**
 * Ansible's templating can hand over numbers and booleans as strings ("1074070", "True", "yes"):
 * convert them the way AnsibleModule's type checks do, guided by the schema's type.
 */
function coerce(value: unknown, schema: Schema | undefined): unknown {
  if (!schema || typeof value !== 'string') return value;
  const text = value.trim();
  switch (schema.type) {
    case 'integer':
      return /^[+-]?\d+$/.test(text) ? Number(text) : value;
    case 'number':
      return text !== '' && Number.isFinite(Number(text)) ? Number(text) : value;
    case 'boolean':
      if (/^(true|yes|on|1|y)$/i.test(text)) return true;
      if (/^(false|no|off|0|n)$/i.test(text)) return false;
      return value;
    default:
      return value;
  }
}

/** Rename snake_case keys to the schema's camelCase names, following nested option objects. */
export function snakeToSchemaNames(value: Record<string, unknown>, schema: Schema): Record<string, unknown> {
  const props = (schema.properties ?? {}) as Record<string, unknown>;
  const bySnake = new Map<string, string>();
  for (const name of Object.keys(props)) bySnake.set(convertNameLight(name, 'snake'), name);
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) {
    const name = bySnake.get(key) ?? (props[key] ? key : key);
    const sub = props[name] ? deref(props[name]) : undefined;
    out[name] =
      sub && sub.properties && item && typeof item === 'object' && !Array.isArray(item)
        ? snakeToSchemaNames(item as Record<string, unknown>, sub)
        : Array.isArray(item) && sub?.items
          ? item.map((element) => coerce(element, deref(sub.items)))
          : coerce(item, sub);
  }
  return out;
}

export function readAnsibleArgs(file: string, schema: SchemaFile): AnsibleArgs {
  const raw = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  const moduleArgs: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw)) {
    // Internal keys (_ansible_check_mode, _ansible_tmpdir, ...) are Ansible's, never options.
    if (!key.startsWith('_ansible_')) moduleArgs[key] = value;
  }
  return {
    options: snakeToSchemaNames(moduleArgs, deref(schemaDocuments[schema])),
    checkMode: raw._ansible_check_mode === true,
    diffMode: raw._ansible_diff === true,
    verbosity: typeof raw._ansible_verbosity === 'number' ? raw._ansible_verbosity : 0,
    moduleArgs,
  };
}

/** Result keys are snake_case; data maps (labels, build args, metadata) keep their own keys. */
const OPAQUE_KEYS = new Set(['labels', 'build_args', 'metadata', 'before', 'after']);

export function toSnakeKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(toSnakeKeys);
  if (!value || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
    const name = /^[a-z][a-zA-Z0-9]*$/.test(key) ? convertNameLight(key, 'snake') : key;
    out[name] = OPAQUE_KEYS.has(name) ? item : toSnakeKeys(item);
  }
  return out;
}

export { snakeToCamel };
