/**
 * registerImage: tell thinkube-control about a built and pushed image. Three targets:
 * - catalog (default): a local JSON file, safe against concurrent writers;
 * - api: the HTTP contract of schemas/control-api.schema.json (an upsert by name);
 * - configmap: the ConfigMap manifest thinkube-control's image discovery reads today: in mode
 *   cluster written through the Kubernetes API and synced (configmap-cluster.ts), in mode file
 *   written to a file for kubectl apply -f / kubernetes.core.k8s.
 * Every target registers the same entry (registrationEntry), only with a verified digest, with
 * the vulnerability scan's counts (or the scan's status when there are none).
 */
import path from 'node:path';
import { ThinkubeImageError, ValidationError } from '../core/errors.js';
import { isLoopbackHost } from '../http/tls.js';
import { validate } from '../options/schema.js';
import { ControlClient, type ControlEvent } from './control-client.js';
import { defaultCatalogPath, upsertCatalogEntry } from './catalog-file.js';
import { defaultConfigMapPath, manifestEntry, writeConfigMapEntry, type ConfigMapObject, type ControlCategory, type ManifestImage } from './configmap.js';
import type { ClusterOutcome } from './configmap-cluster.js';
import type { ConfigMapTargetOptions, RegisterOptions, RegisteredImage } from '../options/generated/types.js';

export type { RegisterOptions, RegisteredImage } from '../options/generated/types.js';

export type RegisterTarget = 'catalog' | 'api' | 'configmap';

/**
 * created / updated / unchanged: catalog, api, and configmap in mode cluster once thinkube-control
 * lists the image. endpoint-unavailable: thinkube-control has no /api/v1/images (a warning).
 * written / file-unchanged: configmap in mode file (applying the file is the caller's step).
 * not-synced, sync-failed, sync-unreachable, synced-not-visible: configmap in mode cluster, the
 * ConfigMap holds the image but thinkube-control was not confirmed to (warnings; see ClusterOutcome).
 */
export type RegisterOutcome = 'created' | 'updated' | 'unchanged' | 'endpoint-unavailable' | 'written' | 'file-unchanged' | Exclude<ClusterOutcome, 'created' | 'updated' | 'unchanged'>;

export type RegisterEvent =
  | ControlEvent
  | { type: 'warning'; message: string }
  | { type: 'registered'; target: RegisterTarget; outcome: RegisterOutcome; changed: boolean; location: string; dryRun: boolean };

export interface RegisterControls {
  signal?: AbortSignal;
  onEvent?: (event: RegisterEvent) => void;
}

export interface RegisterResult {
  target: RegisterTarget;
  /** Something was (for a dry run: would be) written. */
  changed: boolean;
  outcome: RegisterOutcome;
  /** The entry registered (for a dry run: that would be). */
  entry: RegisteredImage;
  warnings: string[];
  /**
   * For Ansible's diff mode: the image's entry before and after, as the target stores it
   * (RegisteredImage for catalog and api, the manifest entry for configmap). null: absent/unknown.
   */
  diff: { before: RegisteredImage | ManifestImage | null; after: RegisteredImage | ManifestImage | null };
  /** api: the image's URL; catalog: the file; configmap: namespace/name (the file is in `path`). */
  location: string;
  dryRun: boolean;
  /** catalog and configmap in mode file: the file read and written. */
  path?: string;
  /** configmap in mode cluster: writes that lost a race with another writer and were merged again. */
  conflicts?: number;
  /** configmap: the rendered object (kubernetes.core.k8s `definition`). */
  configMap?: ConfigMapObject;
}

/** Validated options: the schema's defaults are set. */
interface Normalized extends RegisterOptions {
  target: RegisterTarget;
  dryRun: boolean;
  configmap: ConfigMapTargetOptions & { namespace: string; category: ControlCategory; mode: 'file' | 'cluster' };
}

const REMEDY_ENDPOINT = 'Register through target configmap (what thinkube-control reads today), or set required: false to go on with a warning';

function checkConsistency(options: RegisterOptions): void {
  const last = options.reference.repository.split('/').pop();
  if (last !== options.image.name) {
    throw new ValidationError('options', [
      {
        field: 'reference.repository',
        message: `ends in ${String(last)} but image.name is ${options.image.name}: the registration would point at another image (use <project>/${options.image.name})`,
      },
    ]);
  }
}

function normalize(options: RegisterOptions): Normalized {
  const valid = validate<Normalized>('register-options.schema.json', options);
  checkConsistency(valid);
  return valid;
}

function buildEntry(options: RegisterOptions): RegisteredImage {
  const { image, reference } = options;
  const metadata: Record<string, unknown> = { ...(image.metadata ?? {}) };
  // thinkube-control lists Jupyter images by metadata.purpose.
  if (image.category === 'jupyter' && metadata.purpose === undefined) metadata.purpose = 'jupyter';
  const entry: Record<string, unknown> = {
    name: image.name,
    display_name: image.display_name,
    description: image.description,
    category: image.category,
    tags: image.tags,
    version: image.version,
    registry: reference.registry,
    repository: reference.repository,
    tag: reference.tag,
    digest: reference.digest,
    size_bytes: reference.sizeBytes,
    built_at: reference.builtAt,
    destination_url: `${reference.registry}/${reference.repository}:${reference.tag}`,
    source: 'built',
    source_url: options.sourceUrl,
    metadata,
    platforms: reference.platforms,
    // Counts only for a finished scan: an image not scanned never shows zeros.
    scan_status: options.scan?.status ?? 'not-scanned',
    vulnerabilities: options.scan?.status === 'Success' ? { critical: options.scan.critical, high: options.scan.high, medium: options.scan.medium, low: options.scan.low } : undefined,
    scanner: options.scan?.status === 'Success' ? options.scan.scanner : undefined,
  };
  for (const key of Object.keys(entry)) if (entry[key] === undefined) delete entry[key];
  return entry as unknown as RegisteredImage;
}

/** The entry registerImage registers for these options (validated; same for every target). */
export function registrationEntry(options: RegisterOptions): RegisteredImage {
  return buildEntry(normalize(options));
}

/** This machine (the one loopback test, lib/http) or a Kubernetes service name: plain HTTP stays inside. */
function isLocalHttp(url: URL): boolean {
  return isLoopbackHost(url.host) || /\.svc(\.cluster\.local)?$/.test(url.hostname) || url.hostname.endsWith('.cluster.local');
}

async function registerApi(options: Normalized, entry: RegisteredImage, controls: RegisterControls): Promise<RegisterResult> {
  const controlUrl = options.controlUrl as string; // the schema requires it for target api
  const token = options.token ?? (process.env.THINKUBE_CONTROL_TOKEN || undefined);
  const warnings: string[] = [];
  const url = new URL(controlUrl);
  if (url.protocol === 'https:' && options.validateCerts === false) warnings.push(`TLS certificate of thinkube-control at ${controlUrl} is not verified (validateCerts: false)`);
  if (url.protocol === 'http:' && token && !isLocalHttp(url)) warnings.push(`The API token is sent to ${url.host} over plain HTTP; use https:// outside the cluster`);
  const client = new ControlClient({
    controlUrl,
    token,
    caFile: options.caFile,
    validateCerts: options.validateCerts,
    timeoutSeconds: options.timeoutSeconds,
    retry: options.retry,
    signal: controls.signal,
    onEvent: controls.onEvent,
  });
  const result = await client.upsertImage(entry, { dryRun: options.dryRun });
  warnings.push(...result.warnings);
  if (result.outcome === 'endpoint-unavailable' && options.required) {
    const u = result.unavailable;
    throw new ThinkubeImageError('ERR_ENDPOINT_UNAVAILABLE', `thinkube-control at ${controlUrl} has no /api/v1/images endpoint yet (HTTP ${u?.status} to ${u?.method} ${u?.url}); ${entry.name} was not registered`, {
      hint: REMEDY_ENDPOINT,
      details: { url: u?.url, status: u?.status, image: entry.name },
    });
  }
  return {
    target: 'api',
    changed: result.outcome === 'created' || result.outcome === 'updated',
    outcome: result.outcome,
    entry,
    warnings,
    diff: { before: result.before, after: result.after },
    location: result.url,
    dryRun: options.dryRun,
  };
}

async function registerCatalog(options: Normalized, entry: RegisteredImage): Promise<RegisterResult> {
  const file = path.resolve(options.catalogPath ?? defaultCatalogPath());
  const result = await upsertCatalogEntry(file, entry, { dryRun: options.dryRun });
  return {
    target: 'catalog',
    changed: result.changed,
    outcome: result.outcome,
    entry,
    warnings: [],
    diff: { before: result.before, after: result.after },
    location: file,
    dryRun: options.dryRun,
    path: file,
  };
}

async function registerConfigMap(options: Normalized, entry: RegisteredImage, controls: RegisterControls): Promise<RegisterResult> {
  const cm = options.configmap;
  const target = {
    namespace: cm.namespace,
    name: cm.name ?? `thinkube-custom-images-${options.image.category}`,
    category: cm.category,
  };
  const mapped = manifestEntry(entry, { category: target.category, harborProject: cm.harborProject, protected: cm.protected });
  if (cm.mode === 'cluster') {
    // The Kubernetes client loads only for this target: every other run starts without it.
    const { registerConfigMapCluster } = await import('./configmap-cluster.js');
    const result = await registerConfigMapCluster(mapped, {
      target,
      kubernetes: options.kubernetes,
      control: options,
      dryRun: options.dryRun,
      signal: controls.signal,
      onEvent: controls.onEvent,
    });
    return {
      target: 'configmap',
      changed: result.changed,
      outcome: result.outcome,
      entry,
      warnings: result.warnings,
      diff: { before: result.before, after: result.after },
      location: `${target.namespace}/${target.name}`,
      dryRun: options.dryRun,
      configMap: result.configMap,
      conflicts: result.conflicts,
    };
  }
  const file = path.resolve(cm.outputPath ?? defaultConfigMapPath(target));
  const result = await writeConfigMapEntry(file, mapped, target, { dryRun: options.dryRun });
  return {
    target: 'configmap',
    changed: result.changed,
    outcome: result.changed ? 'written' : 'file-unchanged',
    entry,
    warnings: [],
    diff: { before: result.before, after: result.after },
    location: `${target.namespace}/${target.name}`,
    dryRun: options.dryRun,
    path: file,
    configMap: result.configMap,
  };
}

/**
 * Register a pushed image (options.reference.digest is required: register only what the registry
 * confirmed). Never throws for a missing API endpoint unless options.required; never puts the token
 * in a message, event or result.
 */
export async function registerImage(options: RegisterOptions, controls: RegisterControls = {}): Promise<RegisterResult> {
  const normalized = normalize(options);
  const entry = buildEntry(normalized);
  if (controls.signal?.aborted) {
    throw new ThinkubeImageError('ERR_ABORTED', `Registration of ${entry.name} aborted before it started`, { hint: 'Run it again' });
  }
  let result: RegisterResult;
  switch (normalized.target) {
    case 'api':
      result = await registerApi(normalized, entry, controls);
      break;
    case 'configmap':
      result = await registerConfigMap(normalized, entry, controls);
      break;
    default:
      result = await registerCatalog(normalized, entry);
  }
  for (const message of result.warnings) controls.onEvent?.({ type: 'warning', message });
  controls.onEvent?.({ type: 'registered', target: result.target, outcome: result.outcome, changed: result.changed, location: result.location, dryRun: result.dryRun });
  return result;
}
