/**
 * Validation of every public input against the JSON Schemas in schemas/ (the contract).
 * Field names in errors follow the caller's naming: camelCase for the library, snake_case for
 * Ansible, --kebab-case for the command line.
 */
import type { ErrorObject } from 'ajv';
import { schemaDocuments, type SchemaFile } from './generated/schemas.js';
import { makeValidators, type FileValidators, type Validator } from './generated/validators.js';
import { ValidationError, type FieldProblem } from '../core/errors.js';
import { deref, optionSpecs } from './option-spec.js';
import { convertNameLight } from './naming.js';

export { schemaDocuments, type SchemaFile };

export type { Naming } from './naming-types.js';
import type { Naming } from './naming-types.js';

// The validators are ajv's standalone code, generated from schemas/ by `npm run gen` (compiling
// the schemas at start-up cost every process about 150 ms of CPU); a file's are made on its first use.
const made = new Map<SchemaFile, FileValidators>();

function validatorsOf(file: SchemaFile): FileValidators {
  let found = made.get(file);
  if (!found) {
    found = makeValidators(file, defaultAt);
    if (!found) throw new Error(`schema ${file} has no generated validator: run npm run gen`);
    made.set(file, found);
  }
  return found;
}

/** A fresh copy of the default at a JSON pointer of a schema document (read when it is filled in). */
function defaultAt(file: string, pointer: string): unknown {
  let node: unknown = schemaDocuments[file as SchemaFile];
  for (const part of pointer.split('/').slice(1)) node = (node as Record<string, unknown> | undefined)?.[part.replace(/~1/g, '/').replace(/~0/g, '~')];
  return structuredClone(node);
}

/**
 * Validate `data` (changed in place: defaults filled in) against the file, one of its
 * definitions, or some of its properties. Returns ajv's errors, none when it is valid.
 * Exported for the test that holds the generated validators to ajv compiling schemas/.
 */
export function schemaErrors(file: SchemaFile, data: Record<string, unknown>, part: Pick<ValidateOptions, 'definition' | 'pick'>): ErrorObject[] {
  const validators = validatorsOf(file);
  if (part.pick) return checkPick(file, validators, data, part.pick);
  const fn: Validator | undefined = part.definition ? validators.definitions[part.definition] : validators.root;
  if (!fn) throw new Error(`schema ${file}${part.definition ? ` definition ${part.definition}` : ''} is not registered`);
  return fn(data) ? [] : (fn.errors ?? []);
}

/**
 * Some properties of the file, as the schema {type: object, additionalProperties: false,
 * properties: <the picked ones>} would see them: keys outside the pick are unknown options, the
 * picked ones go through the file's `partial` validator (its properties, none required), and only
 * their defaults are kept. Errors come in ajv's order: unknown keys first, then by property in
 * the order of the pick.
 */
function checkPick(file: SchemaFile, validators: FileValidators, data: Record<string, unknown>, pick: readonly string[]): ErrorObject[] {
  if (!validators.partial) throw new Error(`schema ${file} has no properties to pick`);
  const picked = new Set(pick);
  const errors: ErrorObject[] = [];
  const part: Record<string, unknown> = {};
  for (const key of Object.keys(data)) {
    if (picked.has(key)) part[key] = data[key];
    else errors.push({ instancePath: '', schemaPath: '#/additionalProperties', keyword: 'additionalProperties', params: { additionalProperty: key }, message: 'must NOT have additional properties' });
  }
  if (!validators.partial(part)) {
    const rank = (error: ErrorObject): number => pick.indexOf((error.instancePath.split('/')[1] ?? '').replace(/~1/g, '/').replace(/~0/g, '~'));
    errors.push(...[...(validators.partial.errors ?? [])].sort((a, b) => rank(a) - rank(b)));
  }
  // Defaults of the picked properties only, in the order of the pick (nested ones were filled in place).
  for (const key of pick) if (data[key] === undefined && part[key] !== undefined) data[key] = part[key];
  return errors;
}

/** The schema object a validation runs against: the file, one of its definitions, or some of its properties. */
function partRoot(file: SchemaFile, part: Pick<ValidateOptions, 'definition' | 'pick'>): Record<string, unknown> {
  const doc = schemaDocuments[file] as unknown as { definitions?: Record<string, Record<string, unknown>>; properties?: Record<string, unknown> };
  if (part.definition) return doc.definitions?.[part.definition] ?? {};
  if (part.pick) {
    const properties = Object.fromEntries(part.pick.map((name) => [name, doc.properties?.[name] ?? {}]));
    return { type: 'object', additionalProperties: false, properties };
  }
  return doc as Record<string, unknown>;
}

export const convertName: (name: string, naming: Naming) => string = convertNameLight;

/**
 * Turn an ajv instancePath such as /tags/0 or /engine/host into tags[0] / engine.host in the
 * caller's naming. Only option names are converted: keys of maps (build args, labels, metadata)
 * are data and stay as written.
 */
function pathToField(instancePath: string, naming: Naming, root: unknown): string {
  const parts = instancePath.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  let out = '';
  let schema: Record<string, unknown> | undefined = deref(root);
  for (const part of parts) {
    const props = schema?.properties as Record<string, unknown> | undefined;
    if (/^\d+$/.test(part) && schema?.type === 'array') {
      out += `[${part}]`;
      schema = deref(schema.items);
      continue;
    }
    const isOption = props !== undefined && Object.prototype.hasOwnProperty.call(props, part);
    const name = isOption ? convertName(part, naming) : part;
    out += out ? `.${name}` : name;
    schema = isOption ? deref(props[part]) : schema && typeof schema.additionalProperties === 'object' ? deref(schema.additionalProperties) : undefined;
  }
  if (naming === 'kebab' && out) out = `--${out}`;
  return out;
}

/** The schema object found at an instance path (for naming the missing or extra property). */
function schemaAt(instancePath: string, root: unknown): Record<string, unknown> | undefined {
  let schema: Record<string, unknown> | undefined = deref(root);
  for (const part of instancePath.split('/').slice(1)) {
    const props = schema?.properties as Record<string, unknown> | undefined;
    if (schema?.type === 'array') schema = deref(schema.items);
    else if (props && part in props) schema = deref(props[part]);
    else schema = schema && typeof schema.additionalProperties === 'object' ? deref(schema.additionalProperties) : undefined;
  }
  return schema;
}

function describe(error: ErrorObject, naming: Naming, root: unknown): FieldProblem {
  const params = error.params as Record<string, unknown>;
  let field = pathToField(error.instancePath, naming, root);
  // A property named by `required`/`additionalProperties` is an option name only where the schema declares options.
  const declares = (name: string): boolean => Boolean((schemaAt(error.instancePath, root)?.properties as Record<string, unknown> | undefined)?.[name]);
  const nameOf = (name: string): string => (declares(name) || error.keyword === 'additionalProperties' ? convertName(name, naming) : name);
  let message = error.message ?? 'is invalid';
  switch (error.keyword) {
    case 'additionalProperties': {
      const extra = nameOf(String(params.additionalProperty));
      field = field ? `${field}.${extra}` : naming === 'kebab' ? `--${extra}` : extra;
      message = 'is not a known option (check its spelling)';
      break;
    }
    case 'required': {
      const missing = nameOf(String(params.missingProperty));
      field = field ? `${field}.${missing}` : naming === 'kebab' ? `--${missing}` : missing;
      message = 'is required';
      break;
    }
    case 'dependencies': {
      const missing = convertName(String(params.missingProperty), naming);
      message = `needs ${missing} as well`;
      const prop = convertName(String(params.property), naming);
      field = field ? `${field}.${prop}` : prop;
      break;
    }
    case 'type':
      message = `must be ${String(params.type).replace(',', ' or ')}`;
      break;
    default:
      break;
  }
  return { field: field || '(options)', message };
}

export interface ValidateOptions {
  /** How field names are spelled in errors. Default camel. */
  naming?: Naming;
  /** Words that name the thing validated, for the error message. Default "options". */
  what?: string;
  /** Validate against this definition of the file (e.g. `retry` of common.schema.json) instead of the whole file. */
  definition?: string;
  /** Validate only these top-level properties of the file (the part of its options a class takes). */
  pick?: readonly string[];
  /** Where the value sits in the caller's options (camelCase path such as `retry`): prefixes the field names in errors. */
  at?: string;
}

/**
 * Validate `value` against a schema file. Returns a deep copy with schema defaults applied; throws
 * ValidationError naming every bad field.
 */
export function validate<T>(file: SchemaFile, value: unknown, options: ValidateOptions = {}): T {
  const naming = options.naming ?? 'camel';
  const at = (field: string): string => {
    if (!options.at) return field;
    const prefix = options.at.split('.').map((part) => convertName(part, naming)).join('.');
    const bare = field.replace(/^--/, '');
    const joined = bare === '(options)' ? prefix : `${prefix}.${bare}`;
    return naming === 'kebab' ? `--${joined}` : joined;
  };
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ValidationError(options.what ?? 'options', [{ field: at('(options)'), message: 'must be an object' }]);
  }
  const copy = structuredClone(value) as Record<string, unknown>;
  const errors = schemaErrors(file, copy, options);
  if (errors.length === 0) return copy as T;
  const root = partRoot(file, options);
  const seen = new Set<string>();
  const problems: FieldProblem[] = [];
  for (const error of errors) {
    // ajv-errors wraps the original errors; "if" errors only repeat the branch that failed.
    if (error.keyword === 'if') continue;
    const described = describe(error, naming, root);
    const problem = { ...described, field: at(described.field) };
    const key = `${problem.field}\u0000${problem.message}`;
    if (!seen.has(key)) {
      seen.add(key);
      problems.push(problem);
    }
  }
  throw new ValidationError(options.what ?? 'options', problems);
}

/** Names (camelCase, dotted for nested objects) of every property the schema marks x-secret. */
export function secretFields(file: SchemaFile): string[] {
  return optionSpecs(file)
    .filter((spec) => spec.secret)
    .map((spec) => spec.path.join('.'));
}
