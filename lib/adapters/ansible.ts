/**
 * Ansible side of the bin/ scripts (non-Python modules, WANT_JSON): read the args file, map
 * snake_case option names to the schema's camelCase ones, and shape the one JSON result Ansible
 * reads (changed, failed, msg, warnings, diff, invocation) with secrets hidden.
 */
import { readFileSync, statSync } from 'node:fs';
import { schemaDocuments, type SchemaFile } from '../options/generated/schemas.js';
import { convertNameLight, snakeToCamel } from '../options/naming.js';
import { deref } from '../options/option-spec.js';
import { ThinkubeImageError, ValidationError, type FieldProblem } from '../core/errors.js';

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
    const name = bySnake.get(key) ?? key;
    const sub = Object.hasOwn(props, name) ? deref(props[name]) : undefined;
    setOwn(
      out,
      name,
      sub && sub.properties && item && typeof item === 'object' && !Array.isArray(item)
        ? snakeToSchemaNames(item as Record<string, unknown>, sub)
        : Array.isArray(item) && sub?.items
          ? item.map((element) => coerce(element, deref(sub.items)))
          : coerce(item, sub),
    );
  }
  return out;
}

/** Set a key as an own property: a key named __proto__ stays data, never a prototype. */
function setOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

/**
 * Keys that name no option, spelled as the playbook wrote them (the schema check would show them
 * converted, e.g. buildArg as build_arg): top level and inside nested option objects.
 */
export function unknownOptions(value: Record<string, unknown>, schema: Schema, prefix = ''): FieldProblem[] {
  const props = (schema.properties ?? {}) as Record<string, unknown>;
  if (schema.additionalProperties !== false) return [];
  const bySnake = new Map<string, string>();
  for (const name of Object.keys(props)) bySnake.set(convertNameLight(name, 'snake'), name);
  const problems: FieldProblem[] = [];
  for (const [key, item] of Object.entries(value)) {
    const name = bySnake.get(key) ?? (Object.hasOwn(props, key) ? key : undefined);
    if (name === undefined) {
      // Empty or blank keys are shown quoted, so that the message still points at something.
      problems.push({ field: `${prefix}${key.trim() === '' ? JSON.stringify(key) : key}`, message: 'is not a known option (check its spelling)' });
      continue;
    }
    const sub = deref(props[name]);
    if (sub.properties && item && typeof item === 'object' && !Array.isArray(item)) problems.push(...unknownOptions(item as Record<string, unknown>, sub, `${prefix}${key}.`));
  }
  return problems;
}

/**
 * Module args (internal _ansible_ keys removed) as the library's options: names mapped to the
 * schema's, values coerced like Ansible does, unknown names refused as written.
 */
export function ansibleOptions(moduleArgs: Record<string, unknown>, file: SchemaFile): Record<string, unknown> {
  const schema = deref(schemaDocuments[file]);
  const unknown = unknownOptions(moduleArgs, schema);
  if (unknown.length > 0) throw new ValidationError('module options', unknown);
  return snakeToSchemaNames(moduleArgs, schema);
}

export function readAnsibleArgs(file: string, schema: SchemaFile): AnsibleArgs {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (error) {
    throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `The module args file ${file} is not JSON (${(error as Error).message})`, {
      hint: 'Ansible writes this file: run the module through Ansible, or give a file holding a JSON object of options',
    });
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `The module args file ${file} holds no JSON object`, { hint: 'Give a file holding a JSON object of options' });
  }
  const moduleArgs: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw)) {
    // Internal keys (_ansible_check_mode, _ansible_tmpdir, ...) are Ansible's, never options.
    if (!key.startsWith('_ansible_')) setOwn(moduleArgs, key, value);
  }
  return {
    options: ansibleOptions(moduleArgs, schema),
    checkMode: raw._ansible_check_mode === true,
    diffMode: raw._ansible_diff === true,
    verbosity: typeof raw._ansible_verbosity === 'number' ? raw._ansible_verbosity : 0,
    moduleArgs,
  };
}

/** Result keys are snake_case; data maps (labels, build args, metadata) and Kubernetes manifests keep their own keys. */
const OPAQUE_KEYS = new Set(['labels', 'build_args', 'metadata', 'before', 'after', 'manifest']);

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
