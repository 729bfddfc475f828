// Build contexts: .dockerignore gives the same files in the image as the Docker CLI for the same
// context, and scanContext/packContext refuse what must not be sent and stream what is.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { buildImage } from '../dist/lib/build/build.js';
import { packContext, scanContext } from '../dist/lib/source/context.js';
import { ThinkubeImageError } from '../dist/lib/core/errors.js';
import { dockerCli, dockerFor, readFromImage, removeImages, repoRoot, tempDir, testEnv, uniqueName, writeTree } from './fixtures/core/support.js';

const env = testEnv();
const docker = dockerFor(env.dockerHost);
const repo = `${env.registryAnon}/core/${uniqueName('ctx')}`;
const made = [];
t.teardown(() => removeImages(docker, made));

const LIST_DOCKERFILE = `FROM ${env.busyboxImage}\nCOPY . /ctx\nRUN find /ctx | sort > /list\n`;

/** Parse a (small) tar buffer into its entries. */
function tarEntries(buffer) {
  const entries = [];
  let offset = 0;
  let longName;
  const str = (start, len) => buffer.subarray(offset + start, offset + start + len).toString('utf8').replace(/\0.*$/s, '');
  const oct = (start, len) => parseInt(str(start, len).trim() || '0', 8);
  while (offset + 512 <= buffer.length && buffer[offset] !== 0) {
    const size = oct(124, 12);
    const type = String.fromCharCode(buffer[offset + 156]) || '0';
    const prefix = str(345, 155);
    let name = prefix ? `${prefix}/${str(0, 100)}` : str(0, 100);
    const body = buffer.subarray(offset + 512, offset + 512 + size);
    if (type === 'x') {
      const m = /\d+ path=([^\n]*)\n/.exec(body.toString('utf8'));
      longName = m?.[1];
    } else {
      if (longName) name = longName;
      longName = undefined;
      entries.push({ name: name.replace(/\/$/, ''), type, mode: oct(100, 8), uid: oct(108, 8), gid: oct(116, 8), size, linkname: str(157, 100), body });
    }
    offset += 512 + Math.ceil(size / 512) * 512;
  }
  return entries;
}

async function packToBuffer(scan) {
  const chunks = [];
  for await (const chunk of await packContext(scan)) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function contextError(promise) {
  const error = await promise.then(
    () => undefined,
    (e) => e,
  );
  return error;
}

// Each case: files of the context (the list Dockerfile is added unless the case brings its own),
// optional dockerfile option, and a few paths that must / must not be in the image, so that a
// failure reads well even though the Docker CLI is the reference.
const CASES = [
  {
    name: 'negations, ** and * at the root vs nested',
    tree: {
      '.dockerignore': '*.log\n!keep.log\n**/*.tmp\n*/nested*\n*/*/deep\n# a comment\n  spaced.txt  \n/abs.txt\n./dot.txt\nq?.md\n[a-c]x.cfg\n',
      'a.log': '', 'keep.log': '', 'sub/a.log': '', 'x.tmp': '', 'deep/er/y.tmp': '', 'deep/er/y.txt': '',
      'nested1': '', 'sub/nested2': '', 'sub/sub2/nested3': '', 'q/w/deep': '', 'q/deep': '', 'q/w/e/deep': '',
      'spaced.txt': '', 'abs.txt': '', 'sub/abs.txt': '', 'dot.txt': '', 'q1.md': '', 'q12.md': '', 'ax.cfg': '', 'dx.cfg': '',
      'empty/': '', 'link-to-sub': { symlink: 'sub' }, 'link-to-file': { symlink: 'keep.log' },
    },
    has: ['keep.log', 'sub/a.log', 'deep/er/y.txt', 'nested1', 'sub/sub2/nested3', 'q/deep', 'q/w/e/deep', 'sub/abs.txt', 'q12.md', 'dx.cfg', 'empty', 'link-to-sub'],
    hasNot: ['a.log', 'x.tmp', 'deep/er/y.tmp', 'sub/nested2', 'q/w/deep', 'spaced.txt', 'abs.txt', 'dot.txt', 'q1.md', 'ax.cfg'],
  },
  {
    name: 'excluded directories with re-included files inside',
    tree: {
      '.dockerignore': 'vendor\n!vendor/keep/me.txt\ndocs\n!docs/*.md\ndocs/private.md\nbuild\n!build/keep\nnode_modules\n**/node_modules\ndist/\na/**\n',
      'vendor/keep/me.txt': '', 'vendor/keep/other.txt': '', 'vendor/x/y.txt': '',
      'docs/a.md': '', 'docs/private.md': '', 'docs/img/p.png': '', 'docs/img/q.md': '',
      'build/keep/x': '', 'build/keep/y/z': '', 'build/other': '',
      'node_modules/m/index.js': '', 'src/node_modules/n.js': '', 'src/main.js': '', 'dist/out.js': '', 'src/dist/out.js': '',
      'a/b/c': '', 'a/d': '',
    },
    has: ['vendor/keep/me.txt', 'docs/a.md', 'build/keep/x', 'build/keep/y/z', 'src/main.js', 'src/dist/out.js', 'a'],
    hasNot: ['vendor/keep/other.txt', 'vendor/x', 'docs/private.md', 'docs/img', 'build/other', 'node_modules', 'src/node_modules', 'dist', 'a/b', 'a/d'],
  },
  {
    name: '* excludes everything but the exceptions; order of patterns matters',
    tree: {
      '.dockerignore': '*\n!src\n!README.md\nsrc/**/*.test.js\n!src/keep.test.js\n!a.txt\n*.txt\n!b.txt\n',
      'README.md': '', 'other': '', 'a.txt': '', 'b.txt': '', 'src/a.js': '', 'src/a.test.js': '', 'src/keep.test.js': '', 'src/d/b.test.js': '', 'src/d/c.js': '',
    },
    has: ['README.md', 'b.txt', 'src/a.js', 'src/keep.test.js', 'src/d/c.js'],
    hasNot: ['other', 'a.txt', 'src/a.test.js', 'src/d/b.test.js'],
  },
  {
    name: 'an excluded Dockerfile and .dockerignore are still sent (and the build works)',
    tree: { '.dockerignore': 'Dockerfile\n.dockerignore\nsecret.txt\n', 'secret.txt': '', 'public.txt': '' },
    has: ['public.txt'],
    hasNot: ['secret.txt'],
  },
  {
    name: 'Dockerfile inside an excluded folder',
    tree: { '.dockerignore': 'docker\n', 'docker/Dockerfile.custom': LIST_DOCKERFILE, 'docker/other': '', 'app.txt': '' },
    dockerfile: 'docker/Dockerfile.custom',
    has: ['app.txt'],
    hasNot: ['docker/other'],
  },
  {
    name: 'Dockerfile outside the context, no .dockerignore',
    tree: { 'a.txt': '', 'sub/b.txt': '' },
    outside: true,
    has: ['a.txt', 'sub/b.txt'],
    hasNot: [],
  },
  {
    name: 'Dockerfile outside the context, with a .dockerignore',
    tree: { '.dockerignore': '# only comments\nb.txt\n', 'a.txt': '', 'b.txt': '' },
    outside: true,
    has: ['a.txt', '.dockerignore'],
    hasNot: ['b.txt'],
  },
];

t.test('.dockerignore: the image gets the same files as with the Docker CLI', async (t) => {
  for (const [index, c] of CASES.entries()) {
    await t.test(c.name, async (t) => {
      const context = tempDir(t);
      writeTree(context, { ...(c.outside || c.dockerfile ? {} : { Dockerfile: LIST_DOCKERFILE }), ...c.tree });
      let dockerfile = c.dockerfile;
      if (c.outside) {
        dockerfile = path.join(writeTree(tempDir(t), { 'Dockerfile.list': LIST_DOCKERFILE }), 'Dockerfile.list');
      }
      const ours = `${repo}:case${index}-lib`;
      const theirs = `${repo}:case${index}-cli`;
      made.push(ours, theirs);
      await buildImage({ context, dockerfile, tags: [ours], ociLabels: false, engine: { host: env.dockerHost } });
      const cli = await dockerCli(['build', '-q', '-t', theirs, ...(dockerfile ? ['-f', path.resolve(context, dockerfile)] : []), context]);
      t.equal(cli.code, 0, `docker build: ${cli.stderr}`);
      const ourList = await readFromImage(ours, '/list');
      const cliList = await readFromImage(theirs, '/list');
      t.equal(ourList, cliList, 'same file list as the Docker CLI');
      const listed = new Set(ourList.split('\n').filter(Boolean).map((p) => p.replace(/^\/ctx\/?/, '')));
      for (const p of c.has) t.ok(listed.has(p), `${p} is in the image`);
      for (const p of c.hasNot) t.notOk(listed.has(p), `${p} is not in the image`);
      t.notOk([...listed].some((p) => p.startsWith('.dockerfile.')), 'no generated Dockerfile name visible');
    });
  }
});

t.test('symlinks inside the context are sent as links, their targets not followed', async (t) => {
  const dir = writeTree(tempDir(t), {
    Dockerfile: 'FROM scratch\n',
    '.dockerignore': 'real\n',
    'real/inside.txt': 'excluded content',
    'hello.txt': 'hi',
    'link-dir': { symlink: 'real' },
    'sub/link-file': { symlink: '../hello.txt' },
  });
  const scan = await scanContext(dir);
  const byPath = Object.fromEntries(scan.entries.map((e) => [e.path, e]));
  t.same(Object.keys(byPath).sort(), ['.dockerignore', 'Dockerfile', 'hello.txt', 'link-dir', 'sub', 'sub/link-file']);
  t.equal(byPath['link-dir'].type, 'symlink');
  t.equal(byPath['link-dir'].linkTarget, 'real');
  t.equal(byPath['sub/link-file'].linkTarget, '../hello.txt');
  const tar = tarEntries(await packToBuffer(scan));
  const link = tar.find((e) => e.name === 'link-dir');
  t.equal(link?.type, '2', 'tar entry is a symlink');
  t.equal(link?.linkname, 'real');
  t.notOk(tar.some((e) => e.name.startsWith('real') || e.name.startsWith('link-dir/')), 'the excluded target is not sent through the link');
  t.notOk(tar.some((e) => e.body.toString().includes('excluded content')));
});

t.test('a symlink pointing outside the context is refused, naming the link', async (t) => {
  const outside = writeTree(tempDir(t), { 'secret.txt': 'outside' });
  for (const target of [path.join(outside, 'secret.txt'), '../../../../../../../etc/passwd', '../../escaped']) {
    const dir = writeTree(tempDir(t), { Dockerfile: 'FROM scratch\n', 'sub/ok.txt': '', 'sub/escape': { symlink: target } });
    const error = await contextError(scanContext(dir));
    t.ok(error instanceof ThinkubeImageError, `refused ${target}`);
    t.equal(error?.code, 'ERR_CONTEXT');
    t.match(error?.message, 'sub/escape', 'names the link');
    t.match(error?.message, target, 'names where it points');
    t.ok(error?.hint);
  }
  // Excluded, the same link is fine: it is not sent.
  const dir = writeTree(tempDir(t), { Dockerfile: 'FROM scratch\n', '.dockerignore': 'escape\n', escape: { symlink: outside } });
  t.same((await scanContext(dir)).entries.map((e) => e.path).sort(), ['.dockerignore', 'Dockerfile']);
});

t.test('sockets and named pipes are refused, naming them; excluded they are fine', async (t) => {
  const dir = writeTree(tempDir(t), { Dockerfile: 'FROM scratch\n', 'run/': '' });
  const server = net.createServer();
  await new Promise((resolve) => server.listen(path.join(dir, 'run', 'app.sock'), resolve));
  t.teardown(() => server.close());
  const error = await contextError(scanContext(dir));
  t.equal(error?.code, 'ERR_CONTEXT');
  t.match(error?.message, 'run/app.sock');
  t.match(error?.message, /socket/);
  writeFileSync(path.join(dir, '.dockerignore'), 'run\n');
  t.ok(await scanContext(dir), 'excluded socket: no error');

  const fifoDir = writeTree(tempDir(t), { Dockerfile: 'FROM scratch\n' });
  execFileSync('mkfifo', [path.join(fifoDir, 'pipe')]);
  const fifo = await contextError(scanContext(fifoDir));
  t.equal(fifo?.code, 'ERR_CONTEXT');
  t.match(fifo?.message, /pipe.*named pipe/);
});

t.test('unreadable files and folders are refused, naming them', async (t) => {
  // Tests run as root, which reads anything: scan in a child process that keeps uid 0 but loses
  // CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH, so file permissions apply to it.
  const dir = writeTree(tempDir(t), { Dockerfile: 'FROM scratch\n', 'ok.txt': '', 'locked.txt': 'x', 'closed/inner.txt': '' });
  chmodSync(path.join(dir, 'locked.txt'), 0o000);
  const script = `
    import { scanContext } from ${JSON.stringify(path.join(repoRoot, 'dist/lib/source/context.js'))};
    try { const s = await scanContext(process.argv[1]); console.log(JSON.stringify({ ok: s.entries.map((e) => e.path) })); }
    catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }`;
  const scanWithoutPrivileges = async () => {
    const out = execFileSync('setpriv', ['--bounding-set=-dac_override,-dac_read_search', process.execPath, '--input-type=module', '-e', script, dir], { encoding: 'utf8' });
    return JSON.parse(out);
  };
  const file = await scanWithoutPrivileges();
  t.equal(file.code, 'ERR_CONTEXT', JSON.stringify(file));
  t.match(file.message, 'locked.txt');
  t.match(file.message, /not readable/);

  chmodSync(path.join(dir, 'locked.txt'), 0o644);
  chmodSync(path.join(dir, 'closed'), 0o000);
  t.teardown(() => chmodSync(path.join(dir, 'closed'), 0o755));
  const folder = await scanWithoutPrivileges();
  t.equal(folder.code, 'ERR_CONTEXT', JSON.stringify(folder));
  t.match(folder.message, /closed/);

  writeFileSync(path.join(dir, '.dockerignore'), 'closed\n');
  const excluded = await scanWithoutPrivileges();
  t.same(excluded.ok?.sort(), ['.dockerignore', 'Dockerfile', 'locked.txt', 'ok.txt'], 'an excluded unreadable folder is not read');
});

t.test('an excluded Dockerfile and .dockerignore are still in the scan and the tar', async (t) => {
  const dir = writeTree(tempDir(t), { 'build/Dockerfile': 'FROM scratch\n', '.dockerignore': '*\n!keep\n', keep: 'k', drop: 'd' });
  const scan = await scanContext(dir, { dockerfile: 'build/Dockerfile' });
  t.equal(scan.dockerfileName, 'build/Dockerfile');
  t.notOk(scan.dockerfileOutside);
  const names = tarEntries(await packToBuffer(scan)).map((e) => e.name).sort();
  t.same(names, ['.dockerignore', 'build/Dockerfile', 'keep']);
});

t.test('size limit, missing context, missing Dockerfile', async (t) => {
  const dir = writeTree(tempDir(t), { Dockerfile: 'FROM scratch\n', a: 'x'.repeat(1000), b: 'x'.repeat(1000), c: 'x'.repeat(1000) });
  const dockerfileBytes = 'FROM scratch\n'.length;
  const big = await contextError(scanContext(dir, { maxBytes: 2500 }));
  t.equal(big?.code, 'ERR_CONTEXT');
  t.match(big?.message, dir);
  t.match(big?.message, /2500 bytes/);
  const fits = await scanContext(dir, { maxBytes: 3000 + dockerfileBytes });
  t.equal(fits.totalBytes, 3000 + dockerfileBytes);
  t.equal(fits.fileCount, 4);

  const missing = path.join(dir, 'no-such-dir');
  const gone = await contextError(scanContext(missing));
  t.equal(gone?.code, 'ERR_CONTEXT');
  t.match(gone?.message, missing);
  const notDir = await contextError(scanContext(path.join(dir, 'a')));
  t.equal(notDir?.code, 'ERR_CONTEXT');
  t.match(notDir?.message, /not a directory/);

  const noDockerfile = await contextError(scanContext(dir, { dockerfile: 'Dockerfile.missing' }));
  t.equal(noDockerfile?.code, 'ERR_CONTEXT');
  t.match(noDockerfile?.message, path.join(dir, 'Dockerfile.missing'));

  // Through buildImage: the context is checked before the engine is contacted.
  const viaBuild = await contextError(buildImage({ context: missing, tags: [`${repo}:never`], engine: { host: 'unix:///nonexistent/engine.sock' } }));
  t.equal(viaBuild?.code, 'ERR_CONTEXT');
  t.match(viaBuild?.message, missing);
});

t.test('a big tree is scanned and packed exactly, owners zeroed, modes kept', async (t) => {
  const dir = tempDir(t);
  writeFileSync(path.join(dir, 'Dockerfile'), 'FROM scratch\n');
  writeFileSync(path.join(dir, '.dockerignore'), '**/*.skip\n');
  for (let d = 0; d < 40; d++) {
    mkdirSync(path.join(dir, `d${d}`, 'inner'), { recursive: true });
    for (let f = 0; f < 50; f++) writeFileSync(path.join(dir, `d${d}`, f % 5 === 0 ? 'inner' : '', `f${f}.${f % 10 === 0 ? 'skip' : 'txt'}`), `${d}/${f}`);
  }
  writeFileSync(path.join(dir, 'run.sh'), '#!/bin/sh\n');
  chmodSync(path.join(dir, 'run.sh'), 0o755);
  // How fast: bench/micro.js.
  const scan = await scanContext(dir);
  t.equal(scan.fileCount, 40 * 45 + 3, '1800 files + Dockerfile, .dockerignore, run.sh (the .skip files excluded)');
  const tar = tarEntries(await packToBuffer(scan));
  t.same(tar.map((e) => e.name).sort(), scan.entries.map((e) => e.path).sort(), 'the tar holds exactly the scanned entries');
  t.ok(tar.every((e) => e.uid === 0 && e.gid === 0), 'owners zeroed');
  t.equal(tar.find((e) => e.name === 'run.sh')?.mode & 0o777, 0o755, 'executable bit kept');
  t.equal(tar.find((e) => e.name === 'd7/f3.txt')?.body.toString(), '7/3', 'file content');
});

t.test('packContext streams: a 256 MiB file is never held in memory', async (t) => {
  const dir = writeTree(tempDir(t), { Dockerfile: 'FROM scratch\n' });
  writeFileSync(path.join(dir, 'big.bin'), ''); // grown sparse: costs no disk
  truncateSync(path.join(dir, 'big.bin'), 256 * 1024 * 1024);
  const scan = await scanContext(dir);
  const before = process.memoryUsage().rss;
  let peak = before;
  let bytes = 0;
  for await (const chunk of await packContext(scan)) {
    bytes += chunk.length;
    peak = Math.max(peak, process.memoryUsage().rss);
  }
  t.ok(bytes > 256 * 1024 * 1024, `${bytes} bytes streamed`);
  t.ok(peak - before < 100 * 1024 * 1024, `memory grew by ${Math.round((peak - before) / 1048576)} MiB`);
});

t.test('Dockerfile outside the context: tar carries it and a .dockerignore hiding it', async (t) => {
  const context = writeTree(tempDir(t), { 'a.txt': 'a', '.dockerignore': '# c\nb.txt\n', 'b.txt': '' });
  const dockerfile = path.join(writeTree(tempDir(t), { Dockerfile: 'FROM scratch\nCOPY a.txt /\n' }), 'Dockerfile');
  const scan = await scanContext(context, { dockerfile });
  t.ok(scan.dockerfileOutside);
  t.match(scan.dockerfileName, /^\.dockerfile\.[0-9a-f]{20}$/);
  const tar = tarEntries(await packToBuffer(scan));
  t.same(tar.map((e) => e.name).sort(), [scan.dockerfileName, '.dockerignore', 'a.txt'].sort());
  t.equal(tar.find((e) => e.name === scan.dockerfileName).body.toString(), 'FROM scratch\nCOPY a.txt /\n');
  t.same(tar.find((e) => e.name === '.dockerignore').body.toString().split('\n').filter(Boolean), ['b.txt', scan.dockerfileName]);
});

