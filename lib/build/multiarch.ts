/**
 * Multi-architecture images: one content-addressed build per platform, each on an engine of the
 * pool that can build it and pushed as <repository>:in-<input digest>, then one OCI image index
 * (or Docker manifest list) naming every platform's manifest, put under every requested tag
 * through the registry API. The client never pulls a layer: the index is a small JSON document
 * that points at manifests the engines already pushed.
 *
 * An unchanged platform (its in-<digest> tag exists and holds an image of that platform) is not
 * rebuilt; an unchanged index (same bytes, so same digest) leaves the tags alone: changed=false.
 */
import path from 'node:path';
import { runBuild } from './build.js';
import { scanContext, type ContextScan } from '../source/context.js';
import { EnginePool, formatPlatform, parsePlatform, platformMatches, type EngineLease, type Platform } from '../engine/pool.js';
import { ThinkubeImageError, isThinkubeImageError } from '../core/errors.js';
import { INPUT_DIGEST_LABEL } from '../source/input-digest.js';
import { planBuild, type InputPlan } from './incremental.js';
import { emit, type OperationControls } from '../core/progress.js';
import { registryClientFor, resolveCredentials, runPush } from '../engine/push.js';
import { formatReference, parseReference, withDefaultTag, type ImageRef } from '../registry/reference.js';
import type { RegistryClient } from '../registry/client.js';
import { validate } from '../options/schema.js';
import { describeImageManifest, putImageIndex, sameRepository, type ImageIndexResult, type IndexEntry, type IndexMediaTypeChoice } from '../publish/index.js';
import type { BuildOptions, MultiArchBuildOptions, PushOptions } from '../options/generated/types.js';

export type { MultiArchBuildOptions, Platform };
export { EnginePool, formatPlatform, parsePlatform, platformMatches };

/**
 * What buildMultiArch builds: the options of a single build (its tags name the index) with the
 * platforms instead of one platform. `retry` and `stallTimeoutSeconds` also apply to the pushes.
 */
export type MultiArchBuild = Omit<BuildOptions, 'platform' | 'engine' | 'skipUnchanged' | 'cacheFrom' | 'cacheFromRegistry'> & {
  platforms: string[];
  indexMediaType?: IndexMediaTypeChoice;
  retry?: PushOptions['retry'];
};

// ---------------------------------------------------------------------------- building

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
  durationMs: number;
  warnings: string[];
}

export interface PlatformPlan {
  platform: string;
  plan: InputPlan;
  /** The existing image, when it is in the registry and is for this platform. */
  existing?: IndexEntry;
  /** Why an existing in-<digest> image cannot be reused. */
  unusable?: string;
}

export interface MultiArchPlan {
  registry: string;
  repository: string;
  platforms: PlatformPlan[];
  /** Platforms that would be built. */
  toBuild: string[];
  /** When nothing needs building: the index that would result (dryRun). */
  index?: ImageIndexResult;
  /** Something would change (a build, or a tag moving). */
  changed: boolean;
}

interface Prepared {
  first: ImageRef;
  tagNames: string[];
  client: RegistryClient;
}

async function prepare(options: MultiArchBuild): Promise<Prepared> {
  const { first, tagNames } = sameRepository(options.tags, `the multi-architecture image ${options.tags[0]}`);
  const client = registryClientFor(first.registry, await resolveCredentials(first.registry, options.auth), options.registryTls);
  return { first, tagNames, client };
}

/**
 * The BuildOptions of one platform's build: tagged only with its in-<digest> tag. pull is off:
 * the bases were pulled for the platform just before (an engine-side pull would not send the
 * registry credentials, and would race with builds of other platforms).
 */
function platformBuildOptions(options: MultiArchBuild, platform: string, tags: [string, ...string[]]): BuildOptions {
  const { platforms: _platforms, indexMediaType: _indexMediaType, retry: _retry, ...build } = options;
  return { ...build, tags, platform, pull: false, skipUnchanged: true, cacheFromRegistry: false };
}

async function planPlatform(pool: EnginePool, options: MultiArchBuild, scan: ContextScan, platform: string, prepared: Prepared): Promise<PlatformPlan> {
  const engine = (pool.candidates(platform)[0] ?? pool.engines[0])!.engine;
  const plan = await planBuild(engine, platformBuildOptions(options, platform, [options.tags[0] as string]), scan);
  if (!plan.existing) return { platform, plan };
  let existing: IndexEntry;
  try {
    existing = await describeImageManifest(prepared.client, prepared.first.repository, plan.existing);
  } catch (error) {
    return { platform, plan, unusable: `${plan.inputTag} cannot be read (${(error as Error).message})` };
  }
  if (!platformMatches(existing.platform, parsePlatform(platform))) {
    return { platform, plan, unusable: `${plan.inputTag} holds an image for ${formatPlatform(existing.platform)}, not ${platform}` };
  }
  return { platform, plan, existing };
}

/** What a multi-architecture build would do (check mode): nothing is built or written. */
export async function planMultiArch(pool: EnginePool, options: MultiArchBuild, scan: ContextScan): Promise<MultiArchPlan> {
  const prepared = await prepare(options);
  pool.assertPlatforms(options.platforms, prepared.first.repository);
  const platforms: PlatformPlan[] = [];
  for (const platform of options.platforms) platforms.push(await planPlatform(pool, options, scan, platform, prepared));
  const toBuild = platforms.filter((p) => !p.existing || options.force).map((p) => p.platform);
  let index: ImageIndexResult | undefined;
  if (toBuild.length === 0) {
    index = await putImageIndex(prepared.client, prepared.first.repository, prepared.tagNames, platforms.map((p) => p.existing as IndexEntry), {
      mediaType: options.indexMediaType,
      dryRun: true,
    });
  }
  return { registry: prepared.first.registry, repository: prepared.first.repository, platforms, toBuild, index, changed: toBuild.length > 0 || Boolean(index?.changed) };
}

function platformError(error: unknown, platform: string, engine: string | undefined, repository: string): ThinkubeImageError {
  const where = `${platform}${engine ? ` on engine ${engine}` : ''}`;
  if (isThinkubeImageError(error)) {
    if (error.code === 'ERR_ABORTED') return error;
    return new ThinkubeImageError(error.code, `${repository} for ${where}: ${error.message}`, { hint: error.hint, cause: error, details: { ...error.details, platform, engine } });
  }
  return new ThinkubeImageError('ERR_BUILD_FAILED', `${repository} for ${where}: ${error instanceof Error ? error.message : String(error)}`, { cause: error, details: { platform, engine } });
}

/**
 * Build (or reuse) every platform of a multi-architecture image on the pool's engines, at the
 * same time as far as the engines allow, then put the index under every tag. Options must be
 * validated already (buildMultiArchImage validates). One platform failing fails the image, but
 * only after the other platforms finished (no build is left running).
 */
export async function buildMultiArch(pool: EnginePool, options: MultiArchBuild, scan: ContextScan, controls: OperationControls = {}): Promise<MultiArchResult> {
  const started = Date.now();
  const prepared = await prepare(options);
  const { first, client } = prepared;
  const repository = `${first.registry}/${first.repository}`;
  pool.assertPlatforms(options.platforms, repository);
  const warnings: string[] = [];
  const pullAuth = { registry: first.registry, auth: options.auth };

  const buildPlatform = async (platform: string): Promise<{ result: PlatformBuildResult; entry: IndexEntry }> => {
    const platformStarted = Date.now();
    const planned = await planPlatform(pool, options, scan, platform, prepared);
    const { plan } = planned;
    if (planned.existing && !options.force) {
      emit(controls, { type: 'info', message: `${repository} ${platform}: inputs unchanged (${plan.inputTag}), not rebuilt` });
      const result: PlatformBuildResult = {
        platform,
        skipped: true,
        reason: `inputs unchanged: ${plan.inputTag} already in the registry`,
        inputDigest: plan.inputDigest,
        inputTag: plan.inputTag,
        digest: planned.existing.digest,
        mediaType: planned.existing.mediaType,
        size: planned.existing.size,
        imageSize: plan.imageSize ?? 0,
        layersUploaded: 0,
        createdAt: plan.createdAt,
        startedAt: new Date(platformStarted).toISOString(),
        finishedAt: new Date().toISOString(),
        durationMs: Date.now() - platformStarted,
      };
      return { result, entry: planned.existing };
    }
    if (planned.unusable) warnings.push(`${repository} ${platform}: ${planned.unusable}; rebuilding`);
    // Bases that only the engine has (local:) cannot be pulled per platform; the result is checked below.
    const bases = plan.bases.filter((b) => !b.digest.startsWith('local:')).map((b) => b.reference);
    let lease: EngineLease | undefined;
    try {
      lease = await pool.acquire({ platform, bases, what: `${repository} for ${platform}`, signal: controls.signal });
      const buildStarted = Date.now();
      emit(controls, { type: 'info', message: `${repository} ${platform}: building on engine ${lease.name} (${lease.engine.address})` });
      warnings.push(...(await pool.prepareBases(lease, pullAuth, controls.signal)).map((w) => `${repository} ${platform}: ${w}`));
      const buildOptions = platformBuildOptions(options, platform, [plan.inputTag]);
      const built = await runBuild(lease.engine, { ...buildOptions, labels: { ...(options.labels ?? {}), [INPUT_DIGEST_LABEL]: plan.inputDigest } }, scan, controls);
      warnings.push(...built.warnings.map((w) => `${repository} ${platform}: ${w}`));
      const pushed = await runPush(
        lease.engine,
        { tags: [plan.inputTag], auth: options.auth, registryTls: options.registryTls, retry: options.retry, stallTimeoutSeconds: options.stallTimeoutSeconds },
        controls,
      );
      warnings.push(...pushed.warnings.map((w) => `${repository} ${platform}: ${w}`));
      const engineName = lease.name;
      lease.release();
      lease = undefined;
      const entry = await describeImageManifest(client, first.repository, pushed.digest);
      if (!platformMatches(entry.platform, parsePlatform(platform))) {
        throw new ThinkubeImageError('ERR_PLATFORM_MISMATCH', `Engine ${engineName} built an image for ${formatPlatform(entry.platform)} when asked for ${platform} (pushed as ${plan.inputTag})`, {
          hint: 'The engine ignored the platform: its base image copy was of another platform and could not be pulled for this one. Make the base image a multi-platform index in a registry the engine can pull from, or build this platform on an engine of that platform',
          details: { expected: platform, actual: formatPlatform(entry.platform), digest: pushed.digest },
        });
      }
      emit(controls, { type: 'info', message: `${repository} ${platform}: built on ${engineName} in ${((Date.now() - buildStarted) / 1000).toFixed(1)}s, pushed ${pushed.digest}` });
      const result: PlatformBuildResult = {
        platform,
        engine: engineName,
        skipped: false,
        reason: options.force && planned.existing ? 'forced rebuild' : plan.uncertain ? `built: ${plan.uncertain}, so unchanged inputs cannot be recognised` : planned.unusable ? `rebuilt: ${planned.unusable}` : 'inputs changed (or first build)',
        inputDigest: plan.inputDigest,
        inputTag: plan.inputTag,
        digest: pushed.digest,
        mediaType: entry.mediaType,
        size: entry.size,
        imageSize: pushed.imageSize,
        imageId: built.imageId,
        layersUploaded: pushed.tags.reduce((n, t) => n + t.layersUploaded, 0),
        createdAt: built.labels['org.opencontainers.image.created'],
        startedAt: new Date(buildStarted).toISOString(),
        finishedAt: new Date().toISOString(),
        durationMs: Date.now() - buildStarted,
      };
      return { result, entry };
    } catch (error) {
      throw platformError(error, platform, lease?.name, repository);
    } finally {
      lease?.release();
    }
  };

  const settled = await Promise.allSettled(options.platforms.map((p) => buildPlatform(p)));
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) {
    const others = settled.filter((s) => s.status === 'rejected').length - 1;
    const error = failed.reason as ThinkubeImageError;
    if (others > 0 && isThinkubeImageError(error)) error.details.otherFailures = others;
    throw error;
  }
  const done = settled.map((s) => (s as PromiseFulfilledResult<{ result: PlatformBuildResult; entry: IndexEntry }>).value);
  const platforms = done.map((d) => d.result);
  const entries = done.map((d) => d.entry);
  const index = await putImageIndex(client, first.repository, prepared.tagNames, entries, { mediaType: options.indexMediaType });
  emit(controls, { type: 'info', message: `${repository}: index ${index.digest} (${index.platforms.join(', ')}) ${index.changed ? 'put under' : 'already under'} ${prepared.tagNames.join(', ')}` });
  const built = platforms.filter((p) => !p.skipped);
  const created = platforms.map((p) => p.createdAt).filter((c): c is string => Boolean(c)).sort();
  return {
    registry: first.registry,
    repository: first.repository,
    tags: options.tags.map((t) => formatReference(withDefaultTag(parseReference(t)))),
    index,
    platforms,
    changed: built.length > 0 || index.changed,
    skipped: built.length === 0,
    builtAt: created[created.length - 1],
    imageSize: Math.max(0, ...platforms.map((p) => p.imageSize)),
    durationMs: Date.now() - started,
    warnings,
  };
}

/**
 * Build a multi-architecture image: validate the options, connect the engines (engines, else
 * the single engine option), build every platform and put the index under every tag. Base tags
 * left holding a foreign platform on an engine are put back to its own platform afterwards.
 */
export async function buildMultiArchImage(options: MultiArchBuildOptions, controls: OperationControls = {}): Promise<MultiArchResult> {
  const valid = validate<MultiArchBuildOptions>('multiarch-build-options.schema.json', options, { what: 'multi-architecture build options' });
  const pool = valid.engines ? EnginePool.fromSpecs(valid.engines) : EnginePool.single(valid.engine);
  await pool.check();
  const scan = await scanContext(path.resolve(valid.context), { dockerfile: valid.dockerfile });
  const { engines: _engines, engine: _engine, ...build } = valid;
  try {
    return await buildMultiArch(pool, { ...build, indexMediaType: valid.indexMediaType as IndexMediaTypeChoice | undefined }, scan, controls);
  } finally {
    const restoreWarnings = await pool.restoreNativeBases({ registry: withDefaultTag(parseReference(valid.tags[0] as string)).registry, auth: valid.auth }, controls.signal);
    for (const message of restoreWarnings) emit(controls, { type: 'warning', message });
  }
}
