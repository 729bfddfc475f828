/**
 * Turns a validator's generated code (ajv's standalone output, made from schemas/ at build time,
 * never from input) into its function. Compiling the large ones cost every process that used them
 * ~15 ms each (the pipeline's options are 160 KB of code, registration's 95 KB), the first call
 * as much again: V8 compiles each inner function when it first runs. Where a code cache folder is
 * set (bin/ and the Ansible modules set one), V8's code cache of each validator is kept there,
 * taken at exit, after the validator ran, so that it holds the functions compiled; the next
 * process reads it instead of compiling. A cache that does not fit (another Node, a changed file)
 * is rejected by V8 and written anew.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Script } from 'node:vm';

/** A validator's code: brotli-compressed, base64; id names its content (a hash, set by the generator). */
export interface ValidatorSource {
  id: string;
  code: string;
}

let cacheDir: string | undefined;
const toWrite = new Map<string, Script>();

/**
 * Keep the validators' code cache in `dir` (a folder of Node's compile cache: the cache is as
 * trusted as Node's own), or nowhere (undefined: the default, e.g. for the library in a caller's
 * long-lived process).
 */
export function setValidatorCacheDir(dir: string | undefined): void {
  cacheDir = dir ? path.join(dir, 'thinkube-validators') : undefined;
}

/** The function the validator's code returns, called with `args` (named `params` in the code). */
export function compileValidator(source: ValidatorSource, params: readonly string[], args: readonly unknown[]): unknown {
  // Loaded on the first validation, not with the command's start (--help validates nothing).
  const { brotliDecompressSync } = process.getBuiltinModule('node:zlib') as typeof import('node:zlib');
  const { Script } = process.getBuiltinModule('node:vm') as typeof import('node:vm');
  const code = brotliDecompressSync(Buffer.from(source.code, 'base64')).toString('utf8');
  const file = cacheDir ? path.join(cacheDir, `${source.id}-${process.version}-${process.arch}.bin`) : undefined;
  let cachedData: Buffer | undefined;
  if (file) {
    try {
      cachedData = readFileSync(file);
    } catch {
      // not cached yet
    }
  }
  const script = new Script(`(function (${params.join(', ')}) {${code}\n})`, { filename: `validator-${source.id}.js`, cachedData });
  if (file && (cachedData === undefined || script.cachedDataRejected)) writeAtExit(file, script);
  return (script.runInThisContext() as (...a: unknown[]) => unknown)(...args);
}

function writeAtExit(file: string, script: Script): void {
  if (toWrite.size === 0) process.once('exit', writeCaches);
  toWrite.set(file, script);
}

function writeCaches(): void {
  for (const [file, script] of toWrite) {
    // Written whole under a temporary name, then renamed: a process reading it never sees a part.
    const temporary = `${file}.${process.pid}.tmp`;
    try {
      mkdirSync(path.dirname(file), { recursive: true });
      writeFileSync(temporary, script.createCachedData());
      renameSync(temporary, file);
    } catch {
      // A cache only: the next process compiles the validator again.
    }
  }
  toWrite.clear();
}
