// gitHead reads HEAD's commit and origin's URL from the repository's files (no git process); held
// here to what the real git says about the same repositories: loose and packed refs, a detached
// HEAD, a linked worktree, a subfolder, no commit yet, a URL rewrite, no repository at all.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { gitHead } from '../dist/lib/source/git.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'tk-git-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
const env = { ...process.env, GIT_CONFIG_GLOBAL: '/dev/null', GIT_CONFIG_NOSYSTEM: '1', GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@example.invalid', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@example.invalid' };
delete env.GIT_DIR;
const git = (dir, ...args) => execFileSync('git', ['-C', dir, ...args], { env, encoding: 'utf8' }).trim();
/** What git itself says: the same shape as gitHead's answer. */
const truth = (dir) => {
  const ask = (...args) => {
    try {
      return git(dir, ...args) || undefined;
    } catch {
      return undefined;
    }
  };
  return { commit: ask('rev-parse', 'HEAD'), origin: ask('remote', 'get-url', 'origin') };
};
const clean = (head) => Object.fromEntries(Object.entries(head).filter(([, v]) => v !== undefined));

const repo = path.join(root, 'repo');
mkdirSync(path.join(repo, 'images', 'one'), { recursive: true });
git(repo, 'init', '-q', '-b', 'main');
const fresh = await gitHead(repo);
t.same(clean(fresh), clean(truth(repo)), 'no commit yet: no commit');
t.equal(fresh.commit, undefined);
writeFileSync(path.join(repo, 'images', 'one', 'Dockerfile'), 'FROM scratch\n');
git(repo, 'add', '.');
git(repo, 'commit', '-q', '-m', 'one');
git(repo, 'remote', 'add', 'origin', 'https://user:tok3n@example.invalid/images.git');

t.test('a branch as a loose ref, from the top and from a subfolder', async (t) => {
  const head = await gitHead(repo);
  t.match(head.commit, /^[0-9a-f]{40}$/);
  t.same(head, truth(repo));
  t.same(await gitHead(path.join(repo, 'images', 'one')), truth(repo), 'a context folder inside the repository');
});

t.test('packed refs, then a detached HEAD', async (t) => {
  git(repo, 'commit', '-q', '--allow-empty', '-m', 'two');
  git(repo, 'pack-refs', '--all');
  t.same(await gitHead(repo), truth(repo), 'the branch is only in packed-refs');
  const first = git(repo, 'rev-parse', 'HEAD~1');
  git(repo, 'checkout', '-q', '--detach', first);
  t.same(await gitHead(repo), { ...truth(repo), commit: first }, 'HEAD holds the commit');
  git(repo, 'checkout', '-q', 'main');
});

t.test('a linked worktree on another branch', async (t) => {
  const linked = path.join(root, 'linked');
  git(repo, 'worktree', 'add', '-q', '-b', 'side', linked);
  git(linked, 'commit', '-q', '--allow-empty', '-m', 'side');
  const head = await gitHead(linked);
  t.same(head, truth(linked));
  t.not(head.commit, git(repo, 'rev-parse', 'HEAD'), 'its own HEAD, not the main worktree\'s');
});

t.test('a URL rewrite (insteadOf) is applied as git applies it', async (t) => {
  git(repo, 'config', 'url.https://mirror.example.invalid/.insteadOf', 'https://user:tok3n@example.invalid/');
  t.same(await gitHead(repo), truth(repo));
  t.equal((await gitHead(repo)).origin, 'https://mirror.example.invalid/images.git');
});

t.test('outside any repository: nothing', async (t) => {
  const outside = mkdtempSync(path.join(os.tmpdir(), 'tk-nogit-'));
  t.teardown(() => rmSync(outside, { recursive: true, force: true }));
  t.same(await gitHead(outside), {});
});
