// Defaults come from the JSON Schemas on every path, validated or not. This process changes the
// schemas' defaults before anything is validated (the generated validators read each default from
// the schema documents when they fill it in), so a value copied into the code would show as the
// old number in the messages checked below.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { schemaDocuments } from '../dist/lib/options/generated/schemas.js';
import { schemaDefault } from '../dist/lib/options/defaults.js';
import { validate } from '../dist/lib/options/schema.js';
import { connectEngine } from '../dist/lib/engine/engine.js';
import { EnginePool } from '../dist/lib/engine/pool.js';
import { scanContext } from '../dist/lib/source/context.js';
import { buildImage, runBuild } from '../dist/lib/build/build.js';
import { pushImage, runPush } from '../dist/lib/engine/push.js';
import { runPipeline } from '../dist/lib/pipeline/pipeline.js';
import { runPreflight, runValidatedPreflight } from '../dist/lib/pipeline/preflight.js';
import { startFaultProxy } from './helpers/fault-proxy.js';
import { testEnv, uniqueName } from './helpers/env.js';

const env = testEnv();
const engineOptions = { host: env.dockerHost };
process.env.THINKUBE_IMAGES_LOCK_DIR = mkdtempSync(path.join(os.tmpdir(), 'tk-defaults-locks-'));

const docs = schemaDocuments;
const original = {
  buildStall: docs['build-options.schema.json'].properties.stallTimeoutSeconds.default,
  pushStall: docs['push-options.schema.json'].properties.stallTimeoutSeconds.default,
};
docs['build-options.schema.json'].properties.stallTimeoutSeconds.default = 2;
docs['build-options.schema.json'].properties.maxContextBytes.default = 1024;
docs['push-options.schema.json'].properties.stallTimeoutSeconds.default = 3;
docs['common.schema.json'].definitions.engine.properties.timeoutSeconds.default = 7;
docs['engine-pool.schema.json'].definitions.engineSpec.properties.concurrency.default = 5;
docs['preflight-options.schema.json'].properties.minFreeGb.default = 0.001;

function tmp(t) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tk-defaults-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('the defaults written in the schemas: one push stall timeout, one build stall timeout', async (t) => {
  t.equal(original.pushStall, 600, 'push-options: 600 s without progress');
  t.equal(original.buildStall, 1800, 'build-options: 1800 s without output');
  t.equal(docs['pipeline-options.schema.json'].properties.stallTimeoutSeconds.$ref, 'build-options.schema.json#/properties/stallTimeoutSeconds', "the pipeline's is the build's, not a copy");
  t.equal(schemaDefault('push-options.schema.json', 'properties/stallTimeoutSeconds'), 3, 'read from the schema at each call');
  t.throws(() => schemaDefault('build-options.schema.json', 'properties/tags'), /has no default at properties\/tags/);
});

t.test('engine timeout and engine concurrency', async (t) => {
  t.equal(connectEngine({ host: env.dockerHost }).timeoutMs, 7000, 'connectEngine without timeoutSeconds');
  t.equal(validate('build-options.schema.json', { context: '.', tags: ['x.example.com/a/b:1'], engine: {} }).engine.timeoutSeconds, 7, 'validated options carry it');
  t.same(EnginePool.fromSpecs([{ name: 'one', host: env.dockerHost }]).stats().map((s) => s.concurrency), [5], 'an engine spec without concurrency');
  t.same(EnginePool.single(engineOptions).stats().map((s) => s.concurrency), [5], 'the single engine');
});

t.test('preflight: the free space asked for', async (t) => {
  for (const [what, run] of [['runPreflight', runPreflight], ['runValidatedPreflight (options not validated)', runValidatedPreflight]]) {
    const result = await run({ registry: env.registryAnon, only: ['disk'], engine: engineOptions });
    const disk = result.checks.find((c) => c.name === 'disk');
    t.match(disk.message, /at least 0\.001 GiB/, what);
  }
});

t.test('build context size limit', async (t) => {
  const ctx = tmp(t);
  writeFileSync(path.join(ctx, 'Dockerfile'), `FROM ${env.busyboxImage}\nCOPY . /ctx\n`);
  writeFileSync(path.join(ctx, 'big.bin'), Buffer.alloc(4096));
  await t.rejects(scanContext(ctx), { code: 'ERR_CONTEXT', message: /larger than the limit of 1024 bytes/ }, 'scanContext without maxBytes');
  await t.rejects(buildImage({ context: ctx, tags: [`${env.registryAnon}/defaults/ctx:1`], engine: { host: 'unix:///nonexistent/docker.sock' } }), { code: 'ERR_CONTEXT', message: /larger than the limit of 1024 bytes/ }, 'buildImage without maxContextBytes');
});

t.test('build stall timeout: buildImage, runBuild with options nobody validated, and the pipeline', async (t) => {
  const ctx = tmp(t);
  writeFileSync(path.join(ctx, 'Dockerfile'), `FROM ${env.busyboxImage}\nRUN echo ${uniqueName('quiet')} && sleep 60\n`);
  const tag = () => `${env.registryAnon}/defaults/${uniqueName('stall')}:1`;
  const validated = await buildImage({ context: ctx, tags: [tag()], engine: engineOptions }).catch((e) => e);
  t.equal(validated.code, 'ERR_TIMEOUT', validated.message);
  t.match(validated.message, /sent no output for 2 s in Step 2\//, 'buildImage');
  const direct = await runBuild(connectEngine(engineOptions), { tags: [tag()] }, await scanContext(ctx)).catch((e) => e);
  t.equal(direct.code, 'ERR_TIMEOUT', direct.message);
  t.match(direct.message, /sent no output for 2 s in Step 2\//, 'runBuild');

  const images = tmp(t);
  writeFileSync(path.join(images, 'bases.yaml'), 'bases:\n  - library/busybox:1.35\n');
  mkdirSync(path.join(images, 'quiet'));
  writeFileSync(path.join(images, 'quiet', 'Dockerfile'), `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/library/busybox:1.35\nRUN echo ${uniqueName('quiet')} && sleep 60\n`);
  writeFileSync(path.join(images, 'quiet', 'requirements.txt'), '# nothing to install\n');
  writeFileSync(path.join(images, 'quiet', 'image.yaml'), 'name: quiet\ndisplay_name: Quiet\ndescription: Builds silently\ncategory: jupyter\ntags: [test]\nmetadata:\n  gpu_required: false\n  cpu_limit: 1\n  mem_limit: 1G\n  default: true\n  purpose: jupyter\n');
  const result = await runPipeline({ imagesDir: images, registry: env.registryAnon, engine: engineOptions, registration: { target: 'catalog', catalogPath: path.join(tmp(t), 'catalog.json') } });
  t.equal(result.images[0].error?.code, 'ERR_TIMEOUT', JSON.stringify(result.images[0].error));
  t.match(result.images[0].error?.message, /sent no output for 2 s/, 'runPipeline: the build stall timeout of build-options');
});

t.test('push stall timeout: pushImage, runPush with options nobody validated, and every pipeline path', async (t) => {
  const proxy = await startFaultProxy({ target: env.registryAnon, mode: 'http' });
  t.teardown(() => proxy.close());
  const engine = connectEngine(engineOptions);
  const docker = await engine.client();
  const stalled = async (what, push) => {
    const ref = `${proxy.address}/defaults/${uniqueName('pstall')}:1`;
    await docker.getImage(env.busyboxImage).tag({ repo: ref.slice(0, ref.lastIndexOf(':')), tag: '1' });
    t.teardown(() => docker.getImage(ref).remove().catch(() => {}));
    proxy.pause();
    const error = await push(ref).catch((e) => e);
    proxy.resume();
    t.equal(error.code, 'ERR_TIMEOUT', `${what}: ${error.message}`);
    t.match(error.message, /no progress for 3 s/, what);
  };
  await stalled('pushImage', (ref) => pushImage({ tags: [ref], engine: engineOptions, verify: false, retry: { limit: 0 } }));
  await stalled('runPush', (ref) => runPush(engine, { tags: [ref], verify: false, retry: { limit: 0 } }));

  // The pipeline pushes through runPush in each of its shapes: one engine in order, two builds at once,
  // and per platform of a multi-architecture image (which once gave its pushes the builds' stall
  // timeout). The builds' own stall timeout, set here, is not the pushes'.
  for (const extra of [{}, { concurrency: 2 }, { platforms: ['linux/amd64'] }].map((o) => ({ ...o, stallTimeoutSeconds: 40 }))) {
    const images = tmp(t);
    const name = uniqueName('pp');
    writeFileSync(path.join(images, 'bases.yaml'), 'bases:\n  - library/busybox:1.35\n');
    mkdirSync(path.join(images, name));
    writeFileSync(path.join(images, name, 'Dockerfile'), `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/library/busybox:1.35\nRUN echo ${name} > /name\n`);
    writeFileSync(path.join(images, name, 'requirements.txt'), '# nothing to install\n');
    writeFileSync(path.join(images, name, 'image.yaml'), `name: ${name}\ndisplay_name: P\ndescription: Pushed through a stalling link\ncategory: jupyter\ntags: [test]\nmetadata:\n  gpu_required: false\n  cpu_limit: 1\n  mem_limit: 1G\n  default: true\n  purpose: jupyter\n`);
    let paused = false;
    const result = await runPipeline(
      { imagesDir: images, registry: proxy.address, engine: engineOptions, retry: { limit: 0 }, registration: { target: 'catalog', catalogPath: path.join(tmp(t), 'catalog.json') }, ...extra },
      {
        onEvent: (e) => {
          // The push has begun: from now on the registry answers nothing.
          if (e.type === 'push-layer' && !paused) {
            paused = true;
            proxy.pause();
          }
        },
      },
    );
    proxy.resume();
    const what = `runPipeline ${JSON.stringify(extra)}`;
    t.ok(paused, `${what}: the push started`);
    t.equal(result.images[0].error?.code, 'ERR_TIMEOUT', `${what}: ${JSON.stringify(result.images[0].error)}`);
    t.match(result.images[0].error?.message, /no progress for 3 s/, what);
  }
});
