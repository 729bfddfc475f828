/** What git says about a folder: run only when a tag or label needs it. */

/**
 * `git -C dir ...args`: its trimmed output, or undefined when git fails, is missing, prints
 * nothing or takes over 5 s (a folder outside any repository is not an error).
 */
export function git(dir: string, args: string[]): Promise<string | undefined> {
  // node:child_process is loaded on first use: most runs never start git.
  const { execFile } = process.getBuiltinModule('node:child_process') as typeof import('node:child_process');
  return new Promise((resolve) => execFile('git', ['-C', dir, ...args], { timeout: 5000 }, (error, stdout) => resolve(error ? undefined : stdout.trim() || undefined)));
}
