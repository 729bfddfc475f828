/**
 * thinkube-custom-images: build container images, push them to Harbor (or any OCI registry) and
 * register them with thinkube-control.
 */
export * from './errors.js';
export * from './generated/types.js';
export { validate, schemaDocuments, secretFields, type Naming, type SchemaFile } from './schema.js';
