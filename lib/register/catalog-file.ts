/**
 * The local image catalog (registration target `catalog`, the embedded default): one JSON file
 * `{ "version": 1, "images": { "<name>": RegisteredImage } }`. Every change is a read-modify-write
 * under a lock file with an atomic rename, so concurrent registrations from several processes
 * never lose an entry and a reader never sees half a file.
 */
import { mkdir, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import lockfile from 'proper-lockfile';
import { ThinkubeImageError } from '../core/errors.js';
import { canonicalJson } from './control-client.js';
import type { RegisteredImage } from '../options/generated/types.js';

export interface CatalogFile {
  version: 1;
  images: Record<string, RegisteredImage>;
}

export type CatalogOutcome = 'created' | 'updated' | 'unchanged';

export interface CatalogWriteResult {
  outcome: CatalogOutcome;
  changed: boolean;
  before: RegisteredImage | null;
  after: RegisteredImage;
  path: string;
}

/** Folder of the default catalog and ConfigMap files: ~/.local/share/thinkube-custom-images. */
export function defaultDataDir(): string {
  return path.join(os.homedir(), '.local', 'share', 'thinkube-custom-images');
}

/** $THINKUBE_IMAGES_CATALOG, else ~/.local/share/thinkube-custom-images/catalog.json. */
export function defaultCatalogPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.THINKUBE_IMAGES_CATALOG ? path.resolve(env.THINKUBE_IMAGES_CATALOG) : path.join(defaultDataDir(), 'catalog.json');
}

/** "file:line:column" of a JSON.parse error, from the position Node reports. */
export function jsonErrorLocation(file: string, text: string, error: Error): string {
  const match = /position (\d+)/.exec(error.message);
  const lineCol = /line (\d+) column (\d+)/.exec(error.message);
  if (lineCol) return `${file}:${lineCol[1]}:${lineCol[2]}`;
  if (!match) return file;
  const before = text.slice(0, Number(match[1]));
  const line = before.split('\n').length;
  const column = before.length - before.lastIndexOf('\n');
  return `${file}:${line}:${column}`;
}

/** The catalog at `file`; an empty one when the file does not exist yet. */
export async function readCatalog(file: string = defaultCatalogPath()): Promise<CatalogFile> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, images: {} };
    throw new ThinkubeImageError('ERR_CATALOG', `Cannot read the image catalog ${file} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`, {
      hint: 'Check the permissions of the file, or give another catalogPath',
      details: { file },
    });
  }
  if (!text.trim()) return { version: 1, images: {} };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new ThinkubeImageError('ERR_CATALOG', `The image catalog ${jsonErrorLocation(file, text, error as Error)} is not valid JSON (${(error as Error).message})`, {
      hint: 'Fix the file, or move it away (the next registration starts a new catalog)',
      details: { file },
    });
  }
  const images = (parsed as { images?: unknown } | null)?.images;
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed) || !images || typeof images !== 'object' || Array.isArray(images)) {
    throw new ThinkubeImageError('ERR_CATALOG', `The image catalog ${file} is not a catalog: expected {"version": 1, "images": {"<name>": {...}}}`, {
      hint: 'Give catalogPath of a catalog written by this tool, or move the file away',
      details: { file },
    });
  }
  return { version: 1, images: images as Record<string, RegisteredImage> };
}

/**
 * Run `fn` holding an exclusive lock on `file` (a `<file>.lock` folder, shared by every process
 * using this function). The file itself need not exist.
 */
export async function withFileLock<T>(file: string, fn: () => Promise<T>): Promise<T> {
  await mkdir(path.dirname(file), { recursive: true });
  let compromised: Error | undefined;
  let release: () => Promise<void>;
  try {
    release = await lockfile.lock(file, {
      realpath: false,
      stale: 15_000,
      retries: { retries: 200, factor: 1.3, minTimeout: 10, maxTimeout: 250, randomize: true },
      onCompromised: (error) => {
        compromised = error;
      },
    });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new ThinkubeImageError('ERR_CATALOG', code === 'ELOCKED' ? `${file} is locked by another process (${file}.lock)` : `Cannot lock ${file} (${code ?? (error as Error).message})`, {
      hint: code === 'ELOCKED' ? `Wait for the other registration to finish; if none is running, remove ${file}.lock` : 'Check that the folder is writable',
      details: { file },
    });
  }
  try {
    const value = await fn();
    if (compromised) {
      throw new ThinkubeImageError('ERR_CATALOG', `The lock on ${file} was taken over by another process while writing (${compromised.message})`, {
        hint: 'The machine may be overloaded or the lock was removed by hand; run the registration again',
        details: { file },
      });
    }
    return value;
  } finally {
    await release().catch(() => undefined);
  }
}

/** Write JSON atomically (temporary file + rename): a reader sees the old or the new file. */
export async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  await writeTextAtomic(file, `${JSON.stringify(value, null, 2)}\n`);
}

/** Write text atomically (temporary file + rename). */
export async function writeTextAtomic(file: string, text: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  // Loaded when something is written: an unchanged catalog is only read.
  const { default: writeFileAtomic } = await import('write-file-atomic');
  try {
    await writeFileAtomic(file, text);
  } catch (error) {
    throw new ThinkubeImageError('ERR_CATALOG', `Cannot write ${file} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`, {
      hint: 'Check that the folder is writable and the disk is not full',
      details: { file },
    });
  }
}

function sortedImages(images: Record<string, RegisteredImage>): Record<string, RegisteredImage> {
  return Object.fromEntries(Object.keys(images).sort().map((k) => [k, images[k] as RegisteredImage]));
}

/** Insert or replace `entry` (keyed by name). A dry run reads only. */
export async function upsertCatalogEntry(file: string, entry: RegisteredImage, options: { dryRun?: boolean } = {}): Promise<CatalogWriteResult> {
  const decide = (catalog: CatalogFile): CatalogWriteResult => {
    const before = catalog.images[entry.name] ?? null;
    const same = before !== null && canonicalJson(before) === canonicalJson(entry);
    return { outcome: before === null ? 'created' : same ? 'unchanged' : 'updated', changed: !same, before, after: entry, path: file };
  };
  if (options.dryRun) return decide(await readCatalog(file));
  return withFileLock(file, async () => {
    // Read under the lock: what another process wrote a moment ago is kept.
    const catalog = await readCatalog(file);
    const result = decide(catalog);
    if (result.changed) await writeJsonAtomic(file, { version: 1, images: sortedImages({ ...catalog.images, [entry.name]: entry }) });
    return result;
  });
}
