// buildImage against the real dockerd: options honoured (proved by inspecting the image), typed
// progress events, bounded log tail, BuildError for failing steps, and cancellation.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { buildImage } from '../dist/lib/build/build.js';
import { BuildError, ThinkubeImageError } from '../dist/lib/core/errors.js';
import { dockerFor, fixturesDir, inspectImage, readFromImage, existsInImage, removeImages, tempDir, testEnv, uniqueName, writeTree } from './fixtures/core/support.js';

const env = testEnv();
const docker = dockerFor(env.dockerHost);
const engine = { host: env.dockerHost };
const repo = `${env.registryAnon}/core/${uniqueName('build')}`;
const made = [];
const tag = (name) => {
  const ref = `${repo}:${name}`;
  made.push(ref);
  return ref;
};
t.teardown(() => removeImages(docker, made));

const FROM = `FROM ${env.busyboxImage}`;

function gitRepoCopy(t) {
  const dir = tempDir(t, 'thinkube-git-');
  cpSync(path.join(fixturesDir, 'multistage'), dir, { recursive: true });
  const git = (...args) => execFileSync('git', ['-C', dir, ...args], { encoding: 'utf8' }).trim();
  git('init', '-q');
  git('add', '-A');
  git('-c', 'user.email=test@example.invalid', '-c', 'user.name=test', 'commit', '-q', '-m', 'fixture');
  // A remote URL with a token in it: the source label must not carry the token.
  git('remote', 'add', 'origin', 'https://ci-user:tok3n-secret@example.invalid/thinkube/images.git');
  return { dir, head: git('rev-parse', 'HEAD') };
}

/** Dockerfile instructions in order (comments and blank lines dropped), as the builder numbers them. */
function instructions(file) {
  return readFileSync(file, 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
}

t.test('multi-stage fixture: build args, labels, OCI labels with git revision, events in order', async (t) => {
  const { dir, head } = gitRepoCopy(t);
  const greeting = `hola-${uniqueName('arg')}`;
  const ref = tag('full');
  const events = [];
  const result = await buildImage(
    {
      context: dir,
      tags: [ref],
      buildArgs: { HARBOR_REGISTRY: env.registryAnon, GREETING: greeting },
      labels: { 'com.example.team': 'images', 'com.example.greeting': greeting },
      engine,
    },
    { onEvent: (e) => events.push(e) },
  );

  const image = await inspectImage(docker, ref);
  t.ok(image, 'the tag exists on the engine');
  t.equal(result.imageId, image.Id, 'result names the image the tag points at');
  t.same(result.tags, [ref]);
  t.type(result.durationMs, 'number');

  // Build args reach ENV and files.
  t.ok(image.Config.Env.includes(`GREETING_ENV=${greeting}`), `ENV carries the build arg: ${image.Config.Env}`);
  t.equal((await readFromImage(ref, '/greeting')).trim(), greeting, 'RUN saw the build arg');
  t.equal(await readFromImage(ref, '/hello.txt'), 'hello from the fixture context\n', 'COPY from the context');
  t.equal((await readFromImage(ref, '/stage-final')).trim(), 'final', 'no target: the last stage is built');

  // Labels: custom + OCI, revision from the git repo, source without the token.
  const labels = image.Config.Labels;
  t.equal(labels['com.example.team'], 'images');
  t.equal(labels['com.example.greeting'], greeting);
  t.match(labels['org.opencontainers.image.created'], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
  t.ok(Math.abs(Date.parse(labels['org.opencontainers.image.created']) - Date.now()) < 10 * 60_000, 'created is now');
  t.equal(labels['org.opencontainers.image.title'], repo.split('/').pop(), 'title defaults to the repository name');
  t.equal(labels['org.opencontainers.image.revision'], head, 'revision is the git HEAD of the context');
  t.equal(labels['org.opencontainers.image.source'], 'https://example.invalid/thinkube/images.git');
  t.notOk(JSON.stringify(labels).includes('tok3n-secret'), 'no token from the remote URL in any label');
  t.same(result.labels, Object.fromEntries(Object.entries(labels).filter(([k]) => k in result.labels)), 'result.labels are what the image carries');

  // Events: context first, steps 1..N in order with one total, the image id last.
  t.equal(events[0]?.type, 'build-context');
  t.equal(events[0].files, 3, 'Dockerfile, hello.txt, .dockerignore (.git excluded)');
  const steps = events.filter((e) => e.type === 'build-step');
  t.ok(steps.length >= 8, `${steps.length} steps`);
  t.same(steps.map((s) => s.step), steps.map((_, i) => i + 1), 'steps come in order without gaps');
  t.ok(steps.every((s) => s.total === steps.length), 'every step carries the same, final total');
  t.equal(result.steps, steps.length);
  const lines = instructions(path.join(dir, 'Dockerfile'));
  t.same(steps.slice(0, lines.length).map((s) => s.instruction), lines, 'step instructions are the Dockerfile lines');
  t.equal(steps.length - lines.length, 1, 'one more step, and it sets all the labels (dockerd makes one step per request label)');
  t.ok(steps.slice(lines.length).every((s) => s.instruction.startsWith('LABEL ')), 'remaining steps set the labels');
  const imageEvents = events.filter((e) => e.type === 'build-image');
  t.same(imageEvents, [{ type: 'build-image', imageId: result.imageId }], 'one build-image event with the final id');
  t.ok(events.indexOf(imageEvents[0]) > events.indexOf(steps.at(-1)), 'the image id comes after the last step');
  t.ok(events.some((e) => e.type === 'build-log' && e.line.startsWith('Successfully built')), 'log lines are events');
});

t.test('target stops at the named stage; without git there is no revision label', async (t) => {
  const dir = tempDir(t);
  cpSync(path.join(fixturesDir, 'multistage'), dir, { recursive: true });
  const ref = tag('base');
  const result = await buildImage({
    context: dir,
    tags: [ref],
    target: 'base',
    version: '1.2.3',
    title: 'Core fixture',
    buildArgs: { HARBOR_REGISTRY: env.registryAnon },
    engine,
  });
  t.equal((await readFromImage(ref, '/stage-base')).trim(), 'base', 'the target stage ran');
  t.notOk(await existsInImage(ref, '/stage-final'), 'the later stage did not run');
  t.equal((await readFromImage(ref, '/greeting')).trim(), 'unset', 'ARG default when no build arg is given');
  const labels = (await inspectImage(docker, ref)).Config.Labels;
  t.equal(labels['org.opencontainers.image.version'], '1.2.3');
  t.equal(labels['org.opencontainers.image.title'], 'Core fixture');
  t.notOk('org.opencontainers.image.revision' in labels, 'no revision outside a git repository');
  t.ok(result.steps < 10, 'fewer steps than the full build');
});

t.test('ociLabels false adds none; SOURCE_DATE_EPOCH makes rebuilds identical; noCache rebuilds', async (t) => {
  const dir = writeTree(tempDir(t), { Dockerfile: `${FROM}\nRUN echo ${uniqueName('cache')} > /marker\n` });
  const plain = await buildImage({ context: dir, tags: [tag('plain')], ociLabels: false, engine });
  t.same(plain.labels, {});
  const plainLabels = (await inspectImage(docker, `${repo}:plain`)).Config.Labels ?? {};
  t.notOk(Object.keys(plainLabels).some((k) => k.startsWith('org.opencontainers.')), 'no OCI labels on the image');

  const saved = process.env.SOURCE_DATE_EPOCH;
  process.env.SOURCE_DATE_EPOCH = '1700000000';
  t.teardown(() => {
    if (saved === undefined) delete process.env.SOURCE_DATE_EPOCH;
    else process.env.SOURCE_DATE_EPOCH = saved;
  });
  const first = await buildImage({ context: dir, tags: [tag('repro')], engine });
  t.equal(first.labels['org.opencontainers.image.created'], '2023-11-14T22:13:20.000Z');
  const second = await buildImage({ context: dir, tags: [tag('repro')], engine });
  t.equal(second.imageId, first.imageId, 'same inputs, same image');
  t.ok(second.logTail.some((l) => l.includes('Using cache')), 'the rebuild used the cache');
  const fresh = await buildImage({ context: dir, tags: [tag('fresh')], noCache: true, engine });
  t.notOk(fresh.logTail.some((l) => l.includes('Using cache')), 'noCache: no cached step');
  t.not(fresh.imageId, first.imageId);
});

t.test('dockerd: the labels in one LABEL step on a Dockerfile COPY . never sees; a quote in a value keeps the request labels', async (t) => {
  const dockerfile = `${FROM}\nCOPY . /ctx\nRUN find /ctx | sort > /list\n`;
  const context = writeTree(tempDir(t), { Dockerfile: dockerfile, 'a.txt': 'a\n' });
  const steps = [];
  const onEvent = (e) => e.type === 'build-step' && steps.push(e.instruction);
  const one = tag('one-label-step');
  const result = await buildImage({ context, tags: [one], labels: { 'com.example.a': 'x y', 'com.example.b': '$HOME' }, engine }, { onEvent });
  t.same(steps.filter((s) => s.startsWith('LABEL ')).length, 1, `one LABEL step: ${steps.join(' | ')}`);
  t.equal(await readFromImage(one, '/list'), '/ctx\n/ctx/Dockerfile\n/ctx/a.txt\n', 'COPY . sees the context files only');
  t.equal(await readFromImage(one, '/ctx/Dockerfile'), dockerfile, 'the Dockerfile in the image is the one in the context, unchanged');
  const labels = (await inspectImage(docker, one)).Config.Labels;
  t.equal(labels['com.example.a'], 'x y');
  t.equal(labels['com.example.b'], '$HOME', 'no variable expansion in a label value');
  t.equal(labels['org.opencontainers.image.title'], result.labels['org.opencontainers.image.title']);

  steps.length = 0;
  const quoted = tag('quoted-label');
  await buildImage({ context, tags: [quoted], labels: { 'com.example.quote': "it's" }, engine }, { onEvent });
  t.ok(steps.filter((s) => s.startsWith('LABEL ')).length > 1, `the request's labels, a step each: ${steps.join(' | ')}`);
  t.equal((await inspectImage(docker, quoted)).Config.Labels['com.example.quote'], "it's", 'the label is on the image all the same');
});

t.test('Dockerfile outside the context (absolute path) and in a subfolder of it', async (t) => {
  const context = writeTree(tempDir(t), { 'hello.txt': 'hi\n', 'docker/Dockerfile.alt': `${FROM}\nCOPY hello.txt /from-sub\n` });
  const elsewhere = writeTree(tempDir(t), { 'Dockerfile.out': `${FROM}\nCOPY . /ctx\nRUN find /ctx | sort > /list\n` });
  const outside = tag('outside');
  const result = await buildImage({ context, dockerfile: path.join(elsewhere, 'Dockerfile.out'), tags: [outside], engine });
  t.equal(result.context.files, 2, 'the outside Dockerfile is not counted as context');
  t.equal(
    await readFromImage(outside, '/list'),
    '/ctx\n/ctx/docker\n/ctx/docker/Dockerfile.alt\n/ctx/hello.txt\n',
    'COPY . sees exactly the context: neither the outside Dockerfile nor a generated .dockerignore',
  );
  const sub = tag('sub');
  await buildImage({ context, dockerfile: 'docker/Dockerfile.alt', tags: [sub], engine });
  t.equal(await readFromImage(sub, '/from-sub'), 'hi\n');
});

t.test('20,000 lines of RUN output: every line is an event, the tail stays bounded', async (t) => {
  const dir = writeTree(tempDir(t), { Dockerfile: `${FROM}\nRUN seq 1 20000 && echo ${uniqueName('seq')} > /after-seq\n` });
  const ref = tag('long');
  let numbered = 0;
  let last;
  const result = await buildImage(
    { context: dir, tags: [ref], engine },
    {
      onEvent: (e) => {
        if (e.type === 'build-log' && /^\d+$/.test(e.line)) {
          numbered++;
          last = e.line;
        }
      },
    },
  );
  t.equal(numbered, 20000, 'all lines streamed as events');
  t.equal(last, '20000');
  t.ok(result.logTail.length > 0 && result.logTail.length <= 100, `logTail has ${result.logTail.length} lines`);
  t.notOk(result.logTail.includes('1'), 'early lines dropped from the tail');
  t.match(result.logTail.at(-1), /^Successfully tagged /);
  t.equal(result.imageId, (await inspectImage(docker, ref)).Id);
  t.match(await readFromImage(ref, '/after-seq'), /^seq-/, 'the step after the output ran');
});

t.test('a failing RUN gives a BuildError naming the step, with the log tail', async (t) => {
  const dir = writeTree(tempDir(t), {
    Dockerfile: `${FROM}\nRUN echo one\nRUN echo before-fail && exit 3\nRUN echo never-reached\n`,
  });
  const ref = tag('fail');
  const error = await buildImage({ context: dir, tags: [ref], ociLabels: false, engine }).then(
    () => undefined,
    (e) => e,
  );
  t.ok(error instanceof BuildError, `BuildError, got ${error}`);
  t.ok(error instanceof ThinkubeImageError);
  t.equal(error.code, 'ERR_BUILD_FAILED');
  t.equal(error.step, 'Step 3/4 : RUN echo before-fail && exit 3');
  t.ok(error.logTail.includes('before-fail'), 'the output of the failing step is in the tail');
  t.notOk(error.logTail.some((l) => l.includes('never-reached') && !l.includes('RUN')), 'nothing after the failure ran');
  t.match(error.message, ref, 'message names the image');
  t.match(error.message, 'Step 3/4 : RUN echo before-fail && exit 3');
  t.match(error.message, /non-zero code: 3/);
  t.ok(error.hint, 'has a hint');
  const json = JSON.parse(JSON.stringify(error));
  t.equal(json.code, 'ERR_BUILD_FAILED');
  t.equal(json.step, error.step);
  t.notOk(await inspectImage(docker, ref), 'no image tagged');
});

t.test('Dockerfile syntax errors and unknown targets give a clear BuildError', async (t) => {
  const dir = writeTree(tempDir(t), { Dockerfile: `${FROM}\nRUNX echo nope\n` });
  const syntax = await buildImage({ context: dir, tags: [tag('syntax')], engine }).catch((e) => e);
  t.ok(syntax instanceof BuildError, `BuildError, got ${syntax}`);
  t.equal(syntax.code, 'ERR_BUILD_FAILED');
  t.match(syntax.message, /line 2/, 'names the line');
  t.match(syntax.message, /RUNX/, 'names the instruction');
  t.notMatch(syntax.message, /HTTP code|undefined|\[object/, 'no transport noise');
  t.ok(syntax.hint);

  writeFileSync(path.join(dir, 'Dockerfile'), `${FROM} AS only\nRUN true\n`);
  const target = await buildImage({ context: dir, tags: [tag('target')], target: 'missing-stage', engine }).catch((e) => e);
  t.ok(target instanceof BuildError, `BuildError, got ${target}`);
  t.match(target.message, /missing-stage/, 'names the target');
});

t.test('AbortSignal cancels a running RUN step on the daemon', async (t) => {
  const marker = uniqueName('abort');
  // The step prints a second line only if it runs to its end: then the abort did not cut it.
  const dir = writeTree(tempDir(t), { Dockerfile: `${FROM}\nRUN echo ${marker} && sleep 30 && echo ${marker}-finished\n` });
  const ref = tag('abort');
  const controller = new AbortController();
  let aborted = false;
  const lines = [];
  const error = await buildImage(
    { context: dir, tags: [ref], engine },
    {
      signal: controller.signal,
      onEvent: (e) => {
        if (e.type === 'build-log') lines.push(e.line);
        // Abort once the RUN is really running (its output arrived).
        if (!aborted && e.type === 'build-log' && e.line === marker) {
          aborted = true;
          controller.abort();
        }
      },
    },
  ).catch((e) => e);
  t.ok(aborted, 'the RUN step started');
  t.ok(error instanceof ThinkubeImageError, `typed error, got ${error}`);
  t.equal(error.code, 'ERR_ABORTED');
  t.match(error.message, /cancelled/);
  t.match(error.message, /RUN echo/, 'names the step it was in');
  t.notOk(lines.includes(`${marker}-finished`), 'the step was cut: it never reached its end');

  // The daemon must stop the step's container: poll for up to 10 s.
  const ours = async (all) => (await docker.listContainers({ all })).filter((c) => c.Command.includes(marker));
  let running = await ours(false);
  for (let i = 0; i < 50 && running.length; i++) {
    await new Promise((r) => setTimeout(r, 200));
    running = await ours(false);
  }
  t.same(running.map((c) => c.Id), [], 'no running container of the build');
  let left = await ours(true);
  for (let i = 0; i < 25 && left.length; i++) {
    await new Promise((r) => setTimeout(r, 200));
    left = await ours(true);
  }
  t.same(left.map((c) => `${c.Id} ${c.State}`), [], 'the intermediate container is removed too');
  t.notOk(await inspectImage(docker, ref), 'no image tagged');

  const early = new AbortController();
  early.abort();
  const before = await buildImage({ context: dir, tags: [ref], engine }, { signal: early.signal }).catch((e) => e);
  t.equal(before.code, 'ERR_ABORTED', 'an already aborted signal starts nothing');
});
