/**
 * A flat view of a command's options, derived from its JSON Schema (the single source of truth):
 * used to parse command-line flags, to print --help, and to check the Ansible documentation.
 * Imports no validator, so that --help stays fast.
 */
import { schemaDocuments, type SchemaFile } from './generated/schemas.js';

export type OptionKind = 'string' | 'number' | 'boolean' | 'array' | 'map' | 'object' | 'json';

export interface OptionSpec {
  /** Path of camelCase names, e.g. ['engine', 'host']. */
  path: string[];
  kind: OptionKind;
  description: string;
  required: boolean;
  secret: boolean;
  default?: unknown;
  enum?: unknown[];
  /** For arrays: the kind of the items. */
  itemKind?: OptionKind;
}

type Schema = Record<string, unknown>;

/** Follow $ref inside schemaDocuments, merging sibling keywords (descriptions) over the target. */
export function deref(schema: unknown): Schema {
  let s = (schema ?? {}) as Schema;
  for (let i = 0; i < 8 && typeof s.$ref === 'string'; i++) {
    const [file, pointer = ''] = (s.$ref as string).split('#');
    let target: unknown = schemaDocuments[file as SchemaFile];
    for (const part of pointer.split('/').filter(Boolean)) target = (target as Schema | undefined)?.[part];
    const { $ref: _ref, ...rest } = s;
    s = { ...((target as Schema) ?? {}), ...rest };
  }
  return s;
}

function kindOf(schema: Schema): OptionKind {
  const type = schema.type;
  if (type === 'boolean') return 'boolean';
  if (type === 'number' || type === 'integer') return 'number';
  if (type === 'string') return 'string';
  if (type === 'array') return 'array';
  if (type === 'object') {
    if (schema.properties) return 'object';
    if (schema.additionalProperties && typeof schema.additionalProperties === 'object') {
      const values = deref(schema.additionalProperties);
      if (values.type === 'string') return 'map';
    }
    return 'json';
  }
  return 'json';
}

/**
 * Flatten the schema: nested objects with declared properties become dotted options
 * (engine.host); maps, arrays and free objects stay whole.
 */
export function optionSpecs(file: SchemaFile): OptionSpec[] {
  const out: OptionSpec[] = [];
  const visit = (schema: Schema, prefix: string[], parentRequired: boolean): void => {
    const required = new Set((schema.required as string[] | undefined) ?? []);
    for (const [name, raw] of Object.entries((schema.properties ?? {}) as Record<string, unknown>)) {
      const sub = deref(raw);
      const kind = kindOf(sub);
      const path = [...prefix, name];
      if (kind === 'object') {
        visit(sub, path, parentRequired && required.has(name));
        continue;
      }
      const spec: OptionSpec = {
        path,
        kind,
        description: String(sub.description ?? ''),
        required: parentRequired && required.has(name),
        secret: sub['x-secret'] === true,
      };
      if (sub.default !== undefined) spec.default = sub.default;
      if (Array.isArray(sub.enum)) spec.enum = sub.enum;
      if (kind === 'array') spec.itemKind = kindOf(deref(sub.items));
      out.push(spec);
    }
  };
  visit(deref(schemaDocuments[file]), [], true);
  return out;
}

/** Top-level properties with their schema, for documentation generation and checks. */
export function topLevelProperties(file: SchemaFile): Array<{ name: string; schema: Schema; required: boolean }> {
  const root = deref(schemaDocuments[file]);
  const required = new Set((root.required as string[] | undefined) ?? []);
  return Object.entries((root.properties ?? {}) as Record<string, unknown>).map(([name, raw]) => ({
    name,
    schema: deref(raw),
    required: required.has(name),
  }));
}

export function schemaDescription(file: SchemaFile): string {
  return String(deref(schemaDocuments[file]).description ?? '');
}
