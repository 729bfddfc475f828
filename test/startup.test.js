// What a process loads before it has work to do (issue 15): --help, a usage error, bad options, lint
// and catalog load no engine client, SSH or HTTP stack; an Ansible module whose options fail
// validation loads no network module. The figures (how long a start-up takes) live in
// bench/startup.js; these tests assert which modules load, which is what keeps start-up short.
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { HEAVY, commands, dependencies, heavyIn, moduleRecorder } from './helpers/loaded-modules.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dir = mkdtempSync(path.join(os.tmpdir(), 'tk-startup-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const record = moduleRecorder(t);
/** Run node with the hook; its exit code, stdout and the modules it resolved. */
const loaded = (args, { cwd = repoRoot } = {}) => record(args, { cwd });

t.test('--help and a usage error load neither the command nor any dependency', async (t) => {
  for (const file of ['build.js', 'push.js', 'pipeline.js', 'preflight.js', 'register.js', 'index.js', 'catalog.js', 'lint.js', 'new-image.js']) {
    const help = await loaded([path.join('bin', file), '--help']);
    t.equal(help.code, 0, `${file} --help exits 0`);
    t.match(help.stdout, new RegExp(`^Usage: ${file.replace('.', '\\.')}`));
    t.same([...dependencies(help.urls), ...commands(help.urls)], [], `${file} --help: no dependency, no command module`);
    const usage = await loaded([path.join('bin', file), '--frobnicate']);
    t.equal(usage.code, 2, `${file} --frobnicate is a usage error`);
    t.same([...dependencies(usage.urls), ...commands(usage.urls)], [], `${file} --frobnicate: no dependency, no command module`);
    t.ok(usage.urls.some((u) => u.endsWith(`/dist/cli/${file.replace('.js', '.cjs')}`)), `${file}: the hook saw the bundle it loaded`);
  }
});

t.test('bad options fail before the command and its dependencies are loaded; good ones load them', async (t) => {
  const bad = await loaded(['bin/push.js', '--tag', 'Not A Reference']);
  t.equal(bad.code, 1);
  t.match(JSON.parse(bad.stdout), { failed: true, error_code: 'ERR_INVALID_OPTIONS', problems: [{ field: '--tags[0]' }] });
  t.same(commands(bad.urls), [], 'no command module');
  t.same(heavyIn(bad.urls), [], 'no engine, SSH or HTTP stack');
  // The same check can fail: options that pass load the command and what it needs.
  const good = await loaded(['bin/push.js', '--tag', 'localhost:1/x:1', '--engine-host', `unix://${path.join(dir, 'no-engine.sock')}`]);
  t.equal(good.code, 1, 'fails on the missing engine, later');
  t.ok(good.urls.some((u) => u.endsWith('/dist/cli/push.command.cjs')), 'the command part of the bundle');
  t.ok(heavyIn(good.urls).includes('http stack'), `the HTTP stack (${heavyIn(good.urls).join(', ')})`);
  // The engine check is one GET /version over node:http: dockerode waits for a call that needs it.
  t.notOk(heavyIn(good.urls).includes('dockerode'), 'no engine client for the engine check');
});

t.test('lint and catalog load no engine client, SSH or HTTP stack', async (t) => {
  for (const file of ['lint.js', 'catalog.js']) {
    const run = await loaded([path.join('bin', file), 'images']);
    t.equal(run.code, 0, `${file} images succeeds`);
    t.ok(run.urls.some((u) => u.endsWith(`/dist/cli/${file.replace('.js', '.command.cjs')}`)), `${file} loads its command`);
    t.same(heavyIn(run.urls), [], `${file} images: none of ${HEAVY.join(', ')}, no HTTP stack`);
  }
});

t.test('a pipeline run without a configmap registration in mode cluster loads no Kubernetes client', async (t) => {
  const images = path.join(dir, 'pipeline-images');
  mkdirSync(path.join(images, 'one'), { recursive: true });
  writeFileSync(path.join(images, 'one', 'Dockerfile'), 'ARG HARBOR_REGISTRY\nFROM ${HARBOR_REGISTRY}/library/busybox:1.36\n');
  writeFileSync(path.join(images, 'one', 'requirements.txt'), '# nothing\n');
  writeFileSync(path.join(images, 'one', 'image.yaml'), 'name: one\ndisplay_name: One\ndescription: One image\ncategory: jupyter\nmetadata:\n  default: true\n');
  // Fails at the engine check, after the command and everything it imports were loaded.
  const run = await loaded(['bin/pipeline.js', images, '--registry', 'localhost:1', '--engine-host', `unix://${path.join(dir, 'no-engine.sock')}`]);
  t.equal(run.code, 1, 'fails on the missing engine');
  t.ok(run.urls.some((u) => u.endsWith('/dist/cli/pipeline.command.cjs')), 'the command part of the bundle');
  t.ok(heavyIn(run.urls).includes('http stack'), 'the hook sees the HTTP stack');
  t.notOk(heavyIn(run.urls).includes('dockerode'), 'no engine client for the engine check');
  t.notOk(heavyIn(run.urls).includes('@kubernetes/client-node'), `no Kubernetes client (${heavyIn(run.urls).join(', ')})`);
});

t.test('a bundled module whose options fail validation loads no network module; one that passes does', async (t) => {
  // Alone in an empty folder, as Ansible runs it.
  const work = mkdtempSync(path.join(dir, 'module-'));
  const file = path.join(work, 'AnsiballZ_thinkube_image_push.cjs');
  copyFileSync(path.join(repoRoot, 'ansible', 'library', 'thinkube_image_push.cjs'), file);
  const args = (name, options) => {
    const argsFile = path.join(work, name);
    writeFileSync(argsFile, JSON.stringify({ ...options, _ansible_check_mode: true }));
    return argsFile;
  };
  const network = (urls) => urls.filter((u) => /^node:(tls|http|https|http2|net|dns)$/.test(u));
  const bad = await loaded([file, args('bad', { tags: ['Not A Reference'] })], { cwd: work });
  t.equal(bad.code, 1);
  t.match(JSON.parse(bad.stdout), { failed: true, error_code: 'ERR_INVALID_OPTIONS', problems: [{ field: 'tags[0]' }] });
  t.same(network(bad.urls), [], 'no tls, http, http2, net or dns');
  const good = await loaded([file, args('good', { tags: ['localhost:1/x:1'], engine: { host: `unix://${path.join(work, 'no-engine.sock')}` } })], { cwd: work });
  t.equal(good.code, 1, 'fails on the missing engine or registry, later');
  t.notMatch(JSON.parse(good.stdout), { error_code: 'ERR_INVALID_OPTIONS' });
  t.ok(network(good.urls).includes('node:http'), `the hook sees the network modules of a real run (${network(good.urls).join(', ')})`);
  // dockerode's gRPC session (node:http2) is a stand-in until a BuildKit session needs it.
  t.notOk(network(good.urls).includes('node:http2'), 'no gRPC on a run that opens no BuildKit session');
});
