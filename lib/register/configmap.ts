/**
 * Registration target `configmap`: the Kubernetes ConfigMap that thinkube-control's image
 * discovery reads today. It lists ConfigMaps labelled `thinkube.io/image-manifest: "true"` in every
 * namespace, files them under the `thinkube.io/category` label (system or user: any other value
 * breaks its sync) and reads `data["manifest.json"]`, `{"manifest_version": "1.0", "images": [...]}`
 * with one entry per image in its field names. The file is read, merged and rewritten, so images
 * registered by earlier runs stay in the manifest.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import yaml from 'js-yaml';
import { ThinkubeImageError } from '../core/errors.js';
import { defaultDataDir, jsonErrorLocation, withFileLock, writeTextAtomic } from './catalog-file.js';
import type { RegisteredImage } from '../options/generated/types.js';

export const IMAGE_MANIFEST_LABEL = 'thinkube.io/image-manifest';
export const CATEGORY_LABEL = 'thinkube.io/category';
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
/** thinkube-control logs a warning for any other version. */
export const MANIFEST_VERSION = '1.0';
/** Kubernetes refuses a ConfigMap whose data exceeds 1 MiB. */
const CONFIGMAP_DATA_LIMIT = 1024 * 1024;

export type ControlCategory = 'system' | 'user';

/** One image in manifest.json, in thinkube-control's field names. */
export interface ManifestImage {
  name: string;
  registry: string;
  repository: string;
  tag: string;
  source_url: string | null;
  destination_url: string;
  description: string;
  category: ControlCategory;
  source: string;
  protected: boolean;
  /** When it was built (thinkube-control's mirror_date); null lets it use the discovery time. */
  mirror_date: string | null;
  harbor_project: string;
  /** The seed's metadata plus display_name, image_category (the seed's category), digest, size_bytes, ... */
  metadata: Record<string, unknown>;
  [key: string]: unknown;
}

export interface ImageManifest {
  manifest_version: string;
  images: ManifestImage[];
  [key: string]: unknown;
}

export interface ConfigMapObject {
  apiVersion: 'v1';
  kind: 'ConfigMap';
  metadata: { name: string; namespace: string; labels: Record<string, string>; annotations?: Record<string, string>; [key: string]: unknown };
  data: { 'manifest.json': string; [key: string]: string };
}

export interface ConfigMapTarget {
  namespace: string;
  name: string;
  category: ControlCategory;
}

export interface ManifestEntryOptions {
  category: ControlCategory;
  /** Default: the first component of the repository (library for library/jupyter-ml-cpu). */
  harborProject?: string;
  protected?: boolean;
}

/** Map a registered entry to thinkube-control's manifest fields. */
export function manifestEntry(entry: RegisteredImage, options: ManifestEntryOptions): ManifestImage {
  const metadata: Record<string, unknown> = { ...(entry.metadata ?? {}) };
  const extra: Record<string, unknown> = {
    display_name: entry.display_name,
    image_category: entry.category,
    tags: entry.tags,
    version: entry.version,
    digest: entry.digest,
    size_bytes: entry.size_bytes,
    built_at: entry.built_at,
    platforms: entry.platforms,
    // thinkube-control's sync stores metadata as-is but not a vulnerabilities field: here they show.
    scan_status: entry.scan_status,
    vulnerabilities: entry.vulnerabilities,
    scanner: entry.scanner,
  };
  for (const [key, value] of Object.entries(extra)) if (value !== undefined) metadata[key] = value;
  return {
    name: entry.name,
    registry: entry.registry,
    repository: entry.repository,
    tag: entry.tag,
    source_url: entry.source_url ?? null,
    destination_url: entry.destination_url,
    description: entry.description,
    category: options.category,
    source: entry.source,
    protected: options.protected ?? false,
    mirror_date: entry.built_at ?? null,
    harbor_project: options.harborProject ?? entry.repository.split('/')[0] ?? 'library',
    metadata,
  };
}

export interface ManifestProblem {
  /** The entry's position in images[] and its name (when it has one). */
  index: number;
  name?: string;
  field: string;
  message: string;
}

const ISO_DATE = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/;

/**
 * What would make thinkube-control's sync fail on this manifest, entry by entry: one bad entry
 * rolls back its whole sync run (every ConfigMap, every image). Its rules: name, registry,
 * repository and destination_url present; category system or user; mirror_date an ISO date (or
 * absent); rows unique on registry/repository/tag (tag default latest).
 */
export function manifestProblems(manifest: ImageManifest): ManifestProblem[] {
  const problems: ManifestProblem[] = [];
  const keys = new Map<string, number>();
  manifest.images.forEach((image: unknown, index) => {
    const add = (field: string, message: string): void => {
      const name = (image as { name?: unknown } | null)?.name;
      problems.push({ index, ...(typeof name === 'string' ? { name } : {}), field, message });
    };
    if (!image || typeof image !== 'object' || Array.isArray(image)) return add('(entry)', 'is not an object');
    const e = image as Record<string, unknown>;
    for (const field of ['name', 'registry', 'repository', 'destination_url']) {
      if (typeof e[field] !== 'string' || !(e[field] as string).trim()) add(field, 'is required (a non-empty string)');
    }
    if (e.category !== undefined && e.category !== 'system' && e.category !== 'user') add('category', `is ${JSON.stringify(e.category)}; thinkube-control accepts only system or user`);
    if (e.mirror_date !== undefined && e.mirror_date !== null && (typeof e.mirror_date !== 'string' || !ISO_DATE.test(e.mirror_date))) add('mirror_date', 'must be an ISO date such as 2025-01-31T12:00:00Z');
    if (e.tag !== undefined && e.tag !== null && typeof e.tag !== 'string') add('tag', 'must be a string');
    if (e.protected !== undefined && e.protected !== null && typeof e.protected !== 'boolean') add('protected', 'must be true or false');
    if (e.metadata !== undefined && e.metadata !== null && (typeof e.metadata !== 'object' || Array.isArray(e.metadata))) add('metadata', 'must be an object');
    const key = `${String(e.registry)}/${String(e.repository)}:${typeof e.tag === 'string' && e.tag ? e.tag : 'latest'}`;
    const first = keys.get(key);
    if (first !== undefined) add('tag', `${key} is also entry ${first}: thinkube-control keeps one row per registry/repository/tag`);
    else keys.set(key, index);
  });
  return problems;
}

/** Throw ERR_MANIFEST_INVALID naming every bad entry of `manifest` (where: the ConfigMap or file). */
export function checkManifest(manifest: ImageManifest, where: string): void {
  const problems = manifestProblems(manifest);
  if (problems.length === 0) return;
  const list = problems.map((p) => `images[${p.index}]${p.name ? ` (${p.name})` : ''}.${p.field} ${p.message}`).join('; ');
  throw new ThinkubeImageError('ERR_MANIFEST_INVALID', `The image manifest of ${where} has entries thinkube-control's sync would reject, and one bad entry rolls back its whole sync: ${list}`, {
    hint: 'Fix or remove the named entries (they may come from another writer), then register again; nothing was written',
    details: { problems },
  });
}

/** Add `entry` to a manifest, replacing the image of the same name; others are kept as they are. */
export function mergeManifest(existing: ImageManifest | ManifestImage[] | null | undefined, entry: ManifestImage): ImageManifest {
  const base: ImageManifest = Array.isArray(existing)
    ? { manifest_version: MANIFEST_VERSION, images: existing }
    : existing
      ? { ...existing, manifest_version: existing.manifest_version ?? MANIFEST_VERSION, images: existing.images ?? [] }
      : { manifest_version: MANIFEST_VERSION, images: [] };
  const images = base.images.filter((image) => image?.name !== entry.name);
  images.push(entry);
  // Sorted, so the same set of images always gives the same file whatever the order of the runs.
  images.sort((a, b) => String(a.name).localeCompare(String(b.name)));
  return { ...base, images };
}

/** The ConfigMap object for a manifest (or a list of entries). `previous` keeps foreign labels and annotations. */
export function renderConfigMap(entries: ManifestImage[] | ImageManifest, options: ConfigMapTarget, previous?: ConfigMapObject): ConfigMapObject {
  const manifest: ImageManifest = Array.isArray(entries) ? { manifest_version: MANIFEST_VERSION, images: entries } : entries;
  const text = `${JSON.stringify(manifest, null, 2)}\n`;
  if (Buffer.byteLength(text) > CONFIGMAP_DATA_LIMIT) {
    throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `The manifest of ConfigMap ${options.namespace}/${options.name} would exceed Kubernetes' 1 MiB limit (${manifest.images.length} images)`, {
      hint: 'Split the images over several ConfigMaps (configmap.name)',
      details: { namespace: options.namespace, name: options.name },
    });
  }
  const labels = {
    ...(previous?.metadata.labels ?? {}),
    [IMAGE_MANIFEST_LABEL]: 'true',
    [CATEGORY_LABEL]: options.category,
    [MANAGED_BY_LABEL]: 'thinkube-custom-images',
  };
  const metadata: ConfigMapObject['metadata'] = { name: options.name, namespace: options.namespace, labels };
  if (previous?.metadata.annotations) metadata.annotations = previous.metadata.annotations;
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata,
    data: { ...(previous?.data ?? {}), 'manifest.json': text },
  };
}

export type ManifestFormat = 'yaml' | 'json';

export function formatFor(file: string): ManifestFormat {
  return file.toLowerCase().endsWith('.json') ? 'json' : 'yaml';
}

/** The file text for kubectl apply -f / kubernetes.core.k8s src. */
export function dumpConfigMap(configMap: ConfigMapObject, format: ManifestFormat = 'yaml'): string {
  if (format === 'json') return `${JSON.stringify(configMap, null, 2)}\n`;
  // lineWidth -1: never fold the JSON; the labels' "true" is quoted by js-yaml (it is a string).
  return yaml.dump(configMap, { lineWidth: -1, noRefs: true, sortKeys: false });
}

export interface ParsedConfigMap {
  configMap: ConfigMapObject;
  manifest: ImageManifest;
}

/** Parse a ConfigMap file (YAML or JSON) holding an image manifest; errors name the file. */
export function parseConfigMap(text: string, file: string): ParsedConfigMap {
  let doc: unknown;
  try {
    doc = yaml.load(text, { filename: file });
  } catch (error) {
    const mark = (error as { mark?: { line: number; column: number } }).mark;
    const where = mark ? `${file}:${mark.line + 1}:${mark.column + 1}` : file;
    throw new ThinkubeImageError('ERR_CATALOG', `The ConfigMap file ${where} is not valid YAML (${(error as { reason?: string }).reason ?? (error as Error).message})`, {
      hint: 'Fix the file, or move it away (the next registration writes a new one)',
      details: { file },
    });
  }
  const cm = doc as Partial<ConfigMapObject> | null;
  if (!cm || typeof cm !== 'object' || cm.kind !== 'ConfigMap' || !cm.metadata || typeof cm.data?.['manifest.json'] !== 'string') {
    throw new ThinkubeImageError('ERR_CATALOG', `${file} is not an image-manifest ConfigMap (kind ConfigMap with data["manifest.json"])`, {
      hint: 'Give configmap.outputPath of a file written by this tool, or move the file away',
      details: { file },
    });
  }
  const json = cm.data['manifest.json'];
  let manifest: ImageManifest;
  try {
    manifest = JSON.parse(json) as ImageManifest;
  } catch (error) {
    throw new ThinkubeImageError('ERR_CATALOG', `data["manifest.json"] in ${jsonErrorLocation(file, json, error as Error).replace(file, file + ' (inside manifest.json)')} is not valid JSON (${(error as Error).message})`, {
      hint: 'Fix the manifest, or move the file away',
      details: { file },
    });
  }
  if (!manifest || typeof manifest !== 'object' || !Array.isArray(manifest.images)) {
    throw new ThinkubeImageError('ERR_CATALOG', `data["manifest.json"] in ${file} has no "images" list`, {
      hint: 'Fix the manifest, or move the file away',
      details: { file },
    });
  }
  return { configMap: { ...cm, metadata: { ...cm.metadata, labels: { ...(cm.metadata.labels ?? {}) } } } as ConfigMapObject, manifest };
}

/** The ConfigMap in `file`, or undefined when the file does not exist. */
export async function readConfigMapFile(file: string): Promise<(ParsedConfigMap & { text: string }) | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ThinkubeImageError('ERR_CATALOG', `Cannot read the ConfigMap file ${file} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`, {
      hint: 'Check the permissions of the file, or give another configmap.outputPath',
      details: { file },
    });
  }
  if (!text.trim()) return undefined;
  return { ...parseConfigMap(text, file), text };
}

/** ~/.local/share/thinkube-custom-images/configmaps/<namespace>-<name>.yaml */
export function defaultConfigMapPath(target: Pick<ConfigMapTarget, 'namespace' | 'name'>): string {
  return path.join(defaultDataDir(), 'configmaps', `${target.namespace}-${target.name}.yaml`);
}

export interface ConfigMapWriteResult {
  changed: boolean;
  before: ManifestImage | null;
  after: ManifestImage;
  configMap: ConfigMapObject;
  path: string;
  /** How many images the manifest holds afterwards. */
  images: number;
}

/**
 * Merge `entry` into the ConfigMap file at `file` (created when missing) under a lock, rewriting it
 * atomically only when its content changes. A dry run reads only.
 */
export async function writeConfigMapEntry(file: string, entry: ManifestImage, target: ConfigMapTarget, options: { dryRun?: boolean } = {}): Promise<ConfigMapWriteResult> {
  const format = formatFor(file);
  const work = async (): Promise<ConfigMapWriteResult> => {
    const existing = await readConfigMapFile(file);
    if (existing) {
      const { metadata } = existing.configMap;
      if (metadata.name !== target.name || metadata.namespace !== target.namespace) {
        throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `${file} holds ConfigMap ${String(metadata.namespace)}/${String(metadata.name)}, not ${target.namespace}/${target.name}`, {
          hint: 'Give each ConfigMap its own configmap.outputPath',
          details: { file, field: 'configmap.outputPath' },
        });
      }
      const label = metadata.labels[CATEGORY_LABEL];
      if (label !== undefined && label !== target.category) {
        throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `ConfigMap ${target.namespace}/${target.name} in ${file} holds ${label} images; ${entry.name} is registered as ${target.category}`, {
          hint: 'Put system and user images in different ConfigMaps (configmap.name), or use the same configmap.category',
          details: { file, field: 'configmap.category' },
        });
      }
    }
    const before = existing?.manifest.images.find((image) => image?.name === entry.name) ?? null;
    const manifest = mergeManifest(existing?.manifest, entry);
    checkManifest(manifest, `ConfigMap ${target.namespace}/${target.name} in ${file}`);
    const configMap = renderConfigMap(manifest, target, existing?.configMap);
    const text = dumpConfigMap(configMap, format);
    const changed = existing?.text !== text;
    if (changed && !options.dryRun) await writeTextAtomic(file, text);
    return { changed, before, after: entry, configMap, path: file, images: manifest.images.length };
  };
  if (options.dryRun) return work();
  return withFileLock(file, work);
}
