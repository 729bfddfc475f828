/**
 * Retention of input tags: every content change of an image leaves an in-<digest> tag (and its
 * image) in the repository. After a publish, the newest `keep` input tags of the repository are
 * kept (the ones the current run uses always, and counted first) and the older ones removed.
 *
 * - "Newest" is the image's creation time: the org.opencontainers.image.created label the build
 *   writes (else the config's `created`), read from the image config. A tag list has no dates;
 *   a Harbor push_time would say when a copy arrived (a re-push or a replication resets it), not
 *   when the image was built, and would rank differently on Harbor than on any other registry.
 *   Ties (and images without a date, ranked oldest) go by tag name, so the order is total.
 * - Never removed: an image another tag names (latest, a version, a date, <tag>-<os>-<arch>) or
 *   an image index names as a platform, and the input tags of the current run.
 * - Plain OCI registry: a manifest is deleted by digest (which removes every tag on it), so only
 *   an image that nothing but stale input tags names is deleted; a stale input tag whose image is
 *   still named otherwise stays. Harbor (its API answers at the registry's host): the stale tag
 *   alone is deleted when the image is still in use, else the artifact (so Harbor's quota and,
 *   after its garbage collection, its storage are freed).
 * - Check mode plans on the registry as it is, with this run's tags placed where the publish puts
 *   them, and deletes nothing: it reports the removals the real run makes.
 */
import { isThinkubeImageError } from '../core/errors.js';
import { emit, type OperationControls } from '../core/progress.js';
import { INPUT_TAG_PREFIX } from '../source/input-digest.js';
import { MEDIA_TYPES, type RegistryClient } from '../registry/client.js';
import type { HarborArtifact, HarborClient } from '../harbor/client.js';
import { describeExisting } from '../build/incremental.js';
import pMap from 'p-map';

/** An input tag: in- and the first 32 hex digits of the input digest (lib/source/input-digest.ts). */
const INPUT_TAG = new RegExp(`^${INPUT_TAG_PREFIX}[0-9a-f]{32}$`);

export function isInputTag(tag: string): boolean {
  return INPUT_TAG.test(tag);
}

/**
 * A tag a cluster build pushed before its input digest was known: build-<Workflow uid>[-<platform>]
 * (lib/build/argo/workflow.ts workflowTag). The run re-tags the image to its input tag, so these
 * are always stale: removed (where the registry can remove a tag alone) whatever keep says.
 */
const WORKFLOW_TAG = /^build-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(-[a-z0-9-]+)?$/;

export function isWorkflowTag(tag: string): boolean {
  return WORKFLOW_TAG.test(tag);
}

/** What a repository holds, as far as retention needs it. */
export interface RepositoryInventory {
  /** Every tag and the digest it names. */
  tags: Map<string, string>;
  /** Index digest -> the digests of its platform manifests (indexes the tags name; on Harbor every index). */
  indexes: Map<string, string[]>;
  /** Digests kept whatever the tags say (Harbor: the platforms of every index artifact, tagged or not). */
  pinned: Set<string>;
  /** Creation time (ISO 8601) of the images the input tags name. */
  created: Map<string, string | undefined>;
}

export interface RetentionPlan {
  keep: number;
  /** Input tags kept, this run's first, then newest first. */
  kept: string[];
  /** Images (manifests, Harbor artifacts) deleted, with the stale input tags that named them. */
  deletes: Array<{ digest: string; tags: string[] }>;
  /** Stale input tags whose image stays in use: deleted alone where the registry can (Harbor). */
  untags: Array<{ digest: string; tag: string }>;
}

/** Where each tag of this publish points once it is through (check mode: before it is). */
export type PublishedTags = Map<string, string>;

/**
 * Which input tags go, and how: pure, so check mode and the real run plan alike. `current` are
 * this run's input tags (kept, counted against keep, present or not); `published` overrides the
 * tags this publish sets (check mode: where they will point).
 */
export function planRetention(inventory: RepositoryInventory, options: { keep: number; current: string[]; published?: PublishedTags }): RetentionPlan {
  const { keep } = options;
  const tags = new Map(inventory.tags);
  for (const [tag, digest] of options.published ?? []) tags.set(tag, digest);
  const current = [...new Set(options.current)];
  const plan: RetentionPlan = { keep, kept: [...current], deletes: [], untags: [] };
  if (keep === 0) return { ...plan, kept: [...tags.keys()].filter(isInputTag) };
  const others = [...tags.keys()].filter((t) => isInputTag(t) && !current.includes(t));
  const when = (tag: string): string => inventory.created.get(tags.get(tag) as string) ?? '';
  // Newest first by creation time (ISO strings of one format compare as times); ties by name.
  others.sort((a, b) => (when(a) === when(b) ? (a < b ? -1 : a > b ? 1 : 0) : when(a) < when(b) ? 1 : -1));
  const slots = Math.max(0, keep - current.length);
  plan.kept.push(...others.slice(0, slots));
  const stale = new Set([...others.slice(slots), ...[...tags.keys()].filter((t) => isWorkflowTag(t) && !current.includes(t))]);
  if (stale.size === 0) return plan;
  // In use: named by a tag that stays, or a platform of an index such a tag names, or pinned.
  const inUse = new Set(inventory.pinned);
  for (const [tag, digest] of tags) {
    if (stale.has(tag)) continue;
    inUse.add(digest);
    for (const child of inventory.indexes.get(digest) ?? []) inUse.add(child);
  }
  const deletes = new Map<string, string[]>();
  for (const tag of [...stale].sort()) {
    const digest = tags.get(tag) as string;
    if (inUse.has(digest)) plan.untags.push({ digest, tag });
    else deletes.set(digest, [...(deletes.get(digest) ?? []), tag]);
  }
  plan.deletes = [...deletes].map(([digest, t]) => ({ digest, tags: t }));
  return plan;
}

/** Registry calls at once (a registry answers a burst of HEADs slower than a few at a time). */
const CONCURRENCY = 8;

const INDEX_TYPES = new Set<string>([MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerManifestList]);


/** The inventory through the OCI distribution API: the tag list, a HEAD per tag, the indexes' platforms, the input tags' image configs. */
export async function registryInventory(client: RegistryClient, repository: string, names?: string[]): Promise<RepositoryInventory> {
  const inventory: RepositoryInventory = { tags: new Map(), indexes: new Map(), pinned: new Set(), created: new Map() };
  names ??= await client.listTags(repository);
  const heads = await pMap(names, (tag) => client.headManifest(repository, tag), { concurrency: CONCURRENCY });
  const indexDigests = new Set<string>();
  const imageDigests = new Set<string>();
  names.forEach((tag, i) => {
    const head = heads[i];
    if (!head) return; // deleted since the list was read
    inventory.tags.set(tag, head.digest);
    if (INDEX_TYPES.has(head.mediaType)) indexDigests.add(head.digest);
    if (isInputTag(tag)) imageDigests.add(head.digest);
  });
  await pMap([...indexDigests], async (digest) => {
    const body = JSON.parse((await client.getManifest(repository, digest)).body.toString('utf8')) as { manifests?: Array<{ digest?: string }> };
    inventory.indexes.set(digest, (body.manifests ?? []).map((m) => m.digest).filter((d): d is string => typeof d === 'string'));
  }, { concurrency: CONCURRENCY });
  await pMap([...imageDigests], async (digest) => {
    inventory.created.set(digest, (await describeExisting(client, repository, digest)).createdAt);
  }, { concurrency: CONCURRENCY });
  return inventory;
}

/** The inventory through Harbor's API: its artifact list has the tags, the index references and the image configs. */
export async function harborInventory(harbor: HarborClient, project: string, repository: string, controls: OperationControls = {}): Promise<RepositoryInventory> {
  const inventory: RepositoryInventory = { tags: new Map(), indexes: new Map(), pinned: new Set(), created: new Map() };
  const artifacts = await harbor.listArtifacts(project, repository, { signal: controls.signal });
  for (const artifact of artifacts) {
    const digest = artifact.digest as string;
    for (const tag of artifact.tags ?? []) inventory.tags.set(tag.name, digest);
    const children = (artifact.references ?? []).map((r) => r.child_digest).filter((d): d is string => typeof d === 'string');
    if (children.length > 0) {
      inventory.indexes.set(digest, children);
      // Harbor refuses to delete an artifact an index references, tagged or not.
      for (const child of children) inventory.pinned.add(child);
    }
    inventory.created.set(digest, harborCreated(artifact));
  }
  return inventory;
}

/** The image's creation time as Harbor read it from the config: the OCI label first, like the registry path. */
function harborCreated(artifact: HarborArtifact): string | undefined {
  const extra = (artifact.extra_attrs ?? {}) as { created?: unknown; config?: { Labels?: Record<string, unknown> | null } };
  const label = extra.config?.Labels?.['org.opencontainers.image.created'];
  if (typeof label === 'string' && label) return label;
  return typeof extra.created === 'string' && extra.created ? extra.created : undefined;
}

export interface RetentionTarget {
  client: RegistryClient;
  repository: string;
  /** Harbor's API at the registry's host (undefined: a plain OCI registry). */
  harbor?: HarborClient;
}

export interface RetentionResult {
  keep: number;
  /** Input tags removed (check mode: that would be). */
  removedTags: string[];
  /** Images deleted (check mode: that would be): manifests, or Harbor artifacts. */
  removedDigests: string[];
  /** Input tags kept (sorted by name). */
  kept: string[];
  /** Stale input tags left because their image is still in use and the registry deletes by digest only. */
  inUse?: string[];
  /** Why retention did not (fully) happen: deletes refused, or an error reading or deleting. */
  warning?: string;
  /** Harbor's API (true) or the registry API (false). */
  harbor: boolean;
}

const harborProbes = new WeakMap<HarborClient, Promise<boolean>>();

/** Harbor answers /api/v2.0/ping at the registry's host; anything else is a plain OCI registry. Asked once per client. */
export function isHarbor(harbor: HarborClient, controls: OperationControls = {}): Promise<boolean> {
  let probe = harborProbes.get(harbor);
  if (!probe) {
    probe = harbor.ping({ signal: controls.signal }).then(
      (pong) => /pong/i.test(pong),
      () => false,
    );
    harborProbes.set(harbor, probe);
  }
  return probe;
}

/**
 * Keep the newest `keep` input tags of the repository (0: all) and remove the rest. Never throws
 * for the registry's sake: a registry that refuses deletes, or any error reading or deleting, is
 * a warning in the result (with what was removed until then); an abort still throws.
 * options.tagList: the repository's tags as the caller read them in this run (a plain registry).
 */
export async function retainInputTags(
  target: RetentionTarget,
  options: { keep: number; current: string[]; published?: PublishedTags; dryRun?: boolean; tagList?: string[] },
  controls: OperationControls = {},
): Promise<RetentionResult> {
  const { client, repository } = target;
  const harbor = target.harbor && (await isHarbor(target.harbor, controls)) ? target.harbor : undefined;
  const result: RetentionResult = { keep: options.keep, removedTags: [], removedDigests: [], kept: [], harbor: Boolean(harbor) };
  if (options.keep === 0) return result;
  const [project, ...rest] = repository.split('/');
  const harborRepository = rest.join('/');
  const where = `${client.registry}/${repository}`;
  try {
    let inventory: RepositoryInventory;
    if (harbor) {
      inventory = await harborInventory(harbor, project as string, harborRepository, controls);
    } else {
      // The usual case costs one request (none when the caller read the list in this run): no
      // more input tags than kept, so nothing to rank.
      const names = options.tagList ?? (await client.listTags(repository));
      const inputTags = new Set([...names.filter(isInputTag), ...options.current]);
      if (inputTags.size <= options.keep && !names.some(isWorkflowTag)) return { ...result, kept: [...inputTags].sort() };
      inventory = await registryInventory(client, repository, names);
    }
    const plan = planRetention(inventory, options);
    result.kept = [...plan.kept].sort();
    if (!harbor && plan.untags.length > 0) result.inUse = plan.untags.map((u) => u.tag);
    for (const { digest, tags } of plan.deletes) {
      if (!options.dryRun) {
        if (harbor) {
          await harbor.deleteArtifact(project as string, harborRepository, digest, { signal: controls.signal });
        } else if ((await client.deleteManifest(repository, digest)) === 'unsupported') {
          result.warning = `${where}: the registry refuses deletes, so ${plan.deletes.reduce((n, d) => n + d.tags.length, 0)} old input tags stay (enable deletes: distribution's storage.delete.enabled; or set keepInputTags to 0)`;
          break;
        }
      }
      result.removedDigests.push(digest);
      result.removedTags.push(...tags);
    }
    if (harbor && !result.warning) {
      for (const { digest, tag } of plan.untags) {
        if (!options.dryRun) await harbor.deleteTag(project as string, harborRepository, digest, tag, { signal: controls.signal });
        result.removedTags.push(tag);
      }
    }
  } catch (error) {
    if (isThinkubeImageError(error) && error.code === 'ERR_ABORTED') throw error;
    if (error instanceof Error && error.name === 'AbortError') throw error;
    const message = isThinkubeImageError(error) ? error.message : error instanceof Error ? error.message : String(error);
    const hint = isThinkubeImageError(error) && error.hint ? ` (${error.hint})` : '';
    result.warning = `${where}: old input tags not (all) removed: ${message}${hint}`;
  }
  result.removedTags.sort();
  if (result.removedTags.length > 0) {
    emit(controls, { type: 'info', message: `${where}: ${options.dryRun ? 'would remove' : 'removed'} ${result.removedTags.length} old input tag(s) (keeping ${options.keep})` });
  }
  return result;
}

