/**
 * Defaults straight from the JSON Schemas (the single source of truth), for code reached with
 * options that validate() did not default. Imports no validator.
 */
import { schemaDocuments, type SchemaFile } from './generated/schemas.js';

type SchemaAt<T, P extends string> = P extends `${infer Head}/${infer Rest}` ? (Head extends keyof T ? SchemaAt<T[Head], Rest> : never) : P extends keyof T ? T[P] : never;
/** The type of the `default` at `pointer` in a schema file; never when there is none. */
export type SchemaDefault<F extends SchemaFile, P extends string> = [SchemaAt<(typeof schemaDocuments)[F], P>] extends [never] ? never : SchemaAt<(typeof schemaDocuments)[F], P> extends { default: infer D } ? D : never;

/**
 * The `default` a schema gives at `pointer` (a JSON pointer below the document, without '#/'),
 * e.g. schemaDefault('build-options.schema.json', 'properties/stallTimeoutSeconds'). For code that
 * can be reached with options validate() did not default (an internal entry point called with
 * another schema's options, an optional object left out): the schema stays the one place the value
 * is written. A pointer without a default does not compile; read at each call, never copied.
 */
export function schemaDefault<F extends SchemaFile, P extends string>(file: F, pointer: P & ([SchemaDefault<F, P>] extends [never] ? never : P)): SchemaDefault<F, P> {
  let node: unknown = schemaDocuments[file];
  for (const part of pointer.split('/')) node = (node as Record<string, unknown> | undefined)?.[part];
  const value = (node as { default?: unknown } | undefined)?.default;
  if (value === undefined) throw new Error(`${file} has no default at ${pointer}`);
  return value as SchemaDefault<F, P>;
}
