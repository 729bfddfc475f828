// Preflight against the real engine and registries of test/env/up.sh (plain OCI registries: the
// Harbor-only checks are not applicable, the rest runs for real) and against the Harbor stand-in
// (health, identity, project creation, base images, the robot account's `$` through every layer).
import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { runPreflight, summarizePreflight, PREFLIGHT_CHECKS } from '../dist/lib/pipeline/preflight.js';
import { repoRoot, testEnv } from './helpers/env.js';
import { startHarborStandin } from './helpers/harbor-standin.js';

const run = promisify(execFile);
const env = testEnv();
const ROBOT = { username: 'robot$thinkube', password: 'robot-secret' };
const ADMIN = { username: 'admin', password: 'Harbor12345' };
const HARBOR_ONLY = ['harbor-health', 'harbor-identity', 'harbor-project'];

const tmp = mkdtempSync(path.join(os.tmpdir(), 'preflight-test-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

/** An images folder: app-a on a present base, app-b on a missing one, app-c on app-a, app-d on Docker Hub. */
function fixtureImages() {
  const dir = path.join(tmp, 'images');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'bases.yaml'), 'bases:\n  - library/busybox:1.35\n  - library/missing-base:1\n');
  const image = (name, from) => {
    mkdirSync(path.join(dir, name), { recursive: true });
    writeFileSync(path.join(dir, name, 'Dockerfile'), `ARG HARBOR_REGISTRY\nFROM ${from}\nRUN true\n`);
    writeFileSync(
      path.join(dir, name, 'image.yaml'),
      `name: ${name}\ndisplay_name: ${name}\ndescription: Preflight fixture ${name}\ncategory: jupyter\ntags:\n  - jupyter-compatible\nmetadata:\n  gpu_required: false\n  cpu_limit: 2\n  mem_limit: 4G\n  default: false\n  purpose: jupyter\n`,
    );
  };
  image('app-a', '${HARBOR_REGISTRY}/library/busybox:1.35');
  image('app-b', '${HARBOR_REGISTRY}/library/missing-base:1');
  image('app-c', '${HARBOR_REGISTRY}/library/app-a:latest');
  image('app-d', 'docker.io/library/alpine:3.19');
  return dir;
}
const imagesDir = fixtureImages();

/** A Docker config without any entry: keeps ~/.docker/config.json out of the tests. */
const emptyDockerConfig = path.join(tmp, 'empty-docker-config.json');
writeFileSync(emptyDockerConfig, '{"auths":{}}');

const byName = (result) => Object.fromEntries(result.checks.map((c) => [c.name, c]));

async function standin(t, options) {
  const s = await startHarborStandin(options);
  t.teardown(() => s.close());
  return s;
}

function logOffset(file) {
  return statSync(file).size;
}
function logSince(file, offset) {
  return readFileSync(file).subarray(offset).toString('utf8');
}

t.test('plain anonymous registry: Harbor-only checks not applicable, engine, disk and base images for real', async (t) => {
  const offset = logOffset(env.registryAnonLog);
  const result = await runPreflight({
    registry: env.registryAnon,
    engine: { host: env.dockerHost },
    imagesDir,
    minFreeGb: 0.001,
    auth: { dockerConfig: emptyDockerConfig },
  });
  const c = byName(result);
  t.same(result.checks.map((x) => x.name), PREFLIGHT_CHECKS, 'every check is reported, in order');
  t.equal(result.registryKind, 'registry');
  for (const name of HARBOR_ONLY) {
    t.equal(c[name].status, 'not-applicable', `${name} is not applicable`);
    t.match(c[name].message, /plain OCI registry/);
  }
  t.equal(c.engine.status, 'ok');
  t.match(c.engine.message, env.dockerHost);
  t.equal(c.disk.status, 'ok');
  t.equal(c.disk.details.dataRoot, path.join(env.stateDir, 'docker'), "the data root is the engine's DockerRootDir");
  t.ok(c.disk.details.freeBytes > 0);
  t.equal(c.registry.status, 'ok');
  t.match(c.registry.message, /answers anonymous requests/);
  t.equal(result.identity, 'anonymous');

  t.equal(c['base-images'].status, 'failed');
  t.same(result.missingBaseImages, [`${env.registryAnon}/library/missing-base:1`], 'exactly the missing base is listed');
  t.same(c['base-images'].details.missing.map((m) => [m.repository, m.tagOrDigest, m.kind, m.neededBy]), [['library/missing-base', '1', 'base', ['app-b']]]);
  t.match(c['base-images'].message, 'library/missing-base:1 (needed by app-b)');
  t.notMatch(c['base-images'].message, /busybox|alpine|app-a:latest/, 'present, external and selected images are not listed');
  t.same(c['base-images'].details.present.map((p) => p.reference), [`${env.registryAnon}/library/busybox:1.35`]);
  t.match(c['base-images'].hint, /replication/);
  t.match(c['base-images'].hint, `skopeo copy docker://docker.io/library/missing-base:1 docker://${env.registryAnon}/library/missing-base:1`);
  t.equal(result.ok, false);
  t.equal(result.changed, false);
  t.match(summarizePreflight(result), /failed .*base-images: 1 base image is missing/);
  const log = logSince(env.registryAnonLog, offset);
  t.match(log, /"HEAD \/v2\/library\/missing-base\/manifests\/1 HTTP\/1\.1" 404 .*thinkube-custom-images/, 'a manifest HEAD asked the registry');
  t.match(log, /"HEAD \/v2\/library\/busybox\/manifests\/1\.35 HTTP\/1\.1" 200 /);
});

t.test('base images of a selection: unselected images of the set must be in the registry', async (t) => {
  const onlyC = await runPreflight({ registry: env.registryAnon, imagesDir, images: ['app-c'], only: ['base-images'], auth: { dockerConfig: emptyDockerConfig } });
  t.same(onlyC.checks.map((c) => c.name), ['base-images'], 'only the asked-for check runs');
  t.same(onlyC.missingBaseImages, [`${env.registryAnon}/library/app-a:latest`]);
  t.match(onlyC.checks[0].message, 'library/app-a:latest (image of the set, not selected; needed by app-c)');
  t.match(onlyC.checks[0].hint, /Build and push app-a first, or add it to the selected images/);
  t.notMatch(onlyC.checks[0].hint, /skopeo/, 'no mirroring advice for an image of the set');

  const withA = await runPreflight({ registry: env.registryAnon, imagesDir, images: ['app-a', 'app-c'], only: ['base-images'], auth: { dockerConfig: emptyDockerConfig } });
  t.equal(withA.checks[0].status, 'ok', 'app-a is built in the same run: only busybox is needed');
  t.match(withA.checks[0].message, /All 1 base image\(s\) .* library\/busybox:1\.35/);
  t.equal(withA.ok, true);

  const unknown = await runPreflight({ registry: env.registryAnon, imagesDir, images: ['app-x'], only: ['base-images'] });
  t.equal(unknown.checks[0].status, 'failed');
  t.match(unknown.checks[0].message, /"app-x" is not an image of .*known: app-a, app-b, app-c, app-d/);

  const none = await runPreflight({ registry: env.registryAnon, imagesDir: path.join(tmp, 'no-such-folder'), only: ['base-images'] });
  t.equal(none.checks[0].status, 'failed');
  t.match(none.checks[0].message, /Cannot read the images folder .*no-such-folder/);

  const noDir = await runPreflight({ registry: env.registryAnon, only: ['base-images'] });
  t.equal(noDir.checks[0].status, 'not-applicable');
  t.match(noDir.checks[0].message, /no images folder given \(imagesDir\)/);
});

t.test('authenticated registry: credentials named, base images checked with them', async (t) => {
  const auth = { username: env.registryUser, password: env.registryPassword };
  const result = await runPreflight({ registry: env.registryAuth, auth, imagesDir, only: ['registry', ...HARBOR_ONLY, 'base-images'] });
  const c = byName(result);
  t.equal(result.registryKind, 'registry');
  for (const name of HARBOR_ONLY) t.equal(c[name].status, 'not-applicable');
  t.equal(c.registry.status, 'ok');
  t.match(c.registry.message, `accepts the credentials of user "${env.registryUser}"`);
  t.equal(c.registry.details.credentialsFrom, 'options');
  t.equal(result.identity, env.registryUser);
  t.equal(c['base-images'].status, 'failed');
  t.same(result.missingBaseImages, [`${env.registryAuth}/library/missing-base:1`]);
  t.notMatch(JSON.stringify(result), env.registryPassword, 'the password is in no result');

  const fromConfig = await runPreflight({ registry: env.registryAuth, auth: { dockerConfig: env.dockerConfigDir }, only: ['registry'] });
  t.equal(fromConfig.checks[0].status, 'ok', 'credentials from the Docker config entry');
  t.equal(fromConfig.checks[0].details.credentialsFrom, 'docker-config');

  const anonymous = await runPreflight({ registry: env.registryAuth, auth: { dockerConfig: emptyDockerConfig }, imagesDir, only: ['registry', 'base-images'] });
  const a = byName(anonymous);
  t.equal(a.registry.status, 'failed');
  t.match(a.registry.message, /wants credentials, and none were given/);
  t.match(a.registry.hint, /auth\.username and auth\.password/);
  t.equal(a['base-images'].status, 'not-applicable', 'base images are not checked through a registry that cannot be used');
  t.match(a['base-images'].message, /see the registry check/);
});

t.test('wrong password: failed credentials check naming the user, never the password', async (t) => {
  const wrong = 'Wr0ng-p4ssw0rd-for-preflight';
  const result = await runPreflight({ registry: env.registryAuth, auth: { username: env.registryUser, password: wrong }, imagesDir, engine: { host: env.dockerHost }, minFreeGb: 0 });
  const c = byName(result);
  t.equal(c.registry.status, 'failed');
  t.match(c.registry.message, `"${env.registryUser}"`);
  t.equal(c.registry.details.errorCode, 'ERR_REGISTRY_AUTH');
  t.ok(c.registry.hint, 'says what to do');
  t.equal(result.ok, false);
  const everything = JSON.stringify(result) + summarizePreflight(result);
  t.notMatch(everything, wrong);
  t.notMatch(everything, Buffer.from(`${env.registryUser}:${wrong}`).toString('base64'));
});

t.test('disk: below the threshold fails naming the data root; remote engines are not measured', async (t) => {
  const tooMuch = await runPreflight({ registry: env.registryAnon, engine: { host: env.dockerHost }, only: ['disk'], minFreeGb: 1_000_000 });
  t.same(tooMuch.checks.map((c) => c.name), ['disk']);
  const disk = tooMuch.checks[0];
  t.equal(disk.status, 'failed');
  t.match(disk.message, /free \(of .*\) on the engine's data root .*docker; at least 1000000 GiB are needed/);
  t.match(disk.hint, /docker system prune/);

  const podman = await runPreflight({ registry: env.registryAnon, engine: { host: env.podmanHost }, only: ['engine', 'disk'], minFreeGb: 0 });
  t.equal(podman.checks[0].status, 'ok', "Podman's Docker API answers");
  t.equal(podman.checks[1].status, 'ok');
  t.ok(podman.checks[1].details.dataRoot, 'Podman reports its storage root');

  // The same engine through TCP: to the library it is an engine on another host.
  const socketPath = new URL(env.dockerHost).pathname;
  const proxy = net.createServer((client) => {
    const upstream = net.connect(socketPath);
    client.pipe(upstream).pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise((resolve) => proxy.close(resolve)));
  const remote = await runPreflight({ registry: env.registryAnon, engine: { host: `tcp://127.0.0.1:${proxy.address().port}` }, only: ['engine', 'disk'] });
  t.equal(remote.checks[0].status, 'ok');
  t.equal(remote.checks[1].status, 'not-applicable');
  t.match(remote.checks[1].message, /runs on another host: free space of its data root .* cannot be measured from here/);

  const down = await runPreflight({ registry: env.registryAnon, engine: { host: `unix://${path.join(tmp, 'no-engine.sock')}` }, only: ['engine', 'disk'] });
  t.equal(down.checks[0].status, 'failed');
  t.match(down.checks[0].message, /no-engine\.sock/);
  t.ok(down.checks[0].hint);
  t.equal(down.checks[1].status, 'not-applicable');
  t.match(down.checks[1].message, /did not answer/);
});

t.test('options are validated with the caller-facing names', async (t) => {
  await t.rejects(runPreflight({ registry: env.registryAnon, only: ['everything'] }), { code: 'ERR_INVALID_OPTIONS', message: /only\[0\]: must be one of engine/ });
  await t.rejects(runPreflight({ imagesDir }), { code: 'ERR_INVALID_OPTIONS', message: /registry: is required/ });
  await t.rejects(runPreflight({ registry: 'https://harbor.example.com' }), { code: 'ERR_INVALID_OPTIONS', message: /registry: must be a registry host/ });
});

t.test('Harbor stand-in: unhealthy component named, robot identity, project missing', async (t) => {
  const s = await standin(t, {
    health: { redis: 'dial tcp 10.0.0.5:6379: connect: connection refused' },
    artifacts: [{ project: 'library', repository: 'busybox', tags: ['1.35'] }],
  });
  const result = await runPreflight({ registry: s.host, project: 'thinkube', auth: ROBOT, imagesDir, only: ['registry', ...HARBOR_ONLY, 'base-images'] });
  const c = byName(result);
  t.equal(result.registryKind, 'harbor');
  t.equal(c['harbor-health'].status, 'failed');
  t.match(c['harbor-health'].message, `Harbor at ${s.host} is unhealthy: redis (dial tcp 10.0.0.5:6379: connect: connection refused)`);
  t.notMatch(c['harbor-health'].message, /core|database|trivy/, 'healthy components are not named');
  t.match(c['harbor-health'].hint, /Fix the named component/);

  t.equal(c['harbor-identity'].status, 'ok');
  t.match(c['harbor-identity'].message, /robot account robot\$thinkube/);
  t.equal(c['harbor-identity'].details.robot, true);
  t.equal(c.registry.status, 'ok');
  t.match(c.registry.message, 'user "robot$thinkube"');

  t.equal(c['harbor-project'].status, 'failed');
  t.match(c['harbor-project'].message, `Project "thinkube" does not exist on Harbor at ${s.host}`);
  t.match(c['harbor-project'].hint, /set createProject to true/);
  t.notOk(s.state.projects.has('thinkube'), 'not created without createProject');
  t.notOk(s.requests.some((r) => r.method === 'POST'), 'nothing was posted');

  t.equal(c['base-images'].status, 'failed', 'the base-image check runs against Harbor as well');
  // With project thinkube, library/app-a is no image of the set: a name on the registry that bases.yaml does not list.
  t.same(result.missingBaseImages, [`${s.host}/library/missing-base:1`, `${s.host}/library/app-a:latest`]);
  t.match(c['base-images'].message, 'library/app-a:latest (not listed in bases.yaml; needed by app-c)');
  const other = await runPreflight({ registry: s.host, auth: ROBOT, imagesDir, only: ['base-images'] });
  t.same(other.missingBaseImages, [`${s.host}/library/missing-base:1`], 'project library: exactly the missing base');
  t.same(other.checks[0].details.present.map((p) => p.reference), [`${s.host}/library/busybox:1.35`]);
  t.equal(result.ok, false);
  t.equal(result.changed, false);

  const token = s.requests.find((r) => r.rawPath === '/service/token');
  t.equal(token?.user, 'robot$thinkube', "the registry's token service got the robot name byte for byte");
  const api = s.requests.find((r) => r.rawPath === '/api/v2.0/users/current/permissions');
  t.equal(api?.user, 'robot$thinkube', "Harbor's API got the robot name byte for byte");
  t.notMatch(JSON.stringify(result), ROBOT.password);
});

t.test('Harbor stand-in: the project is created with createProject, not in check mode', async (t) => {
  const s = await standin(t);
  const base = { registry: s.host, project: 'thinkube', auth: ADMIN, createProject: true, projectPublic: false, only: ['harbor-health', 'harbor-identity', 'harbor-project'] };

  const dry = await runPreflight(base, { checkMode: true });
  const d = byName(dry);
  t.equal(d['harbor-project'].status, 'ok');
  t.match(d['harbor-project'].message, /does not exist .* it would be created \(private\) - check mode, nothing changed/);
  t.equal(dry.wouldCreateProject, true);
  t.equal(dry.changed, false);
  t.notOk(s.state.projects.has('thinkube'), 'check mode creates nothing');
  t.notOk(s.requests.some((r) => r.method === 'POST'));

  const created = await runPreflight(base);
  const c = byName(created);
  t.equal(c['harbor-health'].status, 'ok');
  t.match(c['harbor-identity'].message, /user admin \(system administrator\)/);
  t.equal(c['harbor-project'].status, 'ok');
  t.match(c['harbor-project'].message, `Created private project "thinkube" on Harbor at ${s.host}`);
  t.equal(created.changed, true);
  t.equal(created.projectCreated, true);
  t.equal(created.ok, true);
  t.equal(s.state.projects.get('thinkube')?.metadata.public, 'false', 'created private, as asked');

  const again = await runPreflight(base);
  t.equal(again.changed, false, 'an existing project is not created again');
  t.match(byName(again)['harbor-project'].message, /Project "thinkube" exists on Harbor at .* \(private; uses 0 B \(no storage limit\)\)/);
  t.equal(s.requests.filter((r) => r.method === 'POST').length, 1);

  const publicByDefault = await runPreflight({ registry: s.host, project: 'shared', auth: ADMIN, createProject: true, only: ['harbor-project'] });
  t.equal(publicByDefault.projectCreated, true);
  t.equal(s.state.projects.get('shared')?.metadata.public, 'true', 'projectPublic defaults to true');
});

t.test('Harbor stand-in: wrong robot secret and no credentials', async (t) => {
  const s = await standin(t);
  const secret = 'not-the-robot-secret';
  const result = await runPreflight({ registry: s.host, auth: { username: ROBOT.username, password: secret }, only: ['registry', 'harbor-identity', 'harbor-project'] });
  const c = byName(result);
  t.equal(c.registry.status, 'failed');
  t.match(c.registry.message, 'robot$thinkube');
  t.equal(c['harbor-identity'].status, 'failed');
  t.match(c['harbor-identity'].message, /rejected the credentials of user "robot\$thinkube"/);
  t.match(c['harbor-identity'].hint, /robot secret of "robot\$thinkube"/);
  t.notMatch(JSON.stringify(result) + summarizePreflight(result), secret);

  const anonymous = await runPreflight({ registry: s.host, auth: { dockerConfig: emptyDockerConfig }, only: ['registry', 'harbor-identity'] });
  const a = byName(anonymous);
  t.equal(a.registry.status, 'failed', "Harbor's /v2/ wants credentials");
  t.equal(a['harbor-identity'].status, 'failed');
  t.match(a['harbor-identity'].message, /No credentials for Harbor at .*anonymous access cannot push/);
});

t.test('CLI: the robot name with $ survives the command line into the auth headers', async (t) => {
  const s = await standin(t, { artifacts: [{ project: 'library', repository: 'busybox', tags: ['1.35'] }] });
  const cli = path.join(repoRoot, 'bin', 'preflight.js');
  const childEnv = { ...process.env, PREFLIGHT_ROBOT_SECRET: ROBOT.password };
  const { stdout, stderr } = await run(
    process.execPath,
    [cli, '--registry', s.host, '--auth-username', 'robot$thinkube', '--auth-password-env', 'PREFLIGHT_ROBOT_SECRET', '--only', 'registry', '--only', 'harbor-identity', '--only', 'harbor-project'],
    { env: childEnv },
  );
  const out = JSON.parse(stdout);
  t.equal(out.failed, false);
  t.equal(out.changed, false);
  t.equal(out.registry_kind, 'harbor');
  t.equal(out.identity, 'robot$thinkube');
  t.match(out.checks.find((c) => c.name === 'harbor-identity').message, /robot account robot\$thinkube/);
  const token = s.requests.find((r) => r.rawPath === '/service/token');
  t.equal(token?.user, 'robot$thinkube');
  t.equal(token?.headers.authorization, `Basic ${Buffer.from('robot$thinkube:robot-secret').toString('base64')}`);
  t.ok(s.requests.filter((r) => r.rawPath.startsWith('/api/v2.0/') && r.user).every((r) => r.user === 'robot$thinkube'), 'every authenticated API call as the robot');
  t.notMatch(stdout + stderr, ROBOT.password);

  // A failed check: exit 1, the message on stderr, still every check in the JSON.
  const failed = await run(process.execPath, [cli, '--registry', s.host, '--project', 'absent', '--auth-username', 'robot$thinkube', '--auth-password-env', 'PREFLIGHT_ROBOT_SECRET', '--only', 'harbor-project', '-q'], { env: childEnv }).then(
    () => undefined,
    (error) => error,
  );
  t.equal(failed?.code, 1);
  const failedOut = JSON.parse(failed.stdout);
  t.equal(failedOut.failed, true);
  t.equal(failedOut.checks[0].status, 'failed');
  t.match(failedOut.checks[0].hint, /--create-project/, 'the hint names the option as the command line spells it');
  t.match(failed.stderr, /Error: Preflight of .* failed .*Project "absent" does not exist/);
});

t.test('Ansible module arguments: robot name, check mode, no secret in the result', async (t) => {
  const s = await standin(t);
  const argsFile = path.join(tmp, 'preflight-args.json');
  writeFileSync(
    argsFile,
    JSON.stringify({
      registry: s.host,
      project: 'newproject',
      create_project: true,
      auth: { username: 'robot$thinkube', password: ROBOT.password },
      only: ['harbor-identity', 'harbor-project'],
      _ansible_check_mode: true,
    }),
  );
  const { stdout } = await run(process.execPath, [path.join(repoRoot, 'bin', 'preflight.js'), argsFile]);
  const out = JSON.parse(stdout);
  t.equal(out.failed, false);
  t.equal(out.changed, true, 'check mode reports the project it would create as a change');
  t.equal(out.would_create_project, true);
  t.equal(out.project_created, false);
  t.match(out.checks[1].message, /would be created/);
  t.notOk(s.state.projects.has('newproject'));
  t.equal(out.invocation.module_args.auth.username, 'robot$thinkube');
  t.equal(out.invocation.module_args.auth.password, 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER');
  t.notMatch(stdout, ROBOT.password);
  t.equal(s.requests.find((r) => r.rawPath === '/api/v2.0/users/current/permissions')?.user, 'robot$thinkube');
});

t.test('pipeline option preflight: the checks run first; a failed one stops the run before anything is planned or built', async (t) => {
  const { runPipeline } = await import('../dist/lib/pipeline/pipeline.js');
  const dir = mkdtempSync(path.join(tmp, 'pipeline-preflight-'));
  writeFileSync(path.join(dir, 'bases.yaml'), 'bases:\n  - library/busybox:1.35\n  - library/missing-base:1\n');
  const image = (name, from) => {
    mkdirSync(path.join(dir, name));
    writeFileSync(path.join(dir, name, 'Dockerfile'), `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/${from}\nRUN echo ${name} > /name\n`);
    writeFileSync(path.join(dir, name, 'image.yaml'), `name: ${name}\ndisplay_name: ${name}\ndescription: Fixture ${name}\ncategory: jupyter\nmetadata:\n  default: ${name === 'pf-ok'}\n`);
  };
  image('pf-ok', 'library/busybox:1.35');
  image('pf-missing', 'library/missing-base:1');
  const options = (over) => ({ imagesDir: dir, registry: env.registryAnon, project: `pf${process.pid}`, engine: { host: env.dockerHost }, registration: { target: 'catalog', catalogPath: path.join(dir, 'catalog.json') }, preflight: true, ...over });

  const error = await runPipeline(options()).then(() => undefined, (e) => e);
  t.equal(error?.code, 'ERR_PREFLIGHT', String(error?.message));
  t.match(error.message, /base-images: .*library\/missing-base:1/, 'names the missing base');
  t.same(error.details.checks.map((c) => c.name), ['base-images'], 'the failed checks');
  const registry = new (await import('../dist/lib/registry/client.js')).RegistryClient({ registry: env.registryAnon });
  t.equal(await registry.headManifest(`pf${process.pid}/pf-ok`, 'latest'), undefined, 'pf-ok, whose base is there, was not built either');

  // Selecting the image whose base is there: the checks pass and are in the result.
  const ok = await runPipeline(options({ images: ['pf-ok'] }), { checkMode: true });
  t.equal(ok.failed, false);
  t.same(ok.preflight.checks.filter((c) => c.status === 'failed'), []);
  t.ok(ok.preflight.checks.some((c) => c.name === 'engine' && c.status === 'ok'), 'the engine was checked');
  t.ok(ok.preflight.checks.some((c) => c.name === 'base-images' && c.status === 'ok'), 'and the base images');

  // A pool of engines: the run checks each engine itself; the preflight leaves them out.
  const pool = await runPipeline(options({ images: ['pf-ok'], engine: undefined, engines: [{ name: 'local', host: env.dockerHost }] }), { checkMode: true });
  t.notOk(pool.preflight.checks.some((c) => c.name === 'engine' || c.name === 'disk'), pool.preflight.checks.map((c) => c.name).join(', '));

  // Without the option there is no preflight: the same set runs and fails only the image on the missing base.
  const off = await runPipeline(options({ preflight: false }));
  t.equal(off.preflight, undefined);
  t.same(off.images.filter((i) => i.status === 'failed').map((i) => i.name), ['pf-missing'], JSON.stringify(off.images.map((i) => [i.name, i.status, i.reason])));
});
