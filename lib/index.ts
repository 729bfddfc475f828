/**
 * thinkube-custom-images: build container images, push them to Harbor (or any OCI registry) and
 * register them with thinkube-control. The public API, by name: what is not exported here is an
 * internal of its folder and may change.
 */
// Errors and options (the generated option types are the schemas' contract).
export { ThinkubeImageError, ValidationError, BuildError, isThinkubeImageError, type ErrorCode, type ErrorDetails, type FieldProblem } from './core/errors.js';
export * from './options/generated/types.js';
export { validate, schemaDocuments, secretFields, convertName, type Naming, type SchemaFile } from './options/schema.js';
export { Redactor, REDACTED } from './core/redact.js';
export type { ImageEvent, OperationControls } from './core/progress.js';

// The pipeline: every image of a folder through plan -> build -> publish -> scan -> register.
export {
  runPipeline,
  type PipelineResult,
  type PipelineImageResult,
  type PipelineControls,
  type ImageStatus,
  type PlatformResult,
  type ImageScanResult,
  type ImageRegistration,
} from './pipeline/pipeline.js';
export { buildMultiArchImage, type MultiArchResult, type PlatformBuildResult } from './pipeline/multiarch.js';
export { runPreflight, summarizePreflight, PREFLIGHT_CHECKS, type PreflightResult, type PreflightCheck, type PreflightCheckName, type PreflightStatus, type PreflightControls } from './pipeline/preflight.js';

// Where builds run.
export type { BuildExecutor, BuildRequest, BuiltImage } from './build/executor.js';
export { EnginesExecutor, type EnginesExecutorOptions } from './build/engines-executor.js';
export { EnginePool, parsePlatform, formatPlatform, platformMatches, type EngineStats, type Platform } from './engine/pool.js';
export { connectEngine, checkEngine, resolveEngineAddress, DEFAULT_ENGINE_HOST, type Engine } from './engine/engine.js';
export { ClusterExecutor } from './build/argo/executor.js';
export { renderWorkflow, type IWorkflow, type WorkflowPlan, type WorkflowBuild, type WorkflowIndex, type WorkflowBase } from './build/argo/workflow.js';
export { validateWorkflow, workflowProblems } from './build/argo/validate.js';
export { contextImageFor, pushContextImage, type ContextImage, type ContextImagePush } from './build/argo/context-image.js';
export { buildStepScript, indexStepScript, type BuildStep, type IndexStep } from './build/argo/step-script.js';
export type { ClusterWorkflowResult } from './pipeline/cluster.js';

// The steps on their own.
export { buildImage, runBuild, ociLabels, type BuildResult } from './build/build.js';
export { buildIfChanged, planBuild, type IncrementalBuildResult, type InputPlan } from './build/incremental.js';
export { pushImage, runPush, type PushResult, type TagPushResult } from './engine/push.js';
export { resolveCredentials } from './registry/connect.js';
export { assembleImageIndex, type ImageIndexResult } from './publish/index.js';
export { moveTags, type TagMove } from './publish/tags.js';
export { retainInputTags, planRetention, isInputTag, type RetentionResult, type RetentionPlan, type RepositoryInventory } from './publish/retention.js';
export { registerImage, registrationEntry, type RegisterResult, type RegisterTarget, type RegisterOutcome, type RegisterEvent, type RegisterControls } from './register/register.js';

// The image set and its checks.
export { loadCatalog, order, dependants, ancestors, scaffoldImage, formatProblem, type Catalog, type CatalogImage, type BuildOrder, type LintProblem } from './source/catalog.js';
export { lintImages, type LintResult } from './source/lint.js';
export { parseDockerfile, stages, type ParsedDockerfile } from './source/dockerfile.js';
export { scanContext, packContext, createIgnoreMatcher, readIgnorePatterns, type ContextEntry, type ContextScan, type ScanOptions } from './source/context.js';
export { computeInputDigest, inputTag, baseImageReferences, INPUT_DIGEST_LABEL } from './source/input-digest.js';

// Clients.
export { RegistryClient, MEDIA_TYPES, type RegistryClientOptions, type ManifestInfo } from './registry/client.js';
export { parseReference, formatReference, withDefaultTag, isValidTag, isValidDigest, type ImageRef } from './registry/reference.js';
export { loadDockerCredentials, dockerConfigPath, type RegistryCredentials } from './registry/docker-config.js';
export { HarborClient, type HarborArtifact, type HarborHealth, type HarborIdentity, type HarborProject } from './harbor/client.js';
export { scanGate, scanGateError, type ScanGateOptions, type ScanGateResult, type SeverityCounts, type MaxSeverity } from './harbor/scan-gate.js';
export { ControlClient, controlApiRoot, type ControlClientOptions } from './register/control-client.js';
export { KubeConnection, type KubeOperation, type KubeStatus } from './kube/connection.js';
export { ConfigMapClient, type ConfigMapRef, type ModifyResult } from './kube/configmaps.js';
