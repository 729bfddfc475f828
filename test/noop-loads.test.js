// A no-op re-run as users run it (issue 15): `node bin/pipeline.js` on unchanged images, against
// the real dockerd and registry, loads no engine client (dockerode, docker-modem, ssh2, gRPC):
// the engine check is one GET /version over node:http, and nothing else needs the engine. The
// first run, which builds and pushes, does load it: the same check can fail.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { heavyIn, moduleRecorder } from './helpers/loaded-modules.js';
import { testEnv, uniqueName } from './helpers/env.js';

const env = testEnv();
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ENGINE_CLIENT = ['dockerode', 'docker-modem', 'ssh2', '@grpc/grpc-js'];

t.test('the second, unchanged run of two images loads no engine client; the first does', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tk-noop-loads-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const prefix = uniqueName('noopload');
  const image = (name, from, isDefault) => {
    mkdirSync(path.join(dir, name));
    writeFileSync(path.join(dir, name, 'Dockerfile'), `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/${from}\nCOPY hello.txt /${name}.txt\n`);
    writeFileSync(path.join(dir, name, 'hello.txt'), `${name}\n`);
    writeFileSync(path.join(dir, name, 'requirements.txt'), '# nothing\n');
    writeFileSync(path.join(dir, name, 'image.yaml'), `name: ${name}\ndisplay_name: ${name}\ndescription: Fixture ${name}\ncategory: jupyter\nmetadata:\n  default: ${isDefault}\n`);
  };
  writeFileSync(path.join(dir, 'bases.yaml'), `bases:\n  - library/busybox:${env.busyboxTag}\n`);
  image(`${prefix}-base`, `library/busybox:${env.busyboxTag}`, true);
  image(`${prefix}-child`, `library/${prefix}-base:latest`, false);
  const run = moduleRecorder(t);
  const args = [
    path.join(repoRoot, 'bin', 'pipeline.js'), dir, '--registry', env.registryAnon, '--engine-host', env.dockerHost,
    '--registration-target', 'catalog', '--registration-catalog-path', path.join(dir, 'catalog.json'),
  ];

  const first = await run(args);
  t.equal(first.code, 0, `first run succeeds: ${first.stderr.slice(-400)}`);
  t.match(JSON.parse(first.stdout), { changed: true, done: [`${prefix}-base`, `${prefix}-child`] });
  t.ok(heavyIn(first.urls).includes('dockerode'), `the first run builds and pushes through dockerode (${heavyIn(first.urls).join(', ')})`);

  const second = await run(args);
  t.equal(second.code, 0, `second run succeeds: ${second.stderr.slice(-400)}`);
  t.match(JSON.parse(second.stdout), { changed: false, done: [`${prefix}-base`, `${prefix}-child`] });
  t.same(heavyIn(second.urls).filter((name) => ENGINE_CLIENT.includes(name)), [], 'no engine client on the no-op');

  // Each build context is walked once: the plan takes the walk the checks (lint) made.
  const counter = path.join(dir, 'count-walks.cjs');
  writeFileSync(counter, `const fs = require('node:fs'); const seen = {}; const readdirSync = fs.readdirSync;
fs.readdirSync = function (dir, ...rest) { seen[dir] = (seen[dir] || 0) + 1; return readdirSync.call(this, dir, ...rest); };
process.on('exit', () => process.stderr.write('WALKS ' + JSON.stringify(seen) + '\\n'));
`);
  const counted = await run(['--require', counter, ...args]);
  t.equal(counted.code, 0, `counted run succeeds: ${counted.stderr.slice(-400)}`);
  const walks = JSON.parse(/WALKS (\{.*\})/.exec(counted.stderr)?.[1] ?? '{}');
  t.same([walks[path.join(dir, `${prefix}-base`)], walks[path.join(dir, `${prefix}-child`)]], [1, 1], `each context folder read once (${JSON.stringify(walks)})`);

  // The engine is still asked: an engine that is gone fails the no-op too, naming its address.
  const gone = `unix://${path.join(dir, 'no-engine.sock')}`;
  const third = await run(args.map((a) => (a === env.dockerHost ? gone : a)));
  t.equal(third.code, 1, 'an unreachable engine fails the run');
  t.match(JSON.parse(third.stdout), { failed: true, error_code: 'ERR_ENGINE_UNREACHABLE', msg: new RegExp(gone.replace(/[/.]/g, '\\$&')) });
});
