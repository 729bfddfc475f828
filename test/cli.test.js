// bin/build.js and bin/push.js as a person and as Ansible run them: flags in, exactly one JSON
// object on stdout, progress on stderr, secrets never printed; the bundled modules run alone.
import t from 'tap';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { buildImage } from '../dist/lib/build/build.js';
import { dockerFor, fixturesDir, inspectImage, registryDigest, removeImages, repoRoot, runNode, tempDir, testEnv, uniqueName, writeTree } from './fixtures/core/support.js';

const env = testEnv();
const docker = dockerFor(env.dockerHost);
const repo = `${env.registryAnon}/core/${uniqueName('cli')}`;
const authRepo = `${env.registryAuth}/core/${uniqueName('cli')}`;
const made = [];
t.teardown(() => removeImages(docker, made));

const BUILD = path.join(repoRoot, 'bin', 'build.js');
const PUSH = path.join(repoRoot, 'bin', 'push.js');
const STACK_LINE = /\n\s+at .+\(?.*:\d+:\d+\)?/;

/** stdout must be exactly one JSON object (one line); returns it parsed. */
function oneJson(t, stdout) {
  const lines = stdout.split('\n').filter((l) => l.trim() !== '');
  t.equal(lines.length, 1, `exactly one line on stdout, got ${lines.length}: ${stdout.slice(0, 300)}`);
  const result = JSON.parse(lines[0]);
  t.equal(typeof result, 'object');
  t.notOk(['stream', 'aux', 'progressDetail', 'errorDetail'].some((k) => k in result), 'not a Docker progress line');
  return result;
}

t.test('--help exits 0 and lists the flags', async (t) => {
  const build = await runNode([BUILD, '--help']);
  t.equal(build.code, 0);
  t.match(build.stdout, /^Usage: /);
  t.match(build.stdout, /--tag VALUE/);
  t.match(build.stdout, /--build-arg KEY=VALUE/);
  t.match(build.stdout, /--check/);
  const push = await runNode([PUSH, '--help']);
  t.equal(push.code, 0);
  t.match(push.stdout, /--auth-password-env VAR/);
});

t.test('a build through the CLI: one JSON object on stdout, progress on stderr', async (t) => {
  const ref = `${repo}:built`;
  made.push(ref);
  const r = await runNode([
    BUILD,
    path.join(fixturesDir, 'multistage'),
    '--tag', ref,
    '--build-arg', `HARBOR_REGISTRY=${env.registryAnon}`,
    '--build-arg', 'GREETING=from-cli',
    '--label', 'com.example.via=cli',
    '--target', 'base',
    '--engine-host', env.dockerHost,
  ]);
  t.equal(r.code, 0, r.stderr);
  const result = oneJson(t, r.stdout);
  t.equal(result.failed, false);
  t.equal(result.changed, true);
  t.match(result.image_id, /^sha256:[0-9a-f]{64}$/);
  t.same(result.tags, [ref]);
  const image = await inspectImage(docker, ref);
  t.equal(image?.Id, result.image_id, 'image_id is the built image');
  t.equal(image.Config.Labels['com.example.via'], 'cli');
  t.ok(image.Config.Env.includes('GREETING_ENV=from-cli'));
  t.match(r.stderr, /Step 1\/\d+ : ARG HARBOR_REGISTRY/, 'human progress on stderr');
  t.notMatch(r.stderr, /"stream"/, 'no raw engine JSON on stderr either');
});

t.test('--check reports a change and builds nothing', async (t) => {
  const ref = `${repo}:checked`;
  made.push(ref);
  const r = await runNode([BUILD, path.join(fixturesDir, 'multistage'), '--tag', ref, '--build-arg', `HARBOR_REGISTRY=${env.registryAnon}`, '--engine-host', env.dockerHost, '--check']);
  t.equal(r.code, 0, r.stderr);
  const result = oneJson(t, r.stdout);
  t.equal(result.changed, true);
  t.equal(result.failed, false);
  t.match(result.msg, /Would build/);
  t.equal(await inspectImage(docker, ref), undefined, 'no image afterwards');
});

t.test('bad flags exit 2 with a clear message; a failed build exits 1 without a stack trace', async (t) => {
  const cases = [
    [['--bogus'], /Unknown option --bogus/],
    [['.', '--build-arg', 'NOEQUALS'], /--build-arg needs KEY=VALUE/],
    [['.', '--engine-timeout-seconds', 'soon'], /--engine-timeout-seconds needs a number/],
    [['.', '--no-cache=maybe'], /--no-cache needs true or false/],
    [['a', 'b'], /Unexpected argument "b"/],
  ];
  for (const [args, message] of cases) {
    const r = await runNode([BUILD, ...args]);
    t.equal(r.code, 2, `${args.join(' ')} exits 2`);
    t.match(r.stderr, message);
    const result = oneJson(t, r.stdout);
    t.equal(result.failed, true);
    t.match(result.msg, message);
  }

  const missing = await runNode([BUILD, '/tmp', '--engine-host', env.dockerHost]);
  t.equal(missing.code, 1);
  t.match(oneJson(t, missing.stdout).msg, /--tags: is required/, 'names the flag');

  const dir = writeTree(tempDir(t), { Dockerfile: `FROM ${env.busyboxImage}\nRUN echo cli-before-fail && exit 5\n` });
  const ref = `${repo}:fails`;
  made.push(ref);
  const failed = await runNode([BUILD, dir, '--tag', ref, '--engine-host', env.dockerHost]);
  t.equal(failed.code, 1);
  const result = oneJson(t, failed.stdout);
  t.equal(result.failed, true);
  t.equal(result.error_code, 'ERR_BUILD_FAILED');
  t.match(result.step, /RUN echo cli-before-fail && exit 5/);
  t.ok(result.log_tail.includes('cli-before-fail'), 'log tail in the result');
  t.match(failed.stderr, /Error: Build of .* failed at Step 2\//);
  t.notMatch(failed.stdout + failed.stderr, STACK_LINE, 'no stack trace');
});

t.test('bin/push.js: the password never appears on stdout or stderr', async (t) => {
  const dir = writeTree(tempDir(t), { Dockerfile: `FROM ${env.busyboxImage}\nRUN echo ${uniqueName('cli-push')} > /u\n` });
  const ref = `${authRepo}:1`;
  made.push(ref);
  await buildImage({ context: dir, tags: [ref], engine: { host: env.dockerHost } });

  const wrong = `Wr0ng-${uniqueName('pw')}`;
  const secretFile = path.join(tempDir(t), 'password');
  writeFileSync(secretFile, `${wrong}\n`);
  // verify=true fails at the registry HEAD (our client), verify=false inside the engine's push.
  const variants = [
    ['--auth-password-env', 'THINKUBE_TEST_PUSH_PASSWORD', ['true', 'false']],
    ['--auth-password-file', secretFile, ['false']],
    ['--auth-password', wrong, ['true']],
  ];
  for (const [flag, value, verifies] of variants) {
    for (const verify of verifies) {
      const r = await runNode([PUSH, '--tag', ref, '--auth-username', env.registryUser, flag, value, `--verify=${verify}`, '--engine-host', env.dockerHost], {
        env: { ...process.env, THINKUBE_TEST_PUSH_PASSWORD: wrong },
      });
      t.equal(r.code, 1, `${flag} verify=${verify} fails`);
      const result = oneJson(t, r.stdout);
      t.equal(result.error_code, 'ERR_REGISTRY_AUTH');
      t.match(result.msg, env.registryAuth);
      t.match(result.msg, env.registryUser);
      const everything = r.stdout + r.stderr;
      t.notOk(everything.includes(wrong), `password not printed (${flag}, verify=${verify})`);
      t.notOk(everything.includes(Buffer.from(`${env.registryUser}:${wrong}`).toString('base64')), 'nor its Basic encoding');
      t.notMatch(everything, STACK_LINE);
    }
  }

  const ok = await runNode([PUSH, '--tag', ref, '--auth-username', env.registryUser, '--auth-password-env', 'THINKUBE_TEST_PUSH_PASSWORD', '--engine-host', env.dockerHost], {
    env: { ...process.env, THINKUBE_TEST_PUSH_PASSWORD: env.registryPassword },
  });
  t.equal(ok.code, 0, ok.stderr);
  const pushed = oneJson(t, ok.stdout);
  const credentials = { username: env.registryUser, password: env.registryPassword };
  t.equal(pushed.digest, (await registryDigest(env.registryAuth, ref.slice(env.registryAuth.length + 1).split(':')[0], '1', credentials)).digest);
  t.equal(pushed.changed, true);
  t.notOk((ok.stdout + ok.stderr).includes(env.registryPassword), 'the right password is not printed either');
});

/** Copy a bundled module ALONE into an empty folder, as Ansible does, and run it with an args file. */
async function runModule(t, module, args) {
  const dir = tempDir(t, 'thinkube-ansible-');
  const file = path.join(dir, `AnsiballZ_${module}.cjs`);
  copyFileSync(path.join(repoRoot, 'ansible', 'library', `${module}.cjs`), file);
  const argsFile = path.join(dir, 'args');
  writeFileSync(
    argsFile,
    JSON.stringify({
      ...args,
      _ansible_check_mode: args._ansible_check_mode ?? false,
      _ansible_diff: false,
      _ansible_no_log: false,
      _ansible_verbosity: 0,
      _ansible_version: '2.14.3',
      _ansible_module_name: module,
      _ansible_tmpdir: dir,
      _ansible_remote_tmp: '~/.ansible/tmp',
      _ansible_keep_remote_files: false,
      _ansible_selinux_special_fs: ['fuse', 'nfs'],
      _ansible_string_conversion_action: 'warn',
      _ansible_debug: false,
    }),
  );
  // Run by this Node with the args file, as Ansible does (with ansible_node_interpreter); NODE_PATH empty so nothing outside the file can help.
  const r = await runNode([file, argsFile], { cwd: dir, env: { ...process.env, NODE_PATH: '' } });
  t.match(readFileSync(file, 'utf8'), /WANT_JSON/, 'the module asks Ansible for a JSON args file');
  return r;
}

t.test('the bundled build module runs alone from an empty folder', async (t) => {
  const ref = `${repo}:ansible`;
  made.push(ref);
  const args = {
    context: path.join(fixturesDir, 'multistage'),
    tags: [ref],
    build_args: { HARBOR_REGISTRY: env.registryAnon, GREETING: 'from-ansible' },
    labels: { 'com.example.via': 'ansible' },
    oci_labels: true,
    no_cache: false,
    engine: { host: env.dockerHost, timeout_seconds: 60 },
  };
  const check = await runModule(t, 'thinkube_image_build', { ...args, _ansible_check_mode: true });
  const checked = oneJson(t, check.stdout);
  t.equal(checked.failed, false, check.stderr);
  t.equal(checked.changed, true);
  t.equal(await inspectImage(docker, ref), undefined, 'check mode built nothing');

  const run = await runModule(t, 'thinkube_image_build', args);
  const result = oneJson(t, run.stdout);
  t.equal(result.failed, false, `${result.msg} ${run.stderr}`);
  t.equal(run.code, 0);
  t.equal(result.changed, true);
  const image = await inspectImage(docker, ref);
  t.equal(image?.Id, result.image_id);
  t.ok(image.Config.Env.includes('GREETING_ENV=from-ansible'), 'snake_case build_args reached the build');
  t.equal(image.Config.Labels['com.example.via'], 'ansible');
  t.ok(Array.isArray(result.stdout_lines) && result.stdout_lines.length <= 100);
  t.notOk(Object.keys(result.invocation.module_args).some((k) => k.startsWith('_ansible')), 'invocation holds no internal keys');
  t.same(result.invocation.module_args.build_args, args.build_args);

  const invalid = [
    [{ ...args, no_cache: 'sometimes' }, 'no_cache'],
    [{ ...args, dockerfile_path: 'x' }, 'dockerfile_path'],
    [{ ...args, engine: { host: env.dockerHost, timeout_seconds: 'x' } }, 'engine.timeout_seconds'],
    [{ tags: [ref], engine: args.engine }, 'context'],
  ];
  for (const [bad, field] of invalid) {
    const r = await runModule(t, 'thinkube_image_build', bad);
    const out = oneJson(t, r.stdout);
    t.equal(out.failed, true, field);
    t.equal(out.error_code, 'ERR_INVALID_OPTIONS');
    t.ok(out.msg.includes(`${field}:`), `msg names ${field}: ${out.msg}`);
    t.notMatch(r.stdout + r.stderr, STACK_LINE, 'no stack trace');
  }
  // A map value of the wrong type: the field is named by the map and the user's own key.
  const mapValue = oneJson(t, (await runModule(t, 'thinkube_image_build', { ...args, build_args: { HARBOR_REGISTRY: 5 } })).stdout);
  t.equal(mapValue.failed, true);
  t.match(mapValue.msg, /build_args\./, 'names build_args');
  t.match(mapValue.msg, /build_args\.HARBOR_REGISTRY: must be string/, 'the user key is kept as written');
});

t.test('the bundled push module hides the password (no_log) and names the user', async (t) => {
  const password = `Wr0ng-${uniqueName('pw')}`;
  const ref = `${authRepo}:1`; // built by the push CLI test above
  const r = await runModule(t, 'thinkube_image_push', {
    tags: [ref],
    auth: { username: env.registryUser, password },
    engine: { host: env.dockerHost },
  });
  const result = oneJson(t, r.stdout);
  t.equal(result.failed, true);
  t.equal(result.error_code, 'ERR_REGISTRY_AUTH');
  t.match(result.msg, env.registryUser);
  t.equal(result.invocation.module_args.auth.password, 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER');
  t.notOk((r.stdout + r.stderr).includes(password), 'password absent from the module output');
});
