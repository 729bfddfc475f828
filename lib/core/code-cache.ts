/**
 * Compiles code generated at build time (never from input), kept brotli-compressed: the schema
 * validators (ajv's standalone output) and the parts of an Ansible module's bundle. Compiling the
 * large ones cost every process that used them ~15 ms each (the pipeline's options are 160 KB of
 * code, the pipeline module's command part 580 KB), and V8 compiles each inner function again when
 * it first runs. Where a folder is set (bin/ and the Ansible modules set one), V8's code cache of
 * each piece is kept there, taken at exit, after the code ran, so that it holds the functions
 * compiled; the next process reads it instead of compiling. Pieces are named by a hash of their
 * code, not by a file path: an Ansible module is copied to a new folder for every task, and Node's
 * own compile cache, keyed by path, would never hit. A cache that does not fit (another Node, a
 * damaged file) is rejected by V8 and written anew.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Script } from 'node:vm';

/** A piece of code: brotli-compressed, base64; id names its content (a hash, set at build time). */
export interface CodeSource {
  id: string;
  code: string;
}

let cacheDir: string | undefined;
const toWrite = new Map<string, { script: Script; text: string }>();

/**
 * Keep the code cache in `dir` (a folder of Node's compile cache: the cache is as trusted as
 * Node's own), or nowhere (undefined: the default, e.g. for the library in a caller's long-lived
 * process).
 */
export function setCodeCacheDir(dir: string | undefined): void {
  cacheDir = dir ? path.join(dir, 'thinkube-code') : undefined;
}

/**
 * A cache file: the code's text (so that a process that finds it need not load zlib and
 * decompress) and V8's code cache of it. Layout: text length (4 bytes), the text (UTF-8), the code
 * cache. Written whole and renamed into place, so never read half-written; V8 rejects a code cache
 * whose text differs in length. A hash of the text, to catch damage of the same length, cost more
 * than the decompression it saves (a JavaScript loop over 300 KB on each start), and the file is
 * as trusted as the code cache beside it, which V8 runs as it finds it.
 */
function readCacheFile(file: string): { text: string; cachedData: Buffer } | undefined {
  let blob: Buffer;
  try {
    blob = readFileSync(file);
  } catch {
    return undefined;
  }
  if (blob.length < 4) return undefined;
  const length = blob.readUInt32LE(0);
  if (4 + length > blob.length) return undefined;
  return { text: blob.toString('utf8', 4, 4 + length), cachedData: blob.subarray(4 + length) };
}

/** Run the code as the body of a function of `params`, called with `args`; returns what it returns. */
export function runCached(source: CodeSource, params: readonly string[], args: readonly unknown[]): unknown {
  const file = cacheDir ? path.join(cacheDir, `${source.id}-${process.version}-${process.arch}.code`) : undefined;
  const cached = file ? readCacheFile(file) : undefined;
  // zlib is loaded only when the code is not cached (and never for --help, which compiles nothing).
  const text = cached?.text ?? (process.getBuiltinModule('node:zlib') as typeof import('node:zlib')).brotliDecompressSync(Buffer.from(source.code, 'base64')).toString('utf8');
  const { Script } = process.getBuiltinModule('node:vm') as typeof import('node:vm');
  const script = new Script(`(function (${params.join(', ')}) {${text}\n})`, { filename: `generated-${source.id}.js`, cachedData: cached?.cachedData });
  if (file && (cached === undefined || script.cachedDataRejected)) writeAtExit(file, { script, text });
  return (script.runInThisContext() as (...a: unknown[]) => unknown)(...args);
}

function writeAtExit(file: string, compiled: { script: Script; text: string }): void {
  if (toWrite.size === 0) process.once('exit', writeCaches);
  toWrite.set(file, compiled);
}

function writeCaches(): void {
  for (const [file, { script, text }] of toWrite) {
    // Written whole under a temporary name, then renamed: a process reading it never sees a part.
    const temporary = `${file}.${process.pid}.tmp`;
    try {
      const head = Buffer.alloc(4);
      const body = Buffer.from(text, 'utf8');
      head.writeUInt32LE(body.length, 0);
      mkdirSync(path.dirname(file), { recursive: true });
      writeFileSync(temporary, Buffer.concat([head, body, script.createCachedData()]));
      renameSync(temporary, file);
    } catch {
      // A cache only: the next process compiles the code again.
    }
  }
  toWrite.clear();
}
