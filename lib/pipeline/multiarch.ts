/**
 * buildMultiArchImage: one multi-architecture image from one build context, outside a catalog.
 * It is the per-image path of the pipeline (lib/pipeline/image.ts) for a single image with
 * several platforms and no registration: one content-addressed build per platform on an engine
 * of the pool that builds it, pushed as <repository>:in-<input digest>, then one index under
 * every tag. An unchanged platform is not rebuilt; an unchanged index leaves the tags alone.
 */
import path from 'node:path';
import { ThinkubeImageError } from '../core/errors.js';
import type { OperationControls } from '../core/progress.js';
import { validate } from '../options/schema.js';
import { formatReference } from '../registry/reference.js';
import { clientsFor } from '../build/incremental.js';
import { EnginesExecutor } from '../build/engines-executor.js';
import { sameRepository, type ImageIndexResult, type IndexMediaTypeChoice } from '../publish/index.js';
import { ImageRun, type RunContext } from './image.js';
import { harborClientFor } from '../harbor/connect.js';
import { resolveCredentials } from '../registry/connect.js';
import type { RetentionResult } from '../publish/retention.js';
import { runJobs } from './pipeline.js';
import type { MultiArchBuildOptions, PipelineOptions } from '../options/generated/types.js';

export type { MultiArchBuildOptions };

export interface PlatformBuildResult {
  /** The platform as requested, e.g. linux/arm64. */
  platform: string;
  /** Name of the engine that built it (undefined when not built). */
  engine?: string;
  /** True when nothing was built: the registry already held an image with these inputs. */
  skipped: boolean;
  reason: string;
  inputDigest: string;
  /** Full reference of the in-<digest> tag that holds this platform's image. */
  inputTag: string;
  /** Manifest digest of the platform's image. */
  digest: string;
  mediaType: string;
  /** Size of the manifest in bytes. */
  size: number;
  /** Compressed size of config and layers. */
  imageSize: number;
  imageId?: string;
  layersUploaded: number;
  createdAt?: string;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
}

export interface MultiArchResult {
  registry: string;
  repository: string;
  tags: string[];
  index: ImageIndexResult;
  platforms: PlatformBuildResult[];
  /** A platform was built, or a tag now points at a new index. */
  changed: boolean;
  /** No platform had to be built. */
  skipped: boolean;
  /** Latest creation time of the platform images. */
  builtAt?: string;
  /** Compressed size of the largest platform image (what one node pulls at most). */
  imageSize: number;
  /** Old input tags removed by keepInputTags (lib/publish/retention.ts). */
  retention?: RetentionResult;
  durationMs: number;
  warnings: string[];
}

/**
 * Build a multi-architecture image: validate the options, connect the engines (engines, else
 * the single engine option), build every platform and put the index under every tag. One
 * platform failing fails the image (after the other platforms finished) and no index is put.
 * Base tags left holding a foreign platform on an engine are put back to its own platform.
 */
export async function buildMultiArchImage(options: MultiArchBuildOptions, controls: OperationControls = {}): Promise<MultiArchResult> {
  const started = Date.now();
  const valid = validate<MultiArchBuildOptions>('multiarch-build-options.schema.json', options, { what: 'multi-architecture build options' });
  const { first, tagNames } = sameRepository(valid.tags, `the multi-architecture image ${valid.tags[0]}`);
  const { engines, engine, platforms, indexMediaType, ...build } = valid;
  const executor = new EnginesExecutor({ engines, engine, registry: first.registry, auth: valid.auth, registryTls: valid.registryTls });
  const repository = `${first.registry}/${first.repository}`;
  await executor.check(platforms, repository);
  const settings = { imagesDir: valid.context, registry: first.registry, force: valid.force, noCache: valid.noCache, keepInputTags: valid.keepInputTags, register: false } as PipelineOptions;
  const ctx: RunContext = {
    options: settings,
    tagNames,
    buildArgs: valid.buildArgs ?? {},
    executor,
    clients: clientsFor(valid, controls),
    // Input-tag retention uses Harbor's API when the registry is Harbor.
    harbor: valid.keepInputTags === 0 ? undefined : harborClientFor({ registry: first.registry, credentials: await resolveCredentials(first.registry, valid.auth), registryTls: valid.registryTls }),
    dryRun: false,
    controls,
    warnings: [],
    predicted: new Map(),
  };
  const tags = tagNames.map((tag) => formatReference({ ...first, tag, digest: undefined }));
  const run = new ImageRun(
    { name: first.repository, repository: first.repository, build: { ...build, context: path.resolve(valid.context) }, tags, dependsOn: [], platforms, indexMediaType: indexMediaType as IndexMediaTypeChoice | undefined },
    ctx,
  );
  try {
    await runJobs([run], executor.capacity, controls.signal);
  } finally {
    ctx.warnings.push(...(await executor.close()));
  }
  if (run.result.status !== 'done') {
    throw run.failure ?? new ThinkubeImageError('ERR_ABORTED', `${repository}: ${run.result.reason ?? 'not built'}`, { hint: 'Run it again' });
  }
  const details = run.platformDetails().map((d): PlatformBuildResult => {
    const digest = d.built?.digest ?? d.entry?.digest ?? (d.plan.existing as string);
    return {
      platform: d.platform as string,
      engine: d.built?.engine,
      skipped: d.reused,
      reason: d.reused ? `inputs unchanged: ${d.plan.inputTag} already in the registry` : valid.force && d.plan.existing ? 'forced rebuild' : d.plan.uncertain ? `built: ${d.plan.uncertain}, so unchanged inputs cannot be recognised` : d.unusable ? `rebuilt: ${d.unusable}` : 'inputs changed (or first build)',
      inputDigest: d.plan.inputDigest,
      inputTag: d.plan.inputTag,
      digest,
      mediaType: d.entry?.mediaType as string,
      size: d.entry?.size ?? 0,
      imageSize: d.built?.imageSize ?? d.plan.imageSize ?? 0,
      imageId: d.built?.imageId,
      layersUploaded: d.built?.layersUploaded ?? 0,
      createdAt: d.built?.createdAt ?? d.plan.createdAt,
      startedAt: new Date(d.startedAt ?? started).toISOString(),
      finishedAt: new Date(d.finishedAt ?? Date.now()).toISOString(),
      durationMs: (d.finishedAt ?? Date.now()) - (d.startedAt ?? started),
    };
  });
  const created = details.map((p) => p.createdAt).filter((c): c is string => Boolean(c)).sort();
  return {
    registry: first.registry,
    repository: first.repository,
    tags,
    index: run.index as ImageIndexResult,
    platforms: details,
    changed: run.result.changed,
    skipped: run.result.buildSkipped === true,
    builtAt: created[created.length - 1],
    imageSize: run.result.imageSize ?? 0,
    retention: run.result.retention,
    durationMs: Date.now() - started,
    warnings: ctx.warnings,
  };
}
