/**
 * Build contexts: which files are sent (.dockerignore with Docker's own matcher semantics), checks
 * that nothing unsafe or outside the context is sent, and a streamed tar of exactly those files.
 */
import { createHash } from 'node:crypto';
import { accessSync, constants as fsConstants, lstatSync, readdirSync, readlinkSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import * as dockerignoreModule from '@balena/dockerignore';
import { ThinkubeImageError, errorCodeOf } from '../core/errors.js';
import { schemaDefault } from '../options/defaults.js';
import { timeSlices } from '../core/time-slice.js';
import { packFiles } from './tar-pack.js';

// A CommonJS module whose typings claim an ES default export: take the factory either way.
const dockerignore = ((dockerignoreModule as { default?: unknown }).default ?? dockerignoreModule) as (options?: { ignorecase?: boolean }) => dockerignoreModule.Ignore;

export interface ContextEntry {
  /** Path relative to the context root, with forward slashes. */
  path: string;
  type: 'file' | 'directory' | 'symlink';
  /** Permission bits (e.g. 0o755). */
  mode: number;
  size: number;
  linkTarget?: string;
}

export interface ContextScan {
  root: string;
  entries: ContextEntry[];
  fileCount: number;
  totalBytes: number;
  /** Absolute path of the Dockerfile. */
  dockerfilePath: string;
  /** Name the engine is told to use: the path inside the context, or a generated name when it lives outside. */
  dockerfileName: string;
  /** Dockerfile contents (needed anyway to parse it; small). */
  dockerfile: Buffer;
  /** True when the Dockerfile is added to the tar because it lives outside the context. */
  dockerfileOutside: boolean;
  ignorePatterns: string[];
}

export interface ScanOptions {
  /** Dockerfile path, relative to the context or absolute. Default "Dockerfile". */
  dockerfile?: string;
  /** Refuse contexts larger than this (bytes of regular files). Default: maxContextBytes of build-options.schema.json. */
  maxBytes?: number;
  /** Send symlinks whose target is outside the context (as links). Default false: refused. */
  allowExternalSymlinks?: boolean;
}

function readable(abs: string): boolean {
  try {
    accessSync(abs, fsConstants.R_OK);
    return true;
  } catch {
    return false;
  }
}

function contextError(message: string, hint: string, details: Record<string, unknown> = {}): ThinkubeImageError {
  return new ThinkubeImageError('ERR_CONTEXT', message, { hint, details });
}

/** Read .dockerignore into the list of patterns, as the Docker CLI does (comments and blanks dropped). */
export async function readIgnorePatterns(root: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(path.join(root, '.dockerignore'), 'utf8');
  } catch (error) {
    if (errorCodeOf(error) === 'ENOENT') return [];
    throw contextError(`Cannot read ${path.join(root, '.dockerignore')} (${errorCodeOf(error) ?? 'error'})`, 'Make the file readable or remove it');
  }
  return text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
}

export interface IgnoreMatcher {
  /** True when the path (relative, forward slashes) is excluded by .dockerignore. */
  ignores(relPath: string): boolean;
  /** True when an exclusion pattern (!pattern) could re-include something below an excluded directory. */
  mayIncludeInside(relDir: string): boolean;
}

export function createIgnoreMatcher(patterns: string[]): IgnoreMatcher {
  const ig = dockerignore({ ignorecase: false }).add(patterns);
  // Docker walks into an excluded directory only when an exception pattern starts with its path.
  const exceptions = patterns
    .filter((p) => p.startsWith('!'))
    .map((p) => path.posix.normalize(p.slice(1).replace(/^\/+/, '')).replace(/\/+$/, ''));
  return {
    ignores: (relPath) => ig.ignores(relPath),
    mayIncludeInside: (relDir) => exceptions.some((p) => `${p}/`.startsWith(`${relDir}/`)),
  };
}

function isInside(root: string, target: string): boolean {
  const rel = path.relative(root, target);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/**
 * Walk the context once: apply .dockerignore (the Dockerfile and .dockerignore are always sent, as
 * the Docker CLI does), and refuse what must not be sent before anything is sent.
 */
export async function scanContext(context: string, options: ScanOptions = {}): Promise<ContextScan> {
  const root = path.resolve(context);
  let rootStat;
  try {
    rootStat = await stat(root);
  } catch (error) {
    throw contextError(`Build context ${root} does not exist (${errorCodeOf(error) ?? 'error'})`, 'Check the context path', { context: root });
  }
  if (!rootStat.isDirectory()) throw contextError(`Build context ${root} is not a directory`, 'Give the folder that holds the Dockerfile and the files it copies', { context: root });

  const dockerfilePath = path.resolve(root, options.dockerfile ?? 'Dockerfile');
  let dockerfile: Buffer;
  try {
    dockerfile = await readFile(dockerfilePath);
  } catch (error) {
    throw contextError(`Cannot read the Dockerfile ${dockerfilePath} (${errorCodeOf(error) ?? 'error'})`, 'Check the dockerfile option: it is relative to the context unless absolute', { dockerfile: dockerfilePath });
  }
  const dockerfileOutside = !isInside(root, dockerfilePath) || path.relative(root, dockerfilePath) === '';
  const dockerfileRel = dockerfileOutside ? undefined : path.relative(root, dockerfilePath).split(path.sep).join('/');
  const dockerfileName = dockerfileRel ?? generatedDockerfileName(dockerfilePath);

  const ignorePatterns = await readIgnorePatterns(root);
  const matcher = createIgnoreMatcher(ignorePatterns);
  const always = new Set(['.dockerignore', ...(dockerfileRel ? [dockerfileRel] : [])]);
  // Parent folders of an always-sent file must be walked even when excluded.
  const alwaysDirs = new Set<string>();
  for (const file of always) {
    const parts = file.split('/');
    for (let i = 1; i < parts.length; i++) alwaysDirs.add(parts.slice(0, i).join('/'));
  }
  const maxBytes = options.maxBytes ?? schemaDefault('build-options.schema.json', 'properties/maxContextBytes');
  const entries: ContextEntry[] = [];
  let totalBytes = 0;
  let fileCount = 0;

  // Synchronous calls, a slice at a time (lib/core/time-slice.ts): a context is mostly small files,
  // and one promise-based call per file cost five times the CPU of the walk itself.
  const slice = timeSlices();
  const walk = async (relDir: string): Promise<void> => {
    const absDir = relDir ? path.join(root, relDir) : root;
    let names: string[];
    try {
      names = readdirSync(absDir).sort();
    } catch (error) {
      throw contextError(`Cannot read folder ${absDir} in the build context (${errorCodeOf(error) ?? 'error'})`, 'Make it readable, or exclude it in .dockerignore', { path: relDir });
    }
    for (const name of names) {
      await slice();
      const rel = relDir ? `${relDir}/${name}` : name;
      const abs = path.join(absDir, name);
      const st = lstatSync(abs);
      const excluded = !always.has(rel) && matcher.ignores(rel);
      if (st.isDirectory()) {
        if (excluded) {
          if (matcher.mayIncludeInside(rel) || alwaysDirs.has(rel)) await walk(rel);
          continue;
        }
        entries.push({ path: rel, type: 'directory', mode: st.mode & 0o7777, size: 0 });
        await walk(rel);
        continue;
      }
      if (excluded) continue;
      if (st.isSymbolicLink()) {
        const target = readlinkSync(abs);
        const resolved = path.resolve(path.dirname(abs), target);
        if (!options.allowExternalSymlinks && (path.isAbsolute(target) || !isInside(root, resolved))) {
          throw contextError(`Symlink ${rel} in the build context points outside it (to ${target})`, 'Copy the file into the context instead, or exclude the link in .dockerignore', { path: rel });
        }
        entries.push({ path: rel, type: 'symlink', mode: st.mode & 0o7777, size: 0, linkTarget: target });
        continue;
      }
      if (!st.isFile()) {
        const kind = st.isSocket() ? 'a socket' : st.isFIFO() ? 'a named pipe' : st.isBlockDevice() || st.isCharacterDevice() ? 'a device file' : 'not a regular file';
        throw contextError(`${rel} in the build context is ${kind}, which cannot be sent to the engine`, 'Exclude it in .dockerignore or move it out of the context', { path: rel });
      }
      if (!readable(abs)) {
        throw contextError(`${rel} in the build context is not readable`, 'Fix its permissions, or exclude it in .dockerignore', { path: rel });
      }
      totalBytes += st.size;
      fileCount += 1;
      if (totalBytes > maxBytes) {
        throw contextError(`The build context ${root} is larger than the limit of ${maxBytes} bytes`, 'Exclude large files with .dockerignore, or raise the context size limit', { context: root, maxBytes });
      }
      entries.push({ path: rel, type: 'file', mode: st.mode & 0o7777, size: st.size });
    }
  };
  await walk('');
  return { root, entries, fileCount, totalBytes, dockerfilePath, dockerfileName, dockerfile, dockerfileOutside, ignorePatterns };
}

/** The name a Dockerfile that is not sent as a file of the context goes under (listed in the .dockerignore sent). */
function generatedDockerfileName(dockerfilePath: string): string {
  return `.dockerfile.${createHash('sha256').update(dockerfilePath).digest('hex').slice(0, 20)}`;
}

/**
 * The same context with other Dockerfile text: sent under a generated name (listed in the
 * .dockerignore sent, so COPY never sees it), as for a Dockerfile from outside the context. A
 * Dockerfile inside the context is still sent as it is, as one of the context's files.
 */
export function withDockerfileText(scan: ContextScan, text: Buffer): ContextScan {
  const dockerfileName = scan.dockerfileOutside ? scan.dockerfileName : generatedDockerfileName(scan.dockerfilePath);
  return { ...scan, dockerfile: text, dockerfileName, dockerfileOutside: true };
}

/**
 * A tar stream of exactly the scanned entries, read from disk as it is consumed (never buffered
 * whole). Owners are zeroed like the Docker CLI does; `mtime` sets every entry's time (the same
 * files then give the same bytes, as a context shipped as an image layer wants).
 */
export async function packContext(scan: ContextScan, options: { mtime?: Date } = {}): Promise<Readable> {
  // Like the Docker CLI: a Dockerfile from outside the context goes in under a generated name and
  // the .dockerignore sent lists that name, so the engine drops it before COPY . can see it.
  const ignoreEntry = scan.entries.find((e) => e.path === '.dockerignore');
  const entries = scan.dockerfileOutside ? scan.entries.filter((e) => e !== ignoreEntry) : scan.entries;
  const ignore = [...(ignoreEntry ? scan.ignorePatterns : ['.dockerignore']), scan.dockerfileName].join('\n');
  return packFiles(scan.root, entries.map((e) => e.path), {
    mtime: options.mtime,
    generated: scan.dockerfileOutside
      ? [
          { name: '.dockerignore', mode: ignoreEntry?.mode ?? 0o600, mtime: new Date(0), content: Buffer.from(`${ignore}\n`) },
          { name: scan.dockerfileName, mode: 0o644, mtime: new Date(0), content: scan.dockerfile },
        ]
      : undefined,
  });
}
