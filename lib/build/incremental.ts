/**
 * Content-addressed builds: know when nothing changed. The input digest of an image names a
 * registry tag (in-<digest>); when that tag exists the build is skipped and the requested tags are
 * pointed at the existing manifest without moving a layer.
 */
import { runBuild, type BuildResult } from './build.js';
import { ThinkubeImageError, isThinkubeImageError } from '../core/errors.js';
import type { Engine } from '../engine/engine.js';
import type { ContextScan } from '../source/context.js';
import { INPUT_DIGEST_LABEL, baseImageReferences, computeInputDigest, contextFileLines, inputTag, type BaseImageDigest } from '../source/input-digest.js';
import { emit, type OperationControls } from '../core/progress.js';
import { formatReference, parseReference, withDefaultTag } from '../registry/reference.js';
import { registryAuthHeader } from '../registry/docker-config.js';
import { registryClientFor, resolveCredentials } from '../registry/connect.js';
import type { ManifestInfo, RegistryClient } from '../registry/client.js';
import type { BuildOptions } from '../options/generated/types.js';
import { registryLayerCache } from './layer-cache.js';

export interface IncrementalBuildResult extends BuildResult {
  /** True when nothing was built because the registry already holds an image with these inputs. */
  skipped: boolean;
  /** Why it was built or skipped, in words. */
  reason: string;
  inputDigest: string;
  /** The in-<digest> tag (full reference) that names these inputs. */
  inputTag: string;
  /** Skipped: the manifest digest the requested tags now point at. */
  digest?: string;
  /** Skipped: requested tags that were moved to the existing manifest. */
  retagged: Array<{ reference: string; changed: boolean }>;
  /** Skipped: the created timestamp of the existing image (its OCI label, else its config). */
  createdAt?: string;
  /** Skipped: compressed size of the existing image (config and layers). */
  imageSize?: number;
  bases: BaseImageDigest[];
}

export interface InputPlan {
  inputDigest: string;
  inputTag: string;
  bases: BaseImageDigest[];
  /** Digest of the in-<digest> tag in the registry, when it exists. */
  existing?: string;
  /** Set when the inputs cannot be known exactly (a base image that cannot be found): never skip then. */
  uncertain?: string;
  /** With existing: its created time and size. */
  createdAt?: string;
  imageSize?: number;
}

/**
 * Registry clients of a run, one per registry (its tokens and challenge learned once), and what
 * the run asks only once: a base image's digest, manifests and configs by digest. Per run, never
 * across runs: a tag someone else moved between runs is seen by the next run.
 */
export interface Clients {
  get(registry: string): Promise<RegistryClient>;
  /** HEAD of a base image (registry/repository:tag), asked once per run however many images name it. */
  baseManifest(reference: string): Promise<ManifestInfo | undefined>;
}

export function clientsFor(options: Pick<BuildOptions, 'tags' | 'auth' | 'registryTls'>, controls: OperationControls = {}): Clients {
  // Retries of these registry calls are reported like every other retry.
  const hooks = { onRetry: (event: Parameters<typeof emit>[1]) => emit(controls, event), signal: controls.signal };
  const cache = new Map<string, Promise<RegistryClient>>();
  const bases = new Map<string, Promise<ManifestInfo | undefined>>();
  const clients: Clients = {
    get(registry) {
      let client = cache.get(registry);
      if (!client) {
        // The build's own registry uses the given credentials; others their docker config entry.
        client = resolveCredentials(registry, authFor(options, registry)).then((credentials) => registryClientFor(registry, credentials, options.registryTls, { ...hooks, cacheByDigest: true }));
        cache.set(registry, client);
      }
      return client;
    },
    baseManifest(reference) {
      // One answer per image however it is written (busybox, docker.io/library/busybox:latest).
      const ref = withDefaultTag(parseReference(reference));
      const key = formatReference(ref);
      let head = bases.get(key);
      if (!head) {
        head = clients.get(ref.registry).then((client) => client.headManifest(ref.repository, ref.digest ?? (ref.tag as string)));
        bases.set(key, head);
      }
      return head;
    },
  };
  return clients;
}

/**
 * Ask the registries for these base images now, all at once: planBuild finds the answers kept
 * (a failure, too, is left for it to handle). References that do not parse are left to it.
 */
export function prefetchBaseManifests(clients: Clients, references: Iterable<string>): void {
  for (const reference of new Set(references)) {
    try {
      clients.baseManifest(reference).catch(() => undefined);
    } catch {
      // Not a valid reference: planBuild reports it.
    }
  }
}

async function baseDigest(engine: Engine | undefined, clients: Clients, reference: string): Promise<{ digest?: string; problem?: string }> {
  let ref;
  try {
    ref = withDefaultTag(parseReference(reference));
  } catch {
    return { problem: `base image "${reference}" is not a valid reference` };
  }
  try {
    const head = await clients.baseManifest(formatReference(ref));
    if (head) return { digest: head.digest };
  } catch (error) {
    if (!isThinkubeImageError(error) || !['ERR_REGISTRY_UNREACHABLE', 'ERR_TIMEOUT', 'ERR_REGISTRY_AUTH', 'ERR_REGISTRY'].includes(error.code)) throw error;
  }
  // Not in a registry we can read: the engine's copy still pins the content.
  if (!engine) return { problem: `base image ${formatReference(ref)} is not in its registry` };
  try {
    const local = (await (await engine.client()).getImage(formatReference(ref)).inspect()) as { Id: string };
    return { digest: `local:${local.Id}` };
  } catch {
    return { problem: `base image ${formatReference(ref)} is neither in its registry nor on the engine` };
  }
}

/** OCI labels the caller chose (not derived from the clock or git): they are inputs like labels. */
export function explicitLabels(options: BuildOptions): Record<string, string> {
  if (options.ociLabels === false) return {};
  const out: Record<string, string> = {};
  if (options.title !== undefined) out['org.opencontainers.image.title'] = options.title;
  if (options.version !== undefined) out['org.opencontainers.image.version'] = options.version;
  if (options.revision !== undefined) out['org.opencontainers.image.revision'] = options.revision;
  if (options.source !== undefined) out['org.opencontainers.image.source'] = options.source;
  return out;
}

/**
 * A base's digest as a run will see it when it builds (check mode: the digest a base of the same
 * run will have once published); null: not known before it is built. undefined: ask the registry.
 */
export type BaseDigestOverride = (reference: string) => string | null | undefined;

/**
 * Work out the input digest and whether the registry already holds an image built from it.
 * describe=false leaves out createdAt/imageSize (the caller fetches them when it needs them).
 */
export async function planBuild(
  engine: Engine | undefined,
  options: BuildOptions,
  scan: ContextScan,
  clients: Clients = clientsFor(options),
  describe = true,
  override: BaseDigestOverride = () => undefined,
): Promise<InputPlan> {
  const buildArgs = options.buildArgs ?? {};
  const bases: BaseImageDigest[] = [];
  let uncertain: string | undefined;
  // The files are hashed while the registries are asked for the base digests.
  const [fileLines, found] = await Promise.all([
    contextFileLines(scan),
    Promise.all(
      baseImageReferences(scan.dockerfile, buildArgs, options.target).map(async (reference) => {
        const known = override(reference);
        if (known === null) return { reference, problem: `base image ${reference} is rebuilt by this run` };
        return { reference, ...(known ? { digest: known } : await baseDigest(engine, clients, reference)) };
      }),
    ),
  ]);
  for (const base of found) {
    if (base.digest) bases.push({ reference: base.reference, digest: base.digest });
    else uncertain ??= base.problem;
  }
  const inputDigest = await computeInputDigest({ scan, fileLines, buildArgs, labels: { ...explicitLabels(options), ...(options.labels ?? {}) }, target: options.target, platform: options.platform, bases });
  const tag = inputTag(inputDigest);
  const first = withDefaultTag(parseReference(options.tags[0] as string));
  const client = await clients.get(first.registry);
  // A GET, not a HEAD: an existing image is described from the same answer (the client keeps it by digest).
  const existing = uncertain ? undefined : (await client.findManifest(first.repository, tag))?.digest;
  const described = existing && describe ? await describeExisting(client, first.repository, existing) : {};
  return { inputDigest, inputTag: formatReference({ ...first, tag, digest: undefined }), bases, existing, uncertain, ...described };
}

/** What the registry knows of an existing image: its created time and compressed size. */
export async function describeExisting(client: RegistryClient, repository: string, digest: string): Promise<{ createdAt?: string; imageSize: number }> {
  try {
    const manifest = JSON.parse((await client.getManifest(repository, digest)).body.toString('utf8')) as {
      config?: { digest?: string; size?: number };
      layers?: Array<{ size?: number }>;
    };
    const imageSize = (manifest.config?.size ?? 0) + (manifest.layers ?? []).reduce((n, l) => n + (l.size ?? 0), 0);
    if (!manifest.config?.digest) return { imageSize };
    const config = JSON.parse((await client.getBlob(repository, manifest.config.digest)).toString('utf8')) as {
      created?: string;
      config?: { Labels?: Record<string, string> };
    };
    return { createdAt: config.config?.Labels?.['org.opencontainers.image.created'] ?? config.created, imageSize };
  } catch {
    return { imageSize: 0 };
  }
}

function authFor(options: Pick<BuildOptions, 'tags' | 'auth'>, registry: string): BuildOptions['auth'] {
  const first = withDefaultTag(parseReference(options.tags[0] as string));
  return registry === first.registry ? options.auth : options.auth?.dockerConfig ? { dockerConfig: options.auth.dockerConfig } : undefined;
}

/** Pull a reference into the engine; resolves with the engine's error message when it failed. */
async function pullImage(engine: Engine, reference: string, options: BuildOptions, controls: OperationControls): Promise<string | undefined> {
  const ref = withDefaultTag(parseReference(reference));
  const credentials = await resolveCredentials(ref.registry, authFor(options, ref.registry));
  try {
    const docker = await engine.client();
    const stream = (await docker.pull(reference, { authconfig: { key: registryAuthHeader(credentials, ref.registry) }, platform: options.platform, abortSignal: controls.signal } as object)) as NodeJS.ReadableStream;
    let failure: string | undefined;
    await new Promise<void>((resolve, reject) => {
      docker.modem.followProgress(stream, (error: Error | null) => (error ? reject(error) : resolve()), (event: { error?: string }) => {
        if (event.error) failure = event.error;
      });
    });
    return failure;
  } catch (error) {
    return (error as Error).message;
  }
}

/** Pull the image's current tag so the classic builder can use its layers as cache. */
export async function pullForCache(engine: Engine, reference: string, options: BuildOptions, controls: OperationControls): Promise<boolean> {
  const failure = await pullImage(engine, reference, options, controls);
  if (failure) emit(controls, { type: 'warning', message: `Could not pull ${reference} for use as build cache (${failure}); building without it` });
  return !failure;
}

/**
 * The classic builder uses the engine's copy of a base without asking the registry (unless pull).
 * A base that moved in the registry (or an image of the set re-tagged by another run) must be
 * pulled first, or the new input digest would name an image built on the old base; a base the
 * engine does not have is pulled here too, with the registry's credentials.
 */
export async function refreshBases(engine: Engine, bases: BaseImageDigest[], options: BuildOptions, controls: OperationControls): Promise<void> {
  for (const base of bases) {
    if (base.digest.startsWith('local:')) continue;
    let repoDigests: string[] = [];
    try {
      repoDigests = ((await (await engine.client()).getImage(base.reference).inspect()) as { RepoDigests?: string[] }).RepoDigests ?? [];
    } catch {
      // Not on the engine: pull it here, with the registry's credentials (the builder's own pull
      // would go without them).
      repoDigests = [];
    }
    if (repoDigests.some((d) => d.endsWith(`@${base.digest}`))) continue;
    if (await tagLocalCopy(engine, base)) {
      emit(controls, { type: 'info', message: `${base.reference}: the engine holds ${base.digest} under another tag; tagged it, no pull` });
      continue;
    }
    emit(controls, { type: 'info', message: `${base.reference} ${repoDigests.length ? 'moved in its registry' : 'is not on the engine'} (now ${base.digest}): pulling it before the build` });
    const failure = await pullImage(engine, base.reference, options, controls);
    if (failure) {
      throw new ThinkubeImageError('ERR_REGISTRY', `Base image ${base.reference} (${base.digest} in its registry) is needed by the build, but the engine at ${engine.address} could not pull it: ${failure}`, {
        hint: 'Check that the engine can reach and log in to that registry, then run again',
        details: { base: base.reference, digest: base.digest },
      });
    }
  }
}

/**
 * The engine may hold the registry's image under another name: an image of the set it just built
 * and pushed by its in- tag, whose other tags were set registry-side. Tag that copy (found by
 * repository@digest, which the engine knows from the push) instead of pulling it.
 */
async function tagLocalCopy(engine: Engine, base: BaseImageDigest): Promise<boolean> {
  const ref = withDefaultTag(parseReference(base.reference));
  if (ref.digest) return false;
  try {
    const image = (await engine.client()).getImage(formatReference({ ...ref, tag: undefined, digest: base.digest }));
    await image.inspect();
    await image.tag({ repo: formatReference({ ...ref, tag: undefined }), tag: ref.tag });
    return true;
  } catch {
    return false;
  }
}

/**
 * Build only when the inputs changed. Skipped: the requested tags are re-tagged in the registry to
 * the image that has the same inputs. Built: the image carries the input digest as a label and
 * the in-<digest> tag next to the requested tags (push all of result.tags).
 */
export async function buildIfChanged(engine: Engine, options: BuildOptions, scan: ContextScan, controls: OperationControls = {}): Promise<IncrementalBuildResult> {
  const started = Date.now();
  const first = withDefaultTag(parseReference(options.tags[0] as string));
  // Checked whether or not this run can skip: the next identical run would skip, and must not
  // then fail where this one passed.
  const refs = options.tags.map((reference) => {
    const ref = withDefaultTag(parseReference(reference));
    if (ref.registry !== first.registry || ref.repository !== first.repository) {
      throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `With skipUnchanged every tag must be in ${first.registry}/${first.repository}; ${reference} is not`, {
        hint: 'Build each repository with its own call',
      });
    }
    return { reference, ref };
  });
  const clients = clientsFor(options, controls);
  const plan = await planBuild(engine, options, scan, clients, false);
  const client = await clients.get(first.registry);
  if (plan.existing && !options.force) {
    const existing = plan.existing;
    // The usual no-op: every tag already names the image, and a HEAD each is all it takes to know.
    const [described, current] = await Promise.all([
      describeExisting(client, first.repository, existing),
      Promise.all(refs.map(({ ref }) => client.headManifest(ref.repository, ref.tag as string))),
    ]);
    Object.assign(plan, described);
    const retagged: Array<{ reference: string; changed: boolean }> = [];
    for (const [index, { reference, ref }] of refs.entries()) {
      if (current[index]?.digest === existing) retagged.push({ reference, changed: false });
      else retagged.push({ reference, changed: (await client.retag(ref.repository, existing, ref.tag as string)).changed });
    }
    const changedTags = retagged.filter((r) => r.changed).map((r) => r.reference);
    emit(controls, { type: 'info', message: `${options.tags[0]}: inputs unchanged (${plan.inputTag}), build skipped` });
    return {
      imageId: '',
      tags: [...options.tags],
      durationMs: Date.now() - started,
      warnings: [],
      logTail: [],
      steps: 0,
      labels: {},
      context: { files: scan.fileCount, bytes: scan.totalBytes },
      skipped: true,
      reason: changedTags.length
        ? `inputs unchanged: reused ${plan.existing} and moved ${changedTags.join(', ')} to it`
        : `inputs unchanged: ${plan.inputTag} already in the registry`,
      inputDigest: plan.inputDigest,
      inputTag: plan.inputTag,
      digest: plan.existing,
      retagged,
      createdAt: plan.createdAt,
      imageSize: plan.imageSize,
      bases: plan.bases,
    };
  }
  let cacheFrom = options.cacheFrom;
  // On Podman the registry layer cache does this job, layer by layer, without pulling the image.
  if (!cacheFrom && options.cacheFromRegistry !== false && !options.noCache && !(await registryLayerCache(engine, options))) {
    const current = await client.headManifest(first.repository, first.tag as string);
    if (current && (await pullForCache(engine, formatReference(first), options, controls))) cacheFrom = [formatReference(first)];
  }
  if (!options.pull) await refreshBases(engine, plan.bases, options, controls);
  const built = await runBuild(
    engine,
    { ...options, cacheFrom, tags: [...options.tags, plan.inputTag], labels: { ...(options.labels ?? {}), [INPUT_DIGEST_LABEL]: plan.inputDigest } },
    scan,
    controls,
  );
  const reason = options.force && plan.existing ? 'forced rebuild' : plan.uncertain ? `built: ${plan.uncertain}, so unchanged inputs cannot be recognised` : 'inputs changed (or first build)';
  return { ...built, skipped: false, reason, inputDigest: plan.inputDigest, inputTag: plan.inputTag, retagged: [], bases: plan.bases };
}
