/**
 * thinkube-custom-images: build container images, push them to Harbor (or any OCI registry) and
 * register them with thinkube-control.
 */
export * from './core/errors.js';
export * from './options/generated/types.js';
export { validate, schemaDocuments, secretFields, convertName, type Naming, type SchemaFile } from './options/schema.js';
export { buildImage, runBuild, ociLabels, type BuildResult } from './build/build.js';
export { pushImage, runPush, resolveCredentials, type PushResult, type TagPushResult } from './engine/push.js';
export { connectEngine, checkEngine, resolveEngineAddress, DEFAULT_ENGINE_HOST, type Engine } from './engine/engine.js';
export { scanContext, packContext, createIgnoreMatcher, readIgnorePatterns, type ContextEntry, type ContextScan, type ScanOptions } from './source/context.js';
export type { ImageEvent, OperationControls } from './core/progress.js';
export * from './registry/reference.js';
export * from './registry/docker-config.js';
export * from './registry/client.js';
export * from './harbor/client.js';
export * from './harbor/scan-gate.js';
export { Redactor, REDACTED } from './core/redact.js';
export * from './register/register.js';
export * from './register/configmap.js';
export * from './register/catalog-file.js';
export * from './register/control-client.js';
export * from './pipeline/preflight.js';
export { runPipeline, type PipelineResult, type PipelineImageResult, type PipelineControls, type ImageStatus, type PlatformResult, type ImageScanResult, type ImageRegistration } from './pipeline/pipeline.js';
export type { BuildExecutor, BuildRequest, BuiltImage } from './build/executor.js';
export { EnginesExecutor, type EnginesExecutorOptions } from './build/engines-executor.js';
export { buildIfChanged, planBuild, type IncrementalBuildResult, type InputPlan } from './build/incremental.js';
export { computeInputDigest, inputTag, baseImageReferences, INPUT_DIGEST_LABEL } from './source/input-digest.js';
export { loadCatalog, order, dependants, ancestors, scaffoldImage, formatProblem, type Catalog, type CatalogImage, type BuildOrder, type LintProblem } from './source/catalog.js';
export { lintImages, type LintResult } from './source/lint.js';
export { parseDockerfile, stages, type ParsedDockerfile } from './source/dockerfile.js';
export { buildMultiArchImage, type MultiArchResult, type PlatformBuildResult } from './pipeline/multiarch.js';
export { assembleImageIndex, type ImageIndexResult } from './publish/index.js';
export { EnginePool, type EngineSpec } from './engine/pool.js';
