/**
 * thinkube-custom-images: build container images, push them to Harbor (or any OCI registry) and
 * register them with thinkube-control.
 */
export * from './errors.js';
export * from './generated/types.js';
export { validate, schemaDocuments, secretFields, convertName, type Naming, type SchemaFile } from './schema.js';
export { buildImage, runBuild, ociLabels, type BuildResult } from './build.js';
export { pushImage, runPush, resolveCredentials, type PushResult, type TagPushResult } from './push.js';
export { connectEngine, checkEngine, resolveEngineAddress, DEFAULT_ENGINE_HOST, type Engine } from './engine.js';
export { scanContext, packContext, createIgnoreMatcher, readIgnorePatterns, type ContextEntry, type ContextScan, type ScanOptions } from './context.js';
export type { ImageEvent, OperationControls } from './progress.js';
export * from './reference.js';
export * from './docker-config.js';
export * from './registry.js';
export * from './harbor.js';
export * from './scan-gate.js';
export { Redactor, REDACTED } from './redact.js';
export * from './register.js';
export * from './configmap.js';
export * from './catalog-file.js';
export * from './control-client.js';
export * from './preflight.js';
export { runPipeline, type PipelineResult, type PipelineImageResult, type PipelineControls } from './pipeline.js';
export { buildIfChanged, planBuild, type IncrementalBuildResult, type InputPlan } from './incremental.js';
export { computeInputDigest, inputTag, baseImageReferences, INPUT_DIGEST_LABEL } from './input-digest.js';
export { loadCatalog, order, dependants, ancestors, scaffoldImage, formatProblem, type Catalog, type CatalogImage, type BuildOrder, type LintProblem } from './catalog.js';
export { lintImages, type LintResult } from './lint.js';
export { parseDockerfile, stages, type ParsedDockerfile } from './dockerfile.js';
export { buildMultiArchImage, assembleImageIndex, type MultiArchResult, type ImageIndexResult } from './multiarch.js';
export { EnginePool, type EngineSpec } from './engines.js';
