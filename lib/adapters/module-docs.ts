/**
 * Ansible documentation of a module's options, derived from its JSON Schema so that the two can
 * never disagree (a test checks the committed sidecar files against this).
 */
import type { SchemaFile } from '../options/generated/schemas.js';
import { convertNameLight } from '../options/naming.js';
import { deref, topLevelProperties } from '../options/option-spec.js';

type Schema = Record<string, unknown>;

export interface AnsibleOptionDoc {
  description: string[];
  type: string;
  required?: boolean;
  default?: unknown;
  choices?: unknown[];
  elements?: string;
  no_log?: boolean;
  suboptions?: Record<string, AnsibleOptionDoc>;
}

const PATHY = /(path|file|dir|context|dockerfile|config)$/i;

function sentences(text: string): string[] {
  return [text.trim() || '(no description)'];
}

function typeOf(name: string, schema: Schema): Pick<AnsibleOptionDoc, 'type' | 'elements'> {
  switch (schema.type) {
    case 'boolean':
      return { type: 'bool' };
    case 'integer':
      return { type: 'int' };
    case 'number':
      return { type: 'float' };
    case 'string':
      return { type: PATHY.test(name) ? 'path' : 'str' };
    case 'array': {
      const items = deref(schema.items);
      const element = items.type === 'object' ? 'dict' : items.type === 'boolean' ? 'bool' : items.type === 'number' ? 'float' : items.type === 'integer' ? 'int' : 'str';
      return { type: 'list', elements: element };
    }
    default:
      return { type: schema.type === 'object' ? 'dict' : 'raw' };
  }
}

function optionDoc(name: string, schema: Schema, required: boolean): AnsibleOptionDoc {
  const doc: AnsibleOptionDoc = { description: sentences(String(schema.description ?? '')), ...typeOf(name, schema) };
  if (required) doc.required = true;
  if (schema.default !== undefined) doc.default = schema.default;
  if (Array.isArray(schema.enum)) doc.choices = schema.enum;
  if (schema['x-secret'] === true) doc.no_log = true;
  if (schema.type === 'object' && schema.properties) {
    const req = new Set((schema.required as string[] | undefined) ?? []);
    doc.suboptions = {};
    for (const [sub, raw] of Object.entries(schema.properties as Record<string, unknown>)) {
      doc.suboptions[convertNameLight(sub, 'snake')] = optionDoc(sub, deref(raw), req.has(sub));
    }
  }
  return doc;
}

export function moduleOptionsDoc(file: SchemaFile): Record<string, AnsibleOptionDoc> {
  const out: Record<string, AnsibleOptionDoc> = {};
  for (const { name, schema, required } of topLevelProperties(file)) out[convertNameLight(name, 'snake')] = optionDoc(name, schema, required);
  return out;
}
