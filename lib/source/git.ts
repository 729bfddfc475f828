/**
 * What git says about a folder, for tags and labels. The commit and the origin URL are read from
 * the repository's own files: starting a git process costs this (large) Node process about 20 ms
 * of CPU per spawn, and a build asked twice. git itself answers what the files do not plainly say.
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';

/**
 * `git -C dir ...args`: its trimmed output, or undefined when git fails, is missing, prints
 * nothing or takes over 5 s (a folder outside any repository is not an error).
 */
export function git(dir: string, args: string[]): Promise<string | undefined> {
  // node:child_process is loaded on first use: most runs never start git.
  const { execFile } = process.getBuiltinModule('node:child_process') as typeof import('node:child_process');
  return new Promise((resolve) => execFile('git', ['-C', dir, ...args], { timeout: 5000 }, (error, stdout) => resolve(error ? undefined : stdout.trim() || undefined)));
}

export interface GitHead {
  /** The full commit id HEAD points at; undefined outside a repository or before the first commit. */
  commit?: string;
  /** The URL of remote "origin", as configured. */
  origin?: string;
}

const COMMIT = /^[0-9a-f]{40}(?:[0-9a-f]{24})?$/;
const read = (file: string): Promise<string | undefined> => readFile(file, 'utf8').catch(() => undefined);

/** The repository's git folder and its common folder (they differ in a linked worktree), or undefined outside one. */
async function gitDirs(dir: string): Promise<{ gitDir: string; common: string } | undefined | 'unsure'> {
  for (let at = path.resolve(dir); ; at = path.dirname(at)) {
    const dotGit = path.join(at, '.git');
    const info = await stat(dotGit).catch(() => undefined);
    if (info?.isDirectory()) return { gitDir: dotGit, common: dotGit };
    if (info?.isFile()) {
      // A linked worktree or submodule: "gitdir: <path>", and a commondir file in that folder.
      const target = /^gitdir: (.+)$/m.exec((await read(dotGit)) ?? '')?.[1]?.trim();
      if (!target) return 'unsure';
      const gitDir = path.resolve(at, target);
      const common = (await read(path.join(gitDir, 'commondir')))?.trim();
      return { gitDir, common: common ? path.resolve(gitDir, common) : gitDir };
    }
    if (path.dirname(at) === at) return undefined;
  }
}

/** The commit a ref names: its loose file (in the worktree's folder or the common one) or packed-refs. */
async function resolveRef(gitDir: string, common: string, ref: string): Promise<string | undefined> {
  for (const base of [gitDir, common]) {
    const loose = (await read(path.join(base, ref)))?.trim();
    if (loose && COMMIT.test(loose)) return loose;
  }
  for (const line of ((await read(path.join(common, 'packed-refs'))) ?? '').split('\n')) {
    const [commit, name] = line.trim().split(' ');
    if (name === ref && commit && COMMIT.test(commit)) return commit;
  }
  return undefined;
}

/** The url of [remote "origin"] in a git config file's text. */
function originUrl(config: string): string | undefined {
  let inOrigin = false;
  for (const raw of config.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('[')) inOrigin = /^\[remote\s+"origin"\]$/.test(line);
    else if (inOrigin) {
      const m = /^url\s*=\s*(.*)$/.exec(line);
      if (m) return (m[1] as string).replace(/^"(.*)"$/, '$1');
    }
  }
  return undefined;
}

/** HEAD's commit and origin's URL of the repository holding `dir` ({} outside one). */
export async function gitHead(dir: string): Promise<GitHead> {
  const dirs = process.env.GIT_DIR === undefined ? await gitDirs(dir) : 'unsure';
  if (dirs === undefined) return {};
  if (dirs !== 'unsure') {
    const head = (await read(path.join(dirs.gitDir, 'HEAD')))?.trim();
    const config = (await read(path.join(dirs.common, 'config'))) ?? '';
    // Refs in a reftable, or url rewrites (insteadOf): what git would say is not in plain files.
    if (head !== undefined && !/refstorage|insteadof/i.test(config)) {
      const ref = /^ref: (.+)$/.exec(head)?.[1];
      const commit = ref ? await resolveRef(dirs.gitDir, dirs.common, ref) : COMMIT.test(head) ? head : undefined;
      // Anything else (a fresh branch without a commit, a symbolic ref of a ref): git answers.
      if (commit) return { commit, origin: originUrl(config) };
    }
  }
  const [commit, origin] = await Promise.all([git(dir, ['rev-parse', 'HEAD']), git(dir, ['remote', 'get-url', 'origin'])]);
  return { commit: commit && COMMIT.test(commit) ? commit : undefined, origin };
}
