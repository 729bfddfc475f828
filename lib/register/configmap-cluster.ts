/**
 * Registration target `configmap`, mode cluster: what reaches thinkube-control today. The live
 * ConfigMap is read through the Kubernetes API, this image's entry merged in (every entry, also
 * another writer's, checked against the rules of thinkube-control's sync first) and written with
 * optimistic concurrency (lib/kube). Then thinkube-control is asked to sync
 * (POST /api/v1/harbor/images/sync) and its image list is read back
 * (GET /api/v1/harbor/images?search=<name>): only an image it lists, with this entry's
 * description, category, protected and metadata, is created / updated / unchanged. Anything else
 * is a named warning outcome (or, with `required`, a failure).
 */
import type { V1ConfigMap } from '@kubernetes/client-node';
import { ThinkubeImageError, isThinkubeImageError } from '../core/errors.js';
import { KubeConnection } from '../kube/connection.js';
import { ConfigMapClient } from '../kube/configmaps.js';
import { CATEGORY_LABEL, IMAGE_MANIFEST_LABEL, MANIFEST_VERSION, checkManifest, mergeManifest, renderConfigMap, type ConfigMapObject, type ConfigMapTarget, type ImageManifest, type ManifestImage } from './configmap.js';
import { ControlClient, canonicalJson, type ControlEvent } from './control-client.js';
import type { KubeConnection as KubeConnectionOptions, RegisterOptions } from '../options/generated/types.js';

/**
 * created / updated / unchanged: thinkube-control lists the image with this entry. not-synced:
 * the ConfigMap holds it, thinkube-control was not asked (no controlUrl). sync-failed: the sync
 * answered an error (it rolled back). sync-unreachable: thinkube-control could not be reached.
 * synced-not-visible: the sync ran but the image is not listed (or with other content).
 */
export type ClusterOutcome = 'created' | 'updated' | 'unchanged' | 'not-synced' | 'sync-failed' | 'sync-unreachable' | 'synced-not-visible';

export interface ClusterRegistration {
  outcome: ClusterOutcome;
  changed: boolean;
  before: ManifestImage | null;
  after: ManifestImage;
  configMap: ConfigMapObject;
  warnings: string[];
  /** Writes that lost a race with another writer and were done again. */
  conflicts: number;
  /** The cluster written to (server URL; no credentials). */
  server: string;
}

export interface ClusterOptions {
  target: ConfigMapTarget;
  kubernetes?: KubeConnectionOptions | undefined;
  /** Validated register options (controlUrl, token, TLS, timeouts, retry, required). */
  control: Pick<RegisterOptions, 'controlUrl' | 'token' | 'caFile' | 'validateCerts' | 'timeoutSeconds' | 'retry' | 'required'>;
  dryRun: boolean;
  signal?: AbortSignal | undefined;
  onEvent?: ((event: ControlEvent) => void) | undefined;
}

/** The manifest in a live ConfigMap; errors name the ConfigMap. */
function liveManifest(current: V1ConfigMap, where: string): ImageManifest | undefined {
  const text = current.data?.['manifest.json'];
  if (text === undefined) return undefined;
  let manifest: unknown;
  try {
    manifest = JSON.parse(text);
  } catch (error) {
    throw new ThinkubeImageError('ERR_MANIFEST_INVALID', `data["manifest.json"] of ${where} is not valid JSON (${(error as Error).message}); thinkube-control's sync fails on it too`, {
      hint: 'Fix the ConfigMap (kubectl edit), then register again; nothing was written',
      details: { where },
    });
  }
  if (!manifest || typeof manifest !== 'object' || !Array.isArray((manifest as ImageManifest).images)) {
    throw new ThinkubeImageError('ERR_MANIFEST_INVALID', `data["manifest.json"] of ${where} has no "images" list`, {
      hint: 'Fix the ConfigMap (kubectl edit), then register again; nothing was written',
      details: { where },
    });
  }
  return manifest as ImageManifest;
}

/** The fields thinkube-control updates on an existing row: equal means the row shows this entry. */
function rowShows(row: Record<string, unknown>, entry: ManifestImage): boolean {
  return (
    row.description === entry.description &&
    row.category === entry.category &&
    Boolean(row.protected) === entry.protected &&
    canonicalJson(row.metadata ?? {}) === canonicalJson(entry.metadata)
  );
}

export async function registerConfigMapCluster(entry: ManifestImage, options: ClusterOptions): Promise<ClusterRegistration> {
  const { target, dryRun, control } = options;
  const where = `ConfigMap ${target.namespace}/${target.name}`;
  const warnings: string[] = [];
  checkManifest({ manifest_version: MANIFEST_VERSION, images: [entry] }, `the entry of ${entry.name}`);

  const connection = KubeConnection.load(options.kubernetes ?? {});
  const configMaps = new ConfigMapClient(connection, options.signal);
  let before: ManifestImage | null = null;
  let rendered: ConfigMapObject | undefined;
  const modified = await configMaps.modify(
    target,
    (current) => {
      const label = current?.metadata?.labels?.[CATEGORY_LABEL];
      if (current && label !== undefined && label !== target.category) {
        throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `${where} holds ${label} images; ${entry.name} is registered as ${target.category}`, {
          hint: 'Put system and user images in different ConfigMaps (configmap.name), or use the same configmap.category',
          details: { field: 'configmap.category', namespace: target.namespace, name: target.name },
        });
      }
      const existing = current ? liveManifest(current, where) : undefined;
      before = existing?.images.find((image) => image?.name === entry.name) ?? null;
      const merged = mergeManifest(existing, entry);
      checkManifest(merged, where);
      const previous = current ? ({ ...current, metadata: { ...current.metadata, labels: { ...(current.metadata?.labels ?? {}) } } } as unknown as ConfigMapObject) : undefined;
      rendered = renderConfigMap(merged, target, previous);
      const labelled = current?.metadata?.labels?.[IMAGE_MANIFEST_LABEL] === 'true' && label === target.category;
      // Our entry already there, labels right: nothing to write (another writer's formatting stays).
      if (current && labelled && before && canonicalJson(before) === canonicalJson(entry)) return null;
      const metadata = { ...(current?.metadata ?? {}), ...rendered.metadata };
      delete (metadata as { managedFields?: unknown }).managedFields;
      return { ...(current ?? {}), ...rendered, metadata } as V1ConfigMap;
    },
    { dryRun },
  );
  const writes = modified.action !== 'none' || modified.wouldWrite !== undefined;
  if (modified.conflicts > 0) warnings.push(`${where} was changed by another writer meanwhile: read and merged again (${modified.conflicts} time(s)); their entries were kept`);
  const result = (outcome: ClusterOutcome, changed: boolean): ClusterRegistration => ({
    outcome,
    changed,
    before,
    after: entry,
    configMap: rendered as ConfigMapObject,
    warnings,
    conflicts: modified.conflicts,
    server: connection.server,
  });
  /** A warning outcome; with `required` a failure. */
  const notHeld = (outcome: ClusterOutcome, changed: boolean, message: string, hint: string, cause?: unknown): ClusterRegistration => {
    // Check mode reaches this only for what the real run would meet too (no controlUrl, the list unreadable).
    if (control.required) {
      throw new ThinkubeImageError('ERR_REGISTRATION_NOT_VISIBLE', `${message} (outcome ${outcome})`, { hint, cause, details: { outcome, namespace: target.namespace, name: target.name, image: entry.name } });
    }
    warnings.push(`${message}. ${hint}`);
    return result(outcome, changed);
  };
  const stored = dryRun ? `${where} would hold ${entry.name}` : `${where} holds ${entry.name}${writes ? ' (written)' : ''}`;

  if (!control.controlUrl) {
    return notHeld('not-synced', writes, `${stored}, but thinkube-control was not asked to sync (no controlUrl): it reads the ConfigMap at its next start`, 'Give controlUrl and token so that the registration syncs and is confirmed');
  }
  const client = new ControlClient({
    controlUrl: control.controlUrl,
    token: control.token ?? (process.env.THINKUBE_CONTROL_TOKEN || undefined),
    caFile: control.caFile,
    validateCerts: control.validateCerts,
    timeoutSeconds: control.timeoutSeconds,
    retry: control.retry,
    signal: options.signal,
    onEvent: options.onEvent,
  });
  const findRow = async (): Promise<Record<string, unknown> | undefined> => (await client.findImages(entry.name)).find((row) => row.destination_url === entry.destination_url);
  const unreachable = (error: unknown): boolean => isThinkubeImageError(error) && error.details.status === undefined && error.code !== 'ERR_ABORTED';

  let rowBefore: Record<string, unknown> | undefined;
  try {
    rowBefore = await findRow();
  } catch (error) {
    if (!isThinkubeImageError(error) || error.code === 'ERR_ABORTED') throw error;
    const outcome = unreachable(error) ? 'sync-unreachable' : 'sync-failed';
    return notHeld(outcome, writes, `${stored}, but thinkube-control's image list could not be read: ${error.message}`, error.hint ?? 'Check controlUrl and token', error);
  }
  const rowMatches = rowBefore !== undefined && rowShows(rowBefore, entry);
  if (!writes && rowMatches) return result('unchanged', false);
  const outcome: ClusterOutcome = rowBefore ? 'updated' : 'created';
  if (dryRun) return result(outcome, true);

  try {
    await client.syncImages();
  } catch (error) {
    if (!isThinkubeImageError(error) || error.code === 'ERR_ABORTED') throw error;
    const how = unreachable(error) ? 'sync-unreachable' : 'sync-failed';
    return notHeld(
      how,
      true,
      `${stored}, but thinkube-control's sync ${how === 'sync-failed' ? 'failed (it rolls back the whole run, so no image of any manifest was updated)' : 'could not be reached'}: ${error.message}`,
      how === 'sync-failed' ? 'Read thinkube-control\'s logs for the entry it rejected (kubectl logs -n thinkube-control deploy/backend), fix it, and register again' : (error.hint ?? 'Check controlUrl'),
      error,
    );
  }
  let rowAfter: Record<string, unknown> | undefined;
  try {
    rowAfter = await findRow();
  } catch (error) {
    if (!isThinkubeImageError(error) || error.code === 'ERR_ABORTED') throw error;
    return notHeld(unreachable(error) ? 'sync-unreachable' : 'sync-failed', true, `${stored} and the sync answered, but the image list could not be read back: ${error.message}`, error.hint ?? 'Check controlUrl and token', error);
  }
  if (!rowAfter) {
    return notHeld('synced-not-visible', true, `${stored} and the sync succeeded, but GET /api/v1/harbor/images?search=${entry.name} lists no image ${entry.destination_url}`, 'thinkube-control may read another cluster, or skipped the ConfigMap (labels): check with kubectl get configmap -A -l thinkube.io/image-manifest=true');
  }
  if (!rowShows(rowAfter, entry)) {
    return notHeld('synced-not-visible', true, `${stored} and the sync succeeded, but thinkube-control lists ${entry.destination_url} with other description, category, protected or metadata`, 'Another ConfigMap may register the same registry/repository/tag: find it with kubectl get configmap -A -l thinkube.io/image-manifest=true');
  }
  return result(outcome, true);
}
