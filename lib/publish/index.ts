/**
 * Image indexes, registry-side: one OCI image index (or Docker manifest list) naming every
 * platform's manifest, put under every requested tag through the registry API. Nothing is pulled:
 * the index is a small JSON document that points at manifests already pushed. An unchanged
 * index (same bytes, so same digest) leaves the tags alone: changed=false.
 */
import { formatPlatform, parsePlatform, platformMatches, type Platform } from '../engine/pool.js';
import { ThinkubeImageError, ValidationError, isThinkubeImageError } from '../core/errors.js';
import { emit, type OperationControls } from '../core/progress.js';
import { registryClientFor, resolveCredentials } from '../registry/connect.js';
import { formatReference, isValidDigest, isValidTag, parseReference, withDefaultTag, type ImageRef } from '../registry/reference.js';
import { MEDIA_TYPES, sha256Digest, type RegistryClient } from '../registry/client.js';
import { validate } from '../options/schema.js';
import type { ImageIndexOptions } from '../options/generated/types.js';

export type { ImageIndexOptions };

export type IndexMediaTypeChoice = 'auto' | 'oci' | 'docker';

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
export function sameRepository(tags: string[], what: string): { first: ImageRef; tagNames: string[] } {
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

