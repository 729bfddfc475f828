// Check mode is a prediction: for each scenario of the table below, a check run and then a real
// run of the same images, through each entry point (the library and the pipeline command), must
// agree on `changed` per image and overall, and the check run must change nothing (registry tags
// and the catalog file byte-identical, no write request in the registry's access log, no image
// tagged on the engine). Real dockerd and the anonymous registry of test/env.
//
// The third entry point is the playbook ansible/10_build_jupyter_images.yaml (one
// thinkube_image_pipeline task) run by the real ansible-playbook, with and without --check: the
// module's result and the PLAY RECAP counts of both runs are compared.
import t from 'tap';
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Docker from 'dockerode';
import { runPipeline } from '../dist/lib/pipeline/pipeline.js';
import { buildImage } from '../dist/lib/build/build.js';
import { pushImage } from '../dist/lib/engine/push.js';
import { RegistryClient } from '../dist/lib/registry/client.js';
import { testEnv, uniqueName } from './helpers/env.js';
import { runScript } from './helpers/scripts.js';
import { registryLogSince } from './helpers/registry-log.js';
import { recap, runPlaybook } from './helpers/ansible.js';

// 7 scenarios x 3 entry points, each a first run, a check run and a real run, on a shared machine.
t.setTimeout(30 * 60_000);

const env = testEnv();
const engine = { host: env.dockerHost };
const registry = new RegistryClient({ registry: env.registryAnon });
const docker = new Docker({ socketPath: env.dockerHost.replace(/^unix:\/\//, '') });
const SHORT = ['root', 'child', 'solo'];

function tmp(t, prefix) {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const write = (file, text) => writeFileSync(file, text);

/**
 * A fixture: <p>-root (FROM busybox, or FROM its own base <p>-bbase:1 with ownBase; copies
 * hello.txt), <p>-child (FROM <p>-root) and <p>-solo (FROM busybox, copies solo.txt). Each folder
 * has the .dockerignore the real images have (image.yaml is metadata, not build context).
 */
async function fixture(t, { ownBase = false, rootFrom } = {}) {
  const p = uniqueName('chk');
  const dir = tmp(t, 'tk-check-');
  const fx = { p, dir, catalogPath: path.join(tmp(t, 'tk-check-cat-'), 'catalog.json'), tags: ['latest'], repos: SHORT.map((s) => `library/${p}-${s}`) };
  const bases = ['library/busybox:1.35'];
  if (ownBase) {
    fx.baseRepo = `library/${p}-bbase`;
    fx.baseV1 = await pushBaseVariant(t, fx.baseRepo, `v1-${p}`, '1');
    bases.push(`${fx.baseRepo}:1`);
    fx.repos.push(fx.baseRepo);
  }
  write(path.join(dir, 'bases.yaml'), `bases:\n${bases.map((b) => `  - ${b}\n`).join('')}`);
  const image = (short, dockerfile, files, isDefault = false) => {
    const folder = path.join(dir, `${p}-${short}`);
    mkdirSync(folder);
    write(path.join(folder, 'Dockerfile'), `ARG HARBOR_REGISTRY\n${dockerfile}`);
    for (const [file, text] of Object.entries(files)) write(path.join(folder, file), text);
    write(path.join(folder, 'requirements.txt'), '# nothing to install\n');
    write(path.join(folder, '.dockerignore'), 'image.yaml\nREADME.md\n');
    write(
      path.join(folder, 'image.yaml'),
      `name: ${p}-${short}\ndisplay_name: Test ${short}\ndescription: Fixture image ${short}\ncategory: jupyter\ntags: [test]\nmetadata:\n  gpu_required: false\n  cpu_limit: 1\n  mem_limit: 1G\n  default: ${isDefault}\n  purpose: jupyter\n`,
    );
  };
  const from = rootFrom ?? (ownBase ? `${fx.baseRepo}:1` : 'library/busybox:1.35');
  image('root', `FROM \${HARBOR_REGISTRY}/${from}\nCOPY hello.txt /hello.txt\nRUN echo root-${p} > /root-marker\n`, { 'hello.txt': 'hello 1\n' }, true);
  image('child', `FROM \${HARBOR_REGISTRY}/library/${p}-root:latest\nRUN cat /root-marker > /child\n`, {});
  image('solo', 'FROM ${HARBOR_REGISTRY}/library/busybox:1.35\nCOPY solo.txt /solo.txt\n', { 'solo.txt': `solo ${p}\n` });
  fx.file = (short, file) => path.join(dir, `${p}-${short}`, file);
  return fx;
}

/** Build FROM busybox with a marker, push it as <repo>:<tag>; `as`: then point <repo>:<as> at it registry-side. */
async function pushBaseVariant(t, repo, marker, tag, as = tag) {
  const dir = tmp(t, 'tk-check-bbase-');
  write(path.join(dir, 'Dockerfile'), `FROM ${env.busyboxImage}\nRUN echo ${marker} > /variant\n`);
  const reference = `${env.registryAnon}/${repo}:${tag}`;
  await buildImage({ context: dir, tags: [reference], engine, ociLabels: false });
  const pushed = await pushImage({ tags: [reference], engine });
  if (as !== tag) await registry.retag(repo, tag, as);
  return pushed.digest;
}

// ------------------------------------------------------------------ entry points

/** One shape for every entry point: overall changed/failed and, per short name, what the table compares. */
function normalize(result, p) {
  const images = {};
  for (const image of result.images) {
    const short = image.name.slice(p.length + 1);
    const moved = image.tagsMoved ?? image.tags_moved ?? [];
    images[short] = {
      status: image.status,
      changed: image.changed,
      buildSkipped: image.buildSkipped ?? image.build_skipped,
      tagsMoved: moved.map((m) => m.split(':').pop()).sort(),
      registrationChanged: image.registration?.changed,
      reason: image.reason,
    };
  }
  return { changed: result.changed, failed: result.failed, images };
}

function libraryOptions(fx) {
  return { imagesDir: fx.dir, registry: env.registryAnon, engine, tags: fx.tags, registration: { target: 'catalog', catalogPath: fx.catalogPath } };
}

const runCommand = (args) => runScript('pipeline.js', args);

const ENTRY_POINTS = [
  {
    name: 'library',
    async run(t, fx, { check }) {
      return normalize(await runPipeline(libraryOptions(fx), { checkMode: check }), fx.p);
    },
  },
  {
    name: 'pipeline command',
    async run(t, fx, { check }) {
      const args = [fx.dir, '--registry', env.registryAnon, '--engine-host', env.dockerHost, '--registration-target', 'catalog', '--registration-catalog-path', fx.catalogPath, ...fx.tags.flatMap((tag) => ['--tag', tag]), '--quiet'];
      const run = await runCommand(check ? [...args, '--check'] : args);
      let result;
      try {
        result = JSON.parse(run.stdout);
      } catch {
        throw new Error(`pipeline.js printed no JSON object (exit ${run.code}): ${run.stdout.slice(0, 2000)} ${run.stderr.slice(-2000)}`);
      }
      t.equal(run.code, result.failed ? 1 : 0, `pipeline.js${check ? ' --check' : ''}: exit code ${run.code} matches failed=${result.failed}`);
      return normalize(result, fx.p);
    },
  },
  {
    name: 'playbook',
    async run(t, fx, { check }) {
      const extraVars = {
        harbor_registry: env.registryAnon,
        // The anonymous registry asks for no credentials; the playbook requires the variable.
        harbor_admin_password: 'not-asked-for',
        images_dir: fx.dir,
        engine_host: env.dockerHost,
        image_tags: fx.tags,
        registration_target: 'catalog',
        catalog_path: fx.catalogPath,
      };
      // -v prints each task's result as one line of JSON: the pipeline task's is the module's result.
      const run = await runPlaybook({ extraVars, args: check ? ['-v', '--check'] : ['-v'], env: { ANSIBLE_CALLBACK_RESULT_FORMAT: 'json' } });
      const result = pipelineTaskResult(run.output);
      const counts = recap(run.output);
      const what = `ansible-playbook${check ? ' --check' : ''}`;
      t.ok(result && counts, `${what}: the pipeline task's result and the PLAY RECAP are in the output${result && counts ? '' : `\n${run.output.slice(-4000)}`}`);
      t.notOk(run.output.includes('MODULE FAILURE'), `${what}: no module failure`);
      // The pipeline task is the only task that can change anything here; the last task fails the play when an image failed.
      t.equal(counts?.changed, result?.changed ? 1 : 0, `${what}: PLAY RECAP changed=${counts?.changed} is the module's changed=${result?.changed}`);
      t.equal(counts?.failed, result?.failed ? 1 : 0, `${what}: PLAY RECAP failed=${counts?.failed} follows the module's failed=${result?.failed}`);
      t.equal(run.code, result?.failed ? 2 : 0, `${what}: exit code ${run.code}`);
      return { ...normalize(result, fx.p), recap: counts };
    },
  },
];

/** The module result of the playbook's thinkube_image_pipeline task, from ansible-playbook -v output. */
function pipelineTaskResult(output) {
  const lines = output.split('\n');
  const task = lines.findIndex((l) => l.startsWith('TASK [Build, push, scan and register every image in dependency order]'));
  if (task < 0) return undefined;
  const line = lines.slice(task + 1).find((l) => /^(ok|changed|failed|fatal): \[localhost\] => \{/.test(l));
  if (!line) return undefined;
  const result = JSON.parse(line.slice(line.indexOf('=> ') + 3));
  // failed_when: false sets the task's failed to false; the module's failed_images say what failed.
  return { ...result, failed: result.failed_images.length > 0 };
}

// ------------------------------------------------------------------ what "changed nothing" means

/** Every tag of the fixture's repositories with the digest it names, as one string. */
async function registryState(fx) {
  const state = {};
  for (const repo of fx.repos) {
    const tags = (await registry.listTags(repo)).sort();
    state[repo] = {};
    for (const tag of tags) state[repo][tag] = (await registry.headManifest(repo, tag))?.digest ?? null;
  }
  return JSON.stringify(state);
}

const catalogBytes = (fx) => (existsSync(fx.catalogPath) ? readFileSync(fx.catalogPath) : null);
const catalogEntries = (fx) => (existsSync(fx.catalogPath) ? JSON.parse(readFileSync(fx.catalogPath, 'utf8')).images : {});

/** The engine's images tagged with a name of the fixture (id and tags), as one string. */
async function engineState(fx) {
  const images = await docker.listImages();
  const mine = images.filter((i) => (i.RepoTags ?? []).some((tag) => tag.includes(`/${fx.p}-`)));
  return JSON.stringify(mine.map((i) => [i.Id, [...i.RepoTags].sort()]).sort());
}

const logOffset = () => statSync(env.registryAnonLog).size;

/** Requests after `offset` that write to one of the fixture's repositories. */
async function writeRequests(offset, fx) {
  const text = await registryLogSince(env.registryAnon, env.registryAnonLog, offset);
  return text.split('\n').filter((line) => /\b(PUT|POST|PATCH|DELETE)\b/.test(line) && fx.repos.some((repo) => line.includes(`/v2/${repo}/`)));
}

// ------------------------------------------------------------------ the table

const editYaml = (fx, short, from, to) => write(fx.file(short, 'image.yaml'), readFileSync(fx.file(short, 'image.yaml'), 'utf8').replace(from, to));

/**
 * expect: per image, `changed` of both runs. built: the images (re)built by both runs. moved: per
 * image, the tags both runs move (default: every tag for a built image, none otherwise).
 * registered: images whose registration changes (default: those that change). status: images
 * that fail or are skipped in both runs (default: planned in check mode, done for real);
 * failsWith: what the reason of the failed image names (the check that stopped it).
 * baseline: a first real run before the setup (default true).
 */
const SCENARIOS = [
  {
    name: 'nothing changed',
    setup() {},
    expect: { root: false, child: false, solo: false },
    built: [],
  },
  {
    name: 'metadata edited (image.yaml description of root)',
    setup(t, fx) {
      editYaml(fx, 'root', 'description: Fixture image root', 'description: Fixture image root, described anew');
    },
    expect: { root: true, child: false, solo: false },
    built: [],
    moved: {},
    registered: ['root'],
    async verify(t, fx) {
      t.equal(catalogEntries(fx)[`${fx.p}-root`].description, 'Fixture image root, described anew', 'the catalog holds the new description');
    },
  },
  {
    name: 'a context file of root edited',
    setup(t, fx) {
      write(fx.file('root', 'hello.txt'), 'hello 2\n');
    },
    expect: { root: true, child: true, solo: false },
    built: ['child', 'root'],
  },
  {
    name: 'the base image of root moved',
    fixture: { ownBase: true },
    async setup(t, fx) {
      const v2 = await pushBaseVariant(t, fx.baseRepo, `v2-${fx.p}`, '2', '1');
      t.not(v2, fx.baseV1, `${fx.baseRepo}:1 names another image now`);
    },
    expect: { root: true, child: true, solo: false },
    built: ['child', 'root'],
  },
  {
    name: 'a tag added',
    setup(t, fx) {
      fx.tags = ['latest', 'second'];
    },
    expect: { root: true, child: true, solo: true },
    built: [],
    moved: { root: ['second'], child: ['second'], solo: ['second'] },
    registered: [],
  },
  {
    name: 'a check error in root (unpinned requests>=2) after a first run; solo edited',
    setup(t, fx) {
      write(fx.file('root', 'requirements.txt'), 'requests>=2\n');
      write(fx.file('solo', 'solo.txt'), 'solo edited\n');
    },
    expect: { root: false, child: false, solo: true },
    built: ['solo'],
    status: { root: 'failed', child: 'skipped' },
    failsWith: /requests>=2/,
    untouched: ['root', 'child'],
  },
  {
    // An unlisted base that is in the registry: the playbook's preflight, which stops the whole
    // play on a base missing from the registry, then leaves it to the pipeline's checks.
    name: 'a check error in a new set (root FROM a base outside bases.yaml)',
    fixture: { rootFrom: 'library/busybox-arm64:1.35' },
    baseline: false,
    setup() {},
    expect: { root: false, child: false, solo: true },
    built: ['solo'],
    status: { root: 'failed', child: 'skipped' },
    failsWith: /busybox-arm64:1\.35.*bases\.yaml/,
    untouched: ['root', 'child'],
  },
];

/** The run of a scenario through one entry point: baseline, setup, check run, real run. */
async function runScenario(t, entry, scenario) {
  const fx = await fixture(t, scenario.fixture);
  if (scenario.baseline !== false) {
    const offset = logOffset();
    const first = await entry.run(t, fx, { check: false });
    t.equal(first.failed, false, `first real run succeeds: ${JSON.stringify(first.images)}`);
    t.ok((await writeRequests(offset, fx)).length > 0, 'positive control: the first run shows writes in the registry log');
  }
  await scenario.setup(t, fx);

  const before = { registry: await registryState(fx), catalog: catalogBytes(fx), engine: await engineState(fx) };
  const offset = logOffset();
  const check = await entry.run(t, fx, { check: true });
  t.same(await writeRequests(offset, fx), [], 'check run: no write request to the registry');
  t.equal(await registryState(fx), before.registry, 'check run: the registry tags are identical');
  const catalogAfterCheck = catalogBytes(fx);
  t.ok(before.catalog === null ? catalogAfterCheck === null : catalogAfterCheck?.equals(before.catalog), 'check run: the catalog file is byte-identical (or still absent)');
  t.equal(await engineState(fx), before.engine, 'check run: no image tagged on the engine');

  const real = await entry.run(t, fx, { check: false });
  const line = (r, short) => `${r.images[short].status}, changed ${r.images[short].changed}: ${r.images[short].reason}`;
  t.equal(check.changed, real.changed, `overall: check mode predicts changed=${real.changed}`);
  if (real.recap) {
    t.equal(check.recap.changed, real.recap.changed, `PLAY RECAP: check mode predicts changed=${real.recap.changed}`);
    t.equal(check.recap.failed, real.recap.failed, `PLAY RECAP: check mode predicts failed=${real.recap.failed}`);
  }
  t.equal(real.changed, Object.values(scenario.expect).some(Boolean), 'overall: changed as the table says');
  const failing = Object.values(scenario.status ?? {}).includes('failed');
  t.equal(check.failed, failing, `check run failed=${failing}`);
  t.equal(real.failed, failing, `real run failed=${failing}`);
  t.same(Object.keys(real.images).sort(), [...SHORT].sort(), 'every image has a result');
  for (const short of SHORT) {
    const c = check.images[short];
    const r = real.images[short];
    t.equal(c.changed, r.changed, `${short}: check mode predicts changed=${r.changed} (check: ${line(check, short)} | real: ${line(real, short)})`);
    t.equal(r.changed, scenario.expect[short], `${short}: changed=${scenario.expect[short]} as the table says`);
    const status = scenario.status?.[short];
    t.equal(c.status, status ?? 'planned', `${short}: check status ${status ?? 'planned'}`);
    t.equal(r.status, status ?? 'done', `${short}: real status ${status ?? 'done'}`);
    if (status) {
      if (status === 'failed') for (const [run, r2] of [['check', c], ['real', r]]) t.match(r2.reason, scenario.failsWith, `${short}: ${run} run stopped by the check (${r2.reason})`);
      else for (const [run, r2] of [['check', c], ['real', r]]) t.match(r2.reason, /builds on .*-root/, `${short}: ${run} run skipped because of root (${r2.reason})`);
      continue;
    }
    const built = scenario.built.includes(short);
    const moved = (scenario.moved ? (scenario.moved[short] ?? []) : built ? fx.tags : []).slice().sort();
    const registered = scenario.registered ? scenario.registered.includes(short) : scenario.expect[short];
    for (const [run, r2] of [['check', c], ['real', r]]) {
      t.equal(r2.buildSkipped, !built, `${short}: ${run} run ${built ? 'builds' : 'builds nothing'}`);
      t.same(r2.tagsMoved, moved, `${short}: ${run} run moves ${moved.join(', ') || 'no tag'}`);
      t.equal(r2.registrationChanged, registered, `${short}: ${run} run ${registered ? 'changes' : 'keeps'} the registration`);
    }
  }
  if (scenario.untouched) {
    const beforeRegistry = JSON.parse(before.registry);
    const afterRegistry = JSON.parse(await registryState(fx));
    const beforeCatalog = before.catalog ? JSON.parse(before.catalog.toString('utf8')).images : {};
    const afterCatalog = catalogEntries(fx);
    for (const short of scenario.untouched) {
      const name = `${fx.p}-${short}`;
      t.same(afterRegistry[`library/${name}`], beforeRegistry[`library/${name}`], `${short}: nothing pushed or re-tagged`);
      t.same(afterCatalog[name], beforeCatalog[name], `${short}: registration untouched`);
      if (scenario.baseline === false) t.same(afterRegistry[`library/${name}`], {}, `${short}: not in the registry at all`);
    }
  }
  await scenario.verify?.(t, fx);
}

for (const scenario of SCENARIOS) {
  for (const entry of ENTRY_POINTS) {
    t.test(`${scenario.name} | ${entry.name}`, (t) => runScenario(t, entry, scenario));
  }
}

t.test('pipeline command, then the library, then the pipeline command again (then the playbook): only the first changes anything', async (t) => {
  const fx = await fixture(t);
  const entry = Object.fromEntries(ENTRY_POINTS.map((e) => [e.name, e]));
  const command = (...a) => entry['pipeline command'].run(...a);
  const library = (...a) => entry.library.run(...a);
  const playbook = (...a) => entry.playbook.run(...a);
  const first = await command(t, fx, { check: false });
  t.equal(first.failed, false);
  t.equal(first.changed, true, 'the first run (pipeline command) builds and registers the set');
  for (const short of SHORT) t.equal(first.images[short].buildSkipped, false, `${short}: built by the first run`);
  const catalog = catalogBytes(fx);
  for (const [name, run] of [['library', library], ['pipeline command', command], ['playbook', playbook]]) {
    const again = await run(t, fx, { check: false });
    t.equal(again.failed, false);
    t.equal(again.changed, false, `${name} after it: nothing changed`);
    for (const short of SHORT) {
      t.equal(again.images[short].changed, false, `${name}: ${short} unchanged (${again.images[short].reason})`);
      t.equal(again.images[short].buildSkipped, true, `${name}: ${short} not rebuilt`);
    }
    t.ok(catalogBytes(fx).equals(catalog), `${name}: the catalog file is byte-identical`);
  }
});
