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
import { ThinkubeImageError, ValidationError, isThinkubeImageError } from '../core/errors.js';
import { INPUT_DIGEST_LABEL } from '../source/input-digest.js';
import { planBuild, type InputPlan } from './incremental.js';
import { emit, type OperationControls } from '../core/progress.js';
import { registryClientFor, resolveCredentials, runPush } from '../publish/push.js';
import { formatReference, isValidDigest, isValidTag, parseReference, withDefaultTag, type ImageRef } from '../registry/reference.js';
import { MEDIA_TYPES, sha256Digest, type RegistryClient } from '../registry/client.js';
import { validate } from '../options/schema.js';
import type { BuildOptions, ImageIndexOptions, MultiArchBuildOptions, PushOptions } from '../options/generated/types.js';

export type { ImageIndexOptions, MultiArchBuildOptions, Platform };
export { EnginePool, formatPlatform, parsePlatform, platformMatches };

export type IndexMediaTypeChoice = 'auto' | 'oci' | 'docker';

/**
 * What buildMultiArch builds: the options of a single build (its tags name the index) with the
 * platforms instead of one platform. `retry` and `stallTimeoutSeconds` also apply to the pushes.
 */
export type MultiArchBuild = Omit<BuildOptions, 'platform' | 'engine' | 'skipUnchanged' | 'cacheFrom' | 'cacheFromRegistry'> & {
  platforms: string[];
  indexMediaType?: IndexMediaTypeChoice;
  retry?: PushOptions['retry'];
};

/** One entry of an index: a platform's image manifest. */
export interface IndexEntry {
  mediaType: string;
  digest: string;
  /** Size in bytes of the manifest. */
  size: number;
  platform: Platform;
}

export interface IndexDocument {
  mediaType: string;
  body: Buffer;
  digest: string;
}

export interface IndexTagResult {
  reference: string;
  /** What the tag pointed at before (undefined: it did not exist). */
  previousDigest?: string;
  changed: boolean;
}

export interface ImageIndexResult {
  registry: string;
  repository: string;
  /** Digest of the index. */
  digest: string;
  mediaType: string;
  size: number;
  manifests: Array<IndexEntry & { platformName: string }>;
  /** Platform names in index order, e.g. [linux/amd64, linux/arm64]. */
  platforms: string[];
  tags: IndexTagResult[];
  /** A tag now points somewhere new (or would, with dryRun). */
  changed: boolean;
  dryRun: boolean;
}

const IMAGE_MANIFEST_TYPES = new Set<string>([MEDIA_TYPES.ociManifest, MEDIA_TYPES.dockerManifest]);
const INDEX_TYPES = new Set<string>([MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerManifestList]);

/**
 * Read an image manifest and its config (a small blob) to learn its media type, size and the
 * platform the image is for. Refuses an index: an index cannot hold another index here.
 */
export async function describeImageManifest(client: RegistryClient, repository: string, reference: string): Promise<IndexEntry> {
  const manifest = await client.getManifest(repository, reference);
  let json: { mediaType?: string; manifests?: unknown; config?: { digest?: string } };
  try {
    json = JSON.parse(manifest.body.toString('utf8')) as typeof json;
  } catch {
    throw new ThinkubeImageError('ERR_REGISTRY', `Registry ${client.registry} sent a manifest for ${repository}@${manifest.digest} that is not JSON`, {
      hint: 'Check that the address points at an OCI registry',
    });
  }
  const mediaType = json.mediaType ?? manifest.mediaType;
  const where = `${client.registry}/${repository}${reference.startsWith('sha256:') ? '@' : ':'}${reference}`;
  if (INDEX_TYPES.has(mediaType) || Array.isArray(json.manifests)) {
    throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `${where} is itself a multi-platform index, not the image of one platform`, {
      hint: 'Give the digest of each platform\'s image manifest (the digests the per-platform pushes reported)',
      details: { reference: where, mediaType },
    });
  }
  if (!IMAGE_MANIFEST_TYPES.has(mediaType) || !json.config?.digest) {
    throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `${where} is not an OCI or Docker v2 image manifest (media type ${mediaType || 'unknown'})`, {
      hint: 'Push the image with a current engine (Docker or Podman) and give its digest',
      details: { reference: where, mediaType },
    });
  }
  const config = JSON.parse((await client.getBlob(repository, json.config.digest)).toString('utf8')) as { os?: string; architecture?: string; variant?: string };
  if (!config.os || !config.architecture) {
    throw new ThinkubeImageError('ERR_PLATFORM_MISMATCH', `The image config of ${where} does not say which platform it is for (no os/architecture)`, {
      hint: 'Rebuild the image with a current engine; an index needs each image\'s platform',
      details: { reference: where },
    });
  }
  const platform: Platform = { os: config.os, architecture: config.architecture };
  if (config.variant) platform.variant = config.variant;
  return { mediaType, digest: manifest.digest, size: manifest.size, platform };
}

/**
 * The index document for these entries, deterministically (entries in the order given, fixed key
 * order, no timestamps): the same entries always give the same bytes and so the same digest.
 * auto: a Docker manifest list when every entry is a Docker v2 manifest (what Docker 20.10 pushes),
 * else an OCI index.
 */
export function imageIndexDocument(entries: IndexEntry[], options: { mediaType?: IndexMediaTypeChoice; annotations?: Record<string, string> } = {}): { mediaType: string; body: Buffer } {
  if (entries.length === 0) throw new ValidationError('image index', [{ field: 'manifests', message: 'needs at least one platform image' }]);
  const seen = new Map<string, string>();
  for (const entry of entries) {
    const name = formatPlatform(entry.platform);
    const same = [...seen.entries()].find(([other]) => platformMatches(parsePlatform(other), entry.platform));
    if (same) {
      throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `Two images of the index are for ${name}: ${same[1]} and ${entry.digest}`, {
        hint: 'Give one image per platform',
        details: { platform: name, digests: [same[1], entry.digest] },
      });
    }
    seen.set(name, entry.digest);
  }
  const choice = options.mediaType ?? 'auto';
  const allDocker = entries.every((e) => e.mediaType === MEDIA_TYPES.dockerManifest);
  const mediaType = choice === 'docker' || (choice === 'auto' && allDocker && !options.annotations) ? MEDIA_TYPES.dockerManifestList : MEDIA_TYPES.ociIndex;
  if (mediaType === MEDIA_TYPES.dockerManifestList && options.annotations && Object.keys(options.annotations).length > 0) {
    throw new ValidationError('image index', [{ field: 'annotations', message: 'need an OCI index (mediaType oci or auto); a Docker manifest list has no annotations' }]);
  }
  const document: Record<string, unknown> = {
    schemaVersion: 2,
    mediaType,
    manifests: entries.map((e) => ({
      mediaType: e.mediaType,
      digest: e.digest,
      size: e.size,
      platform: { architecture: e.platform.architecture, os: e.platform.os, ...(e.platform.variant ? { variant: e.platform.variant } : {}) },
    })),
  };
  if (options.annotations && Object.keys(options.annotations).length > 0) {
    document.annotations = Object.fromEntries(Object.entries(options.annotations).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }
  return { mediaType, body: Buffer.from(JSON.stringify(document, null, 2), 'utf8') };
}

/**
 * Put the index under each tag of the repository, unless the tag already points at exactly
 * these bytes. The registry checks that every manifest the index names is in the repository.
 */
export async function putImageIndex(
  client: RegistryClient,
  repository: string,
  tags: string[],
  entries: IndexEntry[],
  options: { mediaType?: IndexMediaTypeChoice; annotations?: Record<string, string>; dryRun?: boolean } = {},
): Promise<ImageIndexResult> {
  const { mediaType, body } = imageIndexDocument(entries, options);
  const digest = sha256Digest(body);
  const results: IndexTagResult[] = [];
  for (const tag of tags) {
    const reference = `${client.registry}/${repository}:${tag}`;
    const previousDigest = (await client.headManifest(repository, tag))?.digest;
    if (previousDigest === digest) {
      results.push({ reference, previousDigest, changed: false });
      continue;
    }
    if (!options.dryRun) {
      try {
        await client.putManifest(repository, tag, body, mediaType);
      } catch (error) {
        if (isThinkubeImageError(error) && error.code === 'ERR_REGISTRY' && /MANIFEST_BLOB_UNKNOWN|MANIFEST_UNKNOWN|BLOB_UNKNOWN/i.test(error.message)) {
          throw new ThinkubeImageError('ERR_MANIFEST_NOT_FOUND', `Registry ${client.registry} refused the index for ${reference}: it names a manifest that is not in ${repository} (${error.message})`, {
            hint: 'Push every platform image to the same repository first (an index can only name manifests of its own repository)',
            details: { ...error.details, reference },
          });
        }
        throw error;
      }
    }
    results.push({ reference, previousDigest, changed: true });
  }
  return {
    registry: client.registry,
    repository,
    digest,
    mediaType,
    size: body.length,
    manifests: entries.map((e) => ({ ...e, platformName: formatPlatform(e.platform) })),
    platforms: entries.map((e) => formatPlatform(e.platform)),
    tags: results,
    changed: results.some((r) => r.changed),
    dryRun: options.dryRun === true,
  };
}

/** Parse tags that must all name one repository; throws ERR_INVALID_OPTIONS naming the odd one. */
function sameRepository(tags: string[], what: string): { first: ImageRef; tagNames: string[] } {
  const refs = tags.map((t) => withDefaultTag(parseReference(t)));
  const first = refs[0] as ImageRef;
  for (const ref of refs) {
    if (ref.registry !== first.registry || ref.repository !== first.repository) {
      throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `All tags of ${what} must name one repository: ${formatReference(ref)} is not in ${first.registry}/${first.repository}`, {
        hint: 'Make one index per repository',
      });
    }
    if (ref.digest) throw new ValidationError(what, [{ field: 'tags', message: `${formatReference(ref)} names a digest; give tags only` }]);
  }
  return { first, tagNames: [...new Set(refs.map((r) => r.tag as string))] };
}

/** manifests[i] as a reference inside the repository: a digest or a tag. */
function manifestReference(value: string, index: number, first: ImageRef): string {
  if (isValidDigest(value)) return value;
  if (!value.includes('/') && isValidTag(value)) return value;
  let ref: ImageRef;
  try {
    ref = parseReference(value);
  } catch {
    throw new ValidationError('image index options', [{ field: `manifests[${index}]`, message: `"${value}" is neither a digest, a tag nor an image reference` }]);
  }
  if (ref.registry !== first.registry || ref.repository !== first.repository) {
    throw new ValidationError('image index options', [
      { field: `manifests[${index}]`, message: `${value} is not in ${first.registry}/${first.repository}: an index can only name manifests of its own repository (push the image there first)` },
    ]);
  }
  return ref.digest ?? ref.tag ?? 'latest';
}

/**
 * Join per-platform images already in the registry into one index under `tags`. With dryRun
 * (check mode) nothing is written; `changed` says whether a tag would move.
 */
export async function assembleImageIndex(options: ImageIndexOptions, controls: OperationControls & { dryRun?: boolean } = {}): Promise<ImageIndexResult> {
  const valid = validate<ImageIndexOptions>('image-index-options.schema.json', options, { what: 'image index options' });
  return runAssembleImageIndex(valid, controls);
}

/** assembleImageIndex for options already validated (the command validates with its own naming). */
export async function runAssembleImageIndex(options: ImageIndexOptions, controls: OperationControls & { dryRun?: boolean } = {}): Promise<ImageIndexResult> {
  const { first, tagNames } = sameRepository(options.tags, 'the index');
  const references = options.manifests.map((m, i) => manifestReference(m, i, first));
  const client = registryClientFor(first.registry, await resolveCredentials(first.registry, options.auth), options.registryTls);
  const entries: IndexEntry[] = [];
  for (const reference of references) entries.push(await describeImageManifest(client, first.repository, reference));
  if (options.platforms) {
    const wanted = options.platforms.map((p) => parsePlatform(p));
    const missing = wanted.filter((w) => !entries.some((e) => platformMatches(e.platform, w))).map(formatPlatform);
    const extra = entries.filter((e) => !wanted.some((w) => platformMatches(e.platform, w))).map((e) => `${formatPlatform(e.platform)} (${e.digest})`);
    if (missing.length || extra.length) {
      throw new ThinkubeImageError('ERR_PLATFORM_MISMATCH', `The images given for ${first.registry}/${first.repository} do not match the platforms ${options.platforms.join(', ')}:${missing.length ? ` missing ${missing.join(', ')}` : ''}${extra.length ? `${missing.length ? ';' : ''} not asked for ${extra.join(', ')}` : ''}`, {
        hint: 'Give one image per requested platform (check that every builder built its own platform)',
        details: { missing, extra },
      });
    }
    // Index order follows the requested platforms, whatever order the builders finished in.
    entries.sort((a, b) => wanted.findIndex((w) => platformMatches(a.platform, w)) - wanted.findIndex((w) => platformMatches(b.platform, w)));
  }
  const result = await putImageIndex(client, first.repository, tagNames, entries, { mediaType: options.mediaType as IndexMediaTypeChoice | undefined, annotations: options.annotations, dryRun: controls.dryRun });
  emit(controls, {
    type: 'info',
    message: `${first.registry}/${first.repository}: index ${result.digest} (${result.platforms.join(', ')}) ${result.changed ? (result.dryRun ? 'would be put under' : 'put under') : 'already under'} ${tagNames.join(', ')}`,
  });
  return result;
}

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
