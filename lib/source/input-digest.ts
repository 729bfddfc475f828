/**
 * Input digests: one sha256 over everything that decides an image's content — the files the
 * context sends (path, type, mode, content; never mtime), the Dockerfile, build args, labels,
 * target, platform, and the digests of the base images. Equal inputs give the equal digest, so a
 * registry tag named after it (in-<digest>) says "this exact build already exists".
 */
import { createHash } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import path from 'node:path';
import { argDeclarations, copySources, globalArgs, parseDockerfile, resolveFrom, stages } from './dockerfile.js';
import type { ContextScan } from './context.js';
import { timeSlices } from '../core/time-slice.js';
import { READ_WHOLE_MAX } from './tar-pack.js';

export const INPUT_DIGEST_LABEL = 'io.thinkube.custom-images.input-digest';
export const INPUT_TAG_PREFIX = 'in-';
/** Bumped when what goes into the digest changes, so old tags never match new rules. */
const DIGEST_FORMAT = 2;

export interface BaseImageDigest {
  /** Reference as resolved from the Dockerfile (build args substituted). */
  reference: string;
  /** Manifest digest in the registry, or local:<image id> when only the engine has it. */
  digest: string;
}

export interface InputDigestParts {
  scan: ContextScan;
  /** Only the args the Dockerfile declares (ARG) count: the builder ignores the others. */
  buildArgs?: Record<string, string>;
  labels?: Record<string, string>;
  target?: string;
  platform?: string;
  bases: BaseImageDigest[];
  /** contextFileLines(scan), when already computed (to hash files while the bases are looked up). */
  fileLines?: string[];
}

/**
 * Files up to READ_WHOLE_MAX are read with one synchronous call: most files of a context are
 * small, and a stream (open, reads, close: each a thread pool round trip) cost several times the
 * CPU of reading and hashing them. Larger files are streamed, a few at a time.
 */
async function hashFile(file: string, size: number): Promise<string> {
  const hash = createHash('sha256');
  if (size <= READ_WHOLE_MAX) return hash.update(readFileSync(file)).digest('hex');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Hash the context's files, in the scan's stable order: one line per entry. */
export async function contextFileLines(scan: ContextScan): Promise<string[]> {
  const out = new Array<string>(scan.entries.length);
  const slice = timeSlices();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < scan.entries.length) {
      const index = next++;
      const entry = scan.entries[index]!;
      const content =
        entry.type === 'file' ? await hashFile(path.join(scan.root, entry.path), entry.size) : entry.type === 'symlink' ? `link:${entry.linkTarget ?? ''}` : '';
      // Only the permission bits that survive into the image; owners are zeroed when packing.
      out[index] = `${entry.type}\u0000${entry.path}\u0000${(entry.mode & 0o7777).toString(8)}\u0000${content}`;
      await slice();
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return out;
}

/**
 * The build args that can reach the image: those an ARG instruction declares (in any stage). The
 * builder ignores the rest (it only warns), and so does the digest, so one pipeline-wide arg
 * rebuilds only the images that use it. Undeclared proxy args are excluded from the builder's
 * cache too.
 */
export function declaredBuildArgs(dockerfile: Buffer | string, buildArgs: Record<string, string> = {}): Record<string, string> {
  const declared = new Set(argDeclarations(parseDockerfile(typeof dockerfile === 'string' ? dockerfile : dockerfile.toString('utf8'))).map((d) => d.name));
  return Object.fromEntries(Object.entries(buildArgs).filter(([name]) => declared.has(name)));
}

function sortedObject(map: Record<string, string> | undefined): Array<[string, string]> {
  return Object.entries(map ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

export async function computeInputDigest(parts: InputDigestParts): Promise<string> {
  const hash = createHash('sha256');
  const files = parts.fileLines ?? (await contextFileLines(parts.scan));
  const document = {
    format: DIGEST_FORMAT,
    dockerfile: createHash('sha256').update(parts.scan.dockerfile).digest('hex'),
    dockerfileName: parts.scan.dockerfileOutside ? '(outside)' : parts.scan.dockerfileName,
    buildArgs: sortedObject(declaredBuildArgs(parts.scan.dockerfile, parts.buildArgs)),
    labels: sortedObject(parts.labels),
    target: parts.target ?? null,
    platform: parts.platform ?? null,
    bases: [...parts.bases].map((b) => [b.reference, b.digest]).sort(),
    files: files.length,
  };
  hash.update(JSON.stringify(document));
  for (const line of files) hash.update(`${line}\n`);
  return `sha256:${hash.digest('hex')}`;
}

/** The registry tag that names an input digest: in-<first 32 hex characters>. */
export function inputTag(digest: string): string {
  return `${INPUT_TAG_PREFIX}${digest.replace(/^sha256:/, '').slice(0, 32)}`;
}

/**
 * The external images a Dockerfile builds on (FROM and COPY --from=<image>), build args
 * substituted; stage names and scratch are not images.
 */
export function baseImageReferences(dockerfile: Buffer | string, buildArgs: Record<string, string> = {}, target?: string): string[] {
  const parsed = parseDockerfile(typeof dockerfile === 'string' ? dockerfile : dockerfile.toString('utf8'));
  const args = globalArgs(parsed, buildArgs);
  const all = stages(parsed);
  // Stages after the target are not built: their bases do not matter.
  const lastIndex = target ? all.findIndex((s) => s.name === target.toLowerCase()) : all.length - 1;
  const used = all.slice(0, lastIndex < 0 ? all.length : lastIndex + 1);
  const stageNames = new Set(all.map((s) => s.name).filter(Boolean) as string[]);
  const refs = new Set<string>();
  const consider = (image: string): void => {
    const resolved = resolveFrom(image, args);
    if (!resolved || resolved.toLowerCase() === 'scratch' || stageNames.has(resolved.toLowerCase()) || /^\d+$/.test(resolved)) return;
    refs.add(resolved);
  };
  for (const stage of used) consider(stage.image);
  for (const copy of copySources(parsed)) if (copy.from) consider(copy.from);
  return [...refs].sort();
}
