// Secrets of any length are redacted; the commands refuse secrets too short to redact without
// masking ordinary text, before they contact anything, and never print them doing so.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { Redactor, REDACTED } from '../dist/lib/core/redact.js';
import { MIN_SECRET_LENGTH } from '../dist/lib/core/secrets.js';
import { buildImage } from '../dist/lib/build/build.js';
import { repoRoot, testEnv, uniqueName } from './helpers/env.js';

const run = promisify(execFile);
const NO_ENGINE = 'unix:///nonexistent/docker.sock';

function tmp(t) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tk-redact-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Run a bin/ script; its exit code, stdout (one JSON line) and stderr. */
async function script(file, args, env = {}) {
  try {
    const { stdout, stderr } = await run(process.execPath, [path.join(repoRoot, 'bin', file), ...args], { cwd: repoRoot, env: { ...process.env, ...env } });
    return { code: 0, stdout, stderr };
  } catch (error) {
    if (typeof error.code !== 'number') throw error;
    return { code: error.code, stdout: error.stdout, stderr: error.stderr };
  }
}

function oneJson(t, stdout) {
  const lines = stdout.trim().split('\n');
  t.equal(lines.length, 1, 'one line of JSON on stdout');
  return JSON.parse(lines[0]);
}

t.test('every non-empty secret is redacted, however short, with its encodings', async (t) => {
  const r = new Redactor().add('').add(undefined);
  t.equal(r.size, 0, 'nothing to redact for an empty secret');
  r.add('Zq', 'bob').add('7');
  t.equal(r.redact('pw=Zq n=7 ok'), `pw=${REDACTED} n=${REDACTED} ok`);
  t.equal(r.redact(`Basic ${Buffer.from('bob:Zq').toString('base64')}`), `Basic ${REDACTED}`, 'the Basic encoding of a short password');
  t.equal(r.redact('a%2Fb'), 'a%2Fb');
  t.equal(new Redactor().add('/').redact(`${encodeURIComponent('/')} /`), `${REDACTED} ${REDACTED}`, 'its URL encoding');
});

t.test('redactValue stays valid JSON whatever the secret holds, and redacts keys too', async (t) => {
  const value = { msg: 'say "hi" {ok}', list: ['a:b', 'c'], nested: { 'key-Zq': 'Zq', n: 7, yes: true, none: null } };
  for (const secret of ['"', '{', ':', '\\', 'Zq', '"hi"']) {
    const copy = new Redactor().add(secret).redactValue(value);
    const text = JSON.stringify(copy);
    t.same(JSON.parse(text), copy, `${secret}: still JSON`);
    const strings = [];
    const walk = (node) => {
      if (typeof node === 'string') strings.push(node);
      else if (node && typeof node === 'object') for (const [k, v] of Object.entries(node)) strings.push(k), walk(v);
    };
    walk(copy);
    t.notOk(strings.some((s) => s.includes(secret)), `${secret}: in no string or key`);
    t.equal(copy.nested.n, 7, 'numbers stay numbers');
    t.equal(copy.nested.yes, true);
  }
  const copy = new Redactor().add('Zq').redactValue(value);
  t.same(copy.nested, { [`key-${REDACTED}`]: REDACTED, n: 7, yes: true, none: null });
  t.equal(value.nested.n, 7, 'the original is left alone');
  t.same(new Redactor().add('x').redactValue({ ['__proto__']: 'x' }), JSON.parse(`{"__proto__":"${REDACTED}"}`), 'a __proto__ key stays a key');
});

t.test(`commands refuse a secret shorter than ${MIN_SECRET_LENGTH} characters before contacting anything, naming the option`, async (t) => {
  const dir = tmp(t);
  const file = path.join(dir, 'password');
  const tag = 'localhost:1/redact/x:1';
  const short = 'Zq'.padEnd(MIN_SECRET_LENGTH - 1, 'Q');
  writeFileSync(file, `${short}\n`);
  const cases = [
    ['--auth-password-env', ['push.js', ['--tag', tag, '--auth-username', 'bob', '--auth-password-env', 'SHORT_PW', '--engine-host', NO_ENGINE]], '--auth-password'],
    ['--auth-password-file', ['push.js', ['--tag', tag, '--auth-username', 'bob', '--auth-password-file', file, '--engine-host', NO_ENGINE]], '--auth-password'],
    ['a declared secret build arg', ['build.js', [dir, '--tag', tag, '--build-arg', `PLAIN=${short}`, '--secret-build-arg', 'PLAIN', '--engine-host', NO_ENGINE]], '--build-arg PLAIN'],
    ['a password in a URL', ['build.js', [dir, '--tag', tag, '--build-arg', `PIP_INDEX_URL=https://bob:${short}@pypi.example.com/simple`, '--engine-host', NO_ENGINE]], '--build-arg PIP_INDEX_URL'],
  ];
  for (const [what, [bin, args], field] of cases) {
    const r = await script(bin, args, { SHORT_PW: short });
    t.equal(r.code, 1, `${what}: exit 1`);
    const result = oneJson(t, r.stdout);
    t.equal(result.error_code, 'ERR_INVALID_OPTIONS', `${what}: refused, not an engine error (nothing was contacted)`);
    t.same(result.problems.map((p) => p.field), [field], what);
    t.match(result.msg, `${field}: `);
    t.match(result.msg, `shorter than ${MIN_SECRET_LENGTH} characters`);
    t.match(r.stderr, `Error: Invalid ${bin.replace('.js', '')} options: ${field}`);
    t.notOk((r.stdout + r.stderr).includes(short), `${what}: the secret is not printed`);
  }

  // One character longer is taken: the run goes on to the engine, which is not there.
  const long = 'Zq'.padEnd(MIN_SECRET_LENGTH, 'Q');
  const r = await script('push.js', ['--tag', tag, '--auth-username', 'bob', '--auth-password-env', 'LONG_PW', '--engine-host', NO_ENGINE], { LONG_PW: long });
  t.equal(r.code, 1);
  const taken = oneJson(t, r.stdout);
  t.not(taken.error_code, 'ERR_INVALID_OPTIONS', `${MIN_SECRET_LENGTH} characters are enough: the push went on (${taken.msg})`);
  t.notMatch(taken.msg, /auth-password/);
  t.notOk((r.stdout + r.stderr).includes(long));

  // A short value of a build arg that only looks like a secret by its name is a setting
  // (USE_AUTH=1): warned about, neither refused nor masked all over the output.
  const setting = await script('build.js', [dir, '--tag', tag, '--build-arg', 'USE_AUTH=1', '--engine-host', NO_ENGINE]);
  const settingResult = oneJson(t, setting.stdout);
  t.not(settingResult.error_code, 'ERR_INVALID_OPTIONS', `a short setting named like a secret is taken (${settingResult.msg})`);
  t.notMatch(setting.stdout, /\*{8}/, 'nothing is masked');
  t.match(setting.stdout, /"error_code":"ERR_CONTEXT"/, 'it went on to read the context');

  // As an Ansible module: the option in snake_case, the invocation without the value.
  const args = path.join(dir, 'args.json');
  writeFileSync(args, JSON.stringify({ context: dir, tags: [tag], engine: { host: NO_ENGINE }, auth: { username: 'bob', password: short }, build_args: { HF_TOKEN: `${short}${short}`, PLAIN: 'visible' }, secret_build_args: ['PLAIN2'] }));
  const m = await script('build.js', [args]);
  t.equal(m.code, 1);
  const result = oneJson(t, m.stdout);
  t.same(result.problems.map((p) => p.field), ['auth.password']);
  t.equal(result.invocation.module_args.auth.password, 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER');
  t.equal(result.invocation.module_args.build_args.HF_TOKEN, REDACTED, 'a secret-looking build arg of secret length is masked');
  t.equal(result.invocation.module_args.build_args.PLAIN, 'visible');
  t.notOk(m.stdout.includes(short));
});

t.test('a one-character secret: refused, and still nowhere in the output (at the price of every such letter)', async (t) => {
  const r = await script('push.js', ['--tag', 'localhost:1/redact/x:1', '--auth-username', 'bob', '--auth-password-env', 'ONE', '--engine-host', NO_ENGINE], { ONE: 'e' });
  t.equal(r.code, 1);
  const result = oneJson(t, r.stdout);
  // The JSON literals true and false are syntax, not text: every string and key is masked.
  t.notOk(r.stdout.replace(/\b(true|false)\b/g, '').includes('e'), 'no "e" in any string or key of the result');
  t.notOk(r.stderr.includes('e'), 'nor on stderr');
  t.equal(result[`fail${REDACTED}d`], true, 'the result is still JSON, its keys masked too');
  t.match(r.stderr, /^Error: Invalid push options: --auth-password: is short\*{8}r than 8/);
});

t.test('library: a short secret build arg is redacted from the build log, events and the error', async (t) => {
  const env = testEnv();
  const ctx = tmp(t);
  const secret = 'Zq';
  writeFileSync(path.join(ctx, 'Dockerfile'), `FROM ${env.busyboxImage}\nARG PLAIN\nRUN echo "v=$PLAIN" && exit 3\n`);
  const events = [];
  const tag = `${env.registryAnon}/redact/${uniqueName('short')}:1`;
  const error = await buildImage({ context: ctx, tags: [tag], engine: { host: env.dockerHost }, buildArgs: { PLAIN: secret }, secretBuildArgs: ['PLAIN'] }, { onEvent: (e) => events.push(e) }).catch((e) => e);
  t.equal(error.code, 'ERR_BUILD_FAILED');
  t.ok(error.logTail.includes(`v=${REDACTED}`), 'the echoed line is there, redacted');
  t.notOk(JSON.stringify({ events, message: error.message, details: error.details }).includes(secret), 'the secret is in no event, message or detail');
});
