// The catalog: Dockerfile parsing, loading images/ as data, the dependency graph and build order.
import path from 'node:path';
import t from 'tap';
import { repoRoot } from './helpers/env.js';
import { parseDockerfile, stages, resolveFrom, expandVariables, copySources, globalArgs, shellWords } from '../dist/lib/source/dockerfile.js';
import { loadCatalog, order, dependants, ancestors, findCycles } from '../dist/lib/source/catalog.js';

const imagesDir = path.join(repoRoot, 'images');
const fixtures = path.join(repoRoot, 'test', 'fixtures', 'catalog');
const opts = { relativeTo: repoRoot };

t.test('parseDockerfile: line numbers across continuations, comments and heredocs', async (t) => {
  const text = [
    '# syntax=docker/dockerfile:1', // 1 directive
    'ARG HARBOR_REGISTRY', // 2
    '', // 3
    '# a comment', // 4
    'FROM --platform=linux/amd64 ${HARBOR_REGISTRY}/library/python:3.12-slim AS base', // 5
    'RUN apt-get update \\', // 6
    '# comment inside a continuation', // 7
    '    && apt-get install -y git', // 8
    'RUN <<EOF', // 9
    'echo hello', // 10
    'EOF', // 11
    'CMD ["jupyter", "lab"]', // 12
    'frobnicate now', // 13
    'copy --chown=1000:100 a.txt b.txt /dst/', // 14
  ].join('\n');
  const parsed = parseDockerfile(text, 'Dockerfile');
  t.same(parsed.directives, { syntax: 'docker/dockerfile:1' });
  t.same(parsed.instructions.map((i) => [i.keyword, i.line]), [['ARG', 2], ['FROM', 5], ['RUN', 6], ['RUN', 9], ['CMD', 12], ['FROBNICATE', 13], ['COPY', 14]]);
  const run = parsed.instructions[2];
  t.equal(run.endLine, 8);
  t.equal(run.args, 'apt-get update     && apt-get install -y git');
  t.same(parsed.instructions[3].heredocs, ['EOF']);
  t.equal(parsed.instructions[3].endLine, 11);
  t.same(parsed.instructions[4].json, ['jupyter', 'lab']);
  t.same(parsed.instructions[1].flags, [{ name: 'platform', value: 'linux/amd64' }]);
  t.same(parsed.instructions[6].flags, [{ name: 'chown', value: '1000:100' }]);
  t.same(parsed.problems.map((p) => [p.line, p.rule, p.message]), [[13, 'dockerfile-syntax', 'unknown instruction frobnicate']]);
});

t.test('parseDockerfile: the escape directive switches the continuation character', async (t) => {
  const parsed = parseDockerfile('# escape=`\nFROM scratch\nCOPY a `\n  b\nRUN echo \\\nLABEL x=1\n');
  t.equal(parsed.escape, '`');
  t.same(parsed.instructions.map((i) => [i.keyword, i.line, i.args]), [['FROM', 2, 'scratch'], ['COPY', 3, 'a   b'], ['RUN', 5, 'echo \\'], ['LABEL', 6, 'x=1']]);
  // A directive after the first comment or instruction is an ordinary comment.
  t.same(parseDockerfile('# hello\n# escape=`\nFROM scratch\n').directives, {});
});

t.test('parseDockerfile reports an unclosed heredoc on its line', async (t) => {
  const parsed = parseDockerfile('FROM scratch\nRUN <<EOT\necho x\n');
  t.same(parsed.problems.map((p) => [p.line, p.rule]), [[2, 'heredoc']]);
});

t.test('variables: ${VAR}, $VAR, ${VAR:-default}, ${VAR:+alt} and escapes, as the builder substitutes them', async (t) => {
  const vars = { HARBOR_REGISTRY: 'harbor.example.com', TAG: '3.12-slim', EMPTY: '' };
  t.equal(resolveFrom('${HARBOR_REGISTRY}/library/python:${TAG}', vars), 'harbor.example.com/library/python:3.12-slim');
  t.equal(resolveFrom('$HARBOR_REGISTRY/library/python:$TAG', vars), 'harbor.example.com/library/python:3.12-slim');
  t.equal(resolveFrom('python:${MISSING:-3.11}', vars), 'python:3.11');
  t.equal(resolveFrom('python:${EMPTY:-3.11}', vars), 'python:3.11');
  t.equal(resolveFrom('python:${EMPTY-3.11}', vars), 'python:');
  t.equal(resolveFrom('python${TAG:+-suffix}', vars), 'python-suffix');
  t.equal(resolveFrom('python${MISSING:+-suffix}', vars), 'python');
  t.same(expandVariables('a\\$HOME/${X}/$Y', {}), { value: 'a$HOME//', unresolved: ['X', 'Y'], used: ['X', 'Y'] });
});

t.test('globalArgs: build args override defaults, only for ARGs declared before the first FROM', async (t) => {
  const parsed = parseDockerfile('ARG HARBOR_REGISTRY\nARG TAG=1.0 OTHER="a b"\nFROM x\nARG LATE=2\n');
  t.same(globalArgs(parsed, { HARBOR_REGISTRY: 'h', LATE: '9', UNDECLARED: 'u' }), { HARBOR_REGISTRY: 'h', TAG: '1.0', OTHER: 'a b' });
  t.same(globalArgs(parsed), { TAG: '1.0', OTHER: 'a b' });
});

t.test('stages and COPY sources of a multi-stage Dockerfile', async (t) => {
  const parsed = parseDockerfile(
    [
      'ARG HARBOR_REGISTRY',
      'FROM --platform=$BUILDPLATFORM ${HARBOR_REGISTRY}/library/python:3.12-slim AS Build',
      'COPY --from=0 /a /b',
      'FROM build',
      'COPY --from=build /opt /opt',
      'COPY ["x y.txt", "z.txt", "/dst/"]',
      'COPY notebooks/agents /home/jovyan/notebooks/agents || true',
      'ADD https://example.com/f.tgz /opt/',
    ].join('\n'),
  );
  t.same(stages(parsed).map((s) => ({ image: s.image, name: s.name, platform: s.platform, line: s.line })), [
    { image: '${HARBOR_REGISTRY}/library/python:3.12-slim', name: 'build', platform: '$BUILDPLATFORM', line: 2 },
    { image: 'build', name: undefined, platform: undefined, line: 4 },
  ]);
  t.same(copySources(parsed).map((c) => [c.instruction.line, c.from, c.sources, c.destination, c.shellOperators]), [
    [3, '0', ['/a'], '/b', []],
    [5, 'build', ['/opt'], '/opt', []],
    [6, undefined, ['x y.txt', 'z.txt'], '/dst/', []],
    [7, undefined, ['notebooks/agents'], '/home/jovyan/notebooks/agents', ['||']],
    [8, undefined, ['https://example.com/f.tgz'], '/opt/', []],
  ]);
  t.same(shellWords(`a "b c" 'd $e' f\\ g&&h`), ['a', 'b c', 'd $e', 'f g', '&&', 'h']);
});

t.test('loadCatalog: the four real images as data', async (t) => {
  const catalog = await loadCatalog(imagesDir, opts);
  t.same(catalog.problems, []);
  t.same(catalog.images.map((i) => i.name), ['jupyter-agent-dev', 'jupyter-fine-tuning', 'jupyter-ml-cpu', 'jupyter-ml-gpu']);
  const byName = Object.fromEntries(catalog.images.map((i) => [i.name, i]));
  t.same(byName['jupyter-agent-dev'].dependsOn, ['jupyter-ml-cpu']);
  t.same(byName['jupyter-fine-tuning'].dependsOn, ['jupyter-ml-gpu']);
  t.same(byName['jupyter-ml-cpu'].dependsOn, []);
  t.same(byName['jupyter-ml-gpu'].dependsOn, []);
  t.same(byName['jupyter-ml-gpu'].baseImages.map((b) => [b.kind, b.reference]), [['base', '${HARBOR_REGISTRY}/library/cuda:12.6.0-runtime-ubuntu24.04']]);
  t.same(byName['jupyter-ml-cpu'].metadata, {
    name: 'jupyter-ml-cpu',
    display_name: 'ML Development (CPU)',
    description: 'JupyterLab with standard ML packages',
    category: 'jupyter',
    tags: ['jupyter-compatible'],
    metadata: { gpu_required: false, cpu_limit: 4, mem_limit: '8G', default: true, purpose: 'jupyter' },
  });
  t.same(
    catalog.images.map((i) => [i.name, i.metadata.metadata.gpu_required, i.metadata.metadata.cpu_limit, i.metadata.metadata.mem_limit, i.metadata.metadata.default]),
    [
      ['jupyter-agent-dev', false, 4, '8G', false],
      ['jupyter-fine-tuning', true, 8, '32G', false],
      ['jupyter-ml-cpu', false, 4, '8G', true],
      ['jupyter-ml-gpu', true, 8, '16G', false],
    ],
  );
  t.same(byName['jupyter-ml-cpu'].requirementsFiles.map((f) => path.basename(f)), ['requirements-torch.txt', 'requirements.txt']);
  t.same(catalog.bases, ['library/python:3.12-slim', 'library/cuda:12.6.0-runtime-ubuntu24.04']);
});

t.test('loadCatalog resolves FROM with a given registry, project and build args', async (t) => {
  const catalog = await loadCatalog(imagesDir, { ...opts, registry: 'harbor.example.com' });
  const agent = catalog.images.find((i) => i.name === 'jupyter-agent-dev');
  t.same(agent.baseImages.map((b) => [b.kind, b.reference, b.image]), [['catalog', 'harbor.example.com/library/jupyter-ml-cpu:latest', 'jupyter-ml-cpu']]);
  // Images of the set live in one project: in another project jupyter-ml-cpu is not this image.
  const other = await loadCatalog(imagesDir, { ...opts, project: 'thinkube' });
  t.same(other.images.find((i) => i.name === 'jupyter-agent-dev').dependsOn, []);
  t.match(other.problems.map((p) => p.rule), ['from-missing', 'from-missing']);
  // A multi-stage Dockerfile with a defaulted tag ARG, a stage used as a base, COPY --from a stage.
  const multi = await loadCatalog(path.join(fixtures, 'dockerfile'), { ...opts, registry: 'harbor.example.com', buildArgs: { BASE_TAG: '3.12-bookworm' } });
  const image = multi.images.find((i) => i.name === 'multi-stage');
  // bases.yaml lists python:3.12-slim only: another tag of it is not a mirrored base.
  t.same(image.baseImages.map((b) => [b.via, b.line, b.kind, b.reference]), [
    ['FROM', 4, 'missing', 'harbor.example.com/library/python:3.12-bookworm'],
    ['FROM', 7, 'stage', 'build'],
    ['FROM', 9, 'base', 'harbor.example.com/library/python:3.12-slim'],
    ['COPY --from', 8, 'stage', 'build'],
  ]);
});

t.test('order: bases before the images that build on them; peers alphabetical', async (t) => {
  const catalog = await loadCatalog(imagesDir, opts);
  const plan = order(catalog);
  t.same(plan.names, ['jupyter-ml-cpu', 'jupyter-ml-gpu', 'jupyter-agent-dev', 'jupyter-fine-tuning']);
  t.same(plan.levels, [['jupyter-ml-cpu', 'jupyter-ml-gpu'], ['jupyter-agent-dev', 'jupyter-fine-tuning']]);
  t.ok(plan.names.indexOf('jupyter-ml-cpu') < plan.names.indexOf('jupyter-agent-dev'), 'cpu before agent-dev');
  t.ok(plan.names.indexOf('jupyter-ml-gpu') < plan.names.indexOf('jupyter-fine-tuning'), 'gpu before fine-tuning');
  t.same(plan.images.map((i) => i.name), plan.names);
  t.same(plan.fromRegistry, []);

  // A selection orders what is selected and pulls nothing in; unselected bases come from the registry.
  const some = order(catalog, ['jupyter-fine-tuning', 'jupyter-agent-dev', 'jupyter-ml-gpu']);
  t.same(some.names, ['jupyter-agent-dev', 'jupyter-ml-gpu', 'jupyter-fine-tuning']);
  t.same(some.fromRegistry, [{ image: 'jupyter-agent-dev', base: 'jupyter-ml-cpu' }]);
  const err = t.throws(() => order(catalog, ['jupyter-ml-cpu', 'jupyter-nope']));
  t.equal(err.code, 'ERR_INVALID_OPTIONS');
  t.match(err.message, /selected\[1\]: "jupyter-nope" is not an image of images/);
});

t.test('dependants and ancestors are transitive', async (t) => {
  const catalog = await loadCatalog(imagesDir, opts);
  t.same(dependants(catalog, 'jupyter-ml-cpu'), ['jupyter-agent-dev']);
  t.same(dependants(catalog, 'jupyter-ml-gpu'), ['jupyter-fine-tuning']);
  t.same(dependants(catalog, 'jupyter-agent-dev'), []);
  t.same(ancestors(catalog, 'jupyter-fine-tuning'), ['jupyter-ml-gpu']);
  const chain = await loadCatalog(path.join(fixtures, 'pin-conflict'), opts);
  t.same(dependants(chain, 'base'), ['derived', 'leaf']);
  t.same(ancestors(chain, 'leaf'), ['derived', 'base']);
  t.same(order(chain).names, ['base', 'derived', 'leaf']);
  t.throws(() => dependants(chain, 'nope'), { code: 'ERR_INVALID_OPTIONS' });
});

t.test('a cycle is an error naming the images in it', async (t) => {
  const catalog = await loadCatalog(path.join(fixtures, 'cycle'), opts);
  t.same(findCycles(catalog), [['jupyter-a', 'jupyter-b', 'jupyter-a']]);
  const err = t.throws(() => order(catalog));
  t.equal(err.code, 'ERR_LINT');
  t.equal(err.message, 'Dependency cycle between images: jupyter-a -> jupyter-b -> jupyter-a (each image builds FROM the next)');
  t.same(err.details.cycles, [['jupyter-a', 'jupyter-b', 'jupyter-a']]);
  // jupyter-c builds on jupyter-a but is not in the cycle: alone it can be ordered (a comes from the registry).
  t.same(order(catalog, ['jupyter-c']).fromRegistry, [{ image: 'jupyter-c', base: 'jupyter-a' }]);
  t.same(dependants(catalog, 'jupyter-a').sort(), ['jupyter-b', 'jupyter-c']);
});

t.test('a FROM on a missing image of the set is an error naming it', async (t) => {
  const catalog = await loadCatalog(path.join(fixtures, 'missing-base'), opts);
  const err = t.throws(() => order(catalog));
  t.equal(err.code, 'ERR_LINT');
  t.match(err.message, 'test/fixtures/catalog/missing-base/jupyter-agent-dev/Dockerfile:2 (jupyter-agent-dev: ${HARBOR_REGISTRY}/library/jupyter-ml-cpuu:latest)');
  // The image that is fine can still be built alone.
  t.same(order(catalog, ['jupyter-ml-cpu']).names, ['jupyter-ml-cpu']);
});

t.test('loadCatalog refuses a folder that is not there and bad options', async (t) => {
  await t.rejects(loadCatalog(path.join(fixtures, 'does-not-exist'), opts), { code: 'ERR_CATALOG', message: 'Cannot read the images folder test/fixtures/catalog/does-not-exist (ENOENT)' });
  await t.rejects(loadCatalog(imagesDir, { registry: 'https://harbor.example.com', bases: ['python'] }), {
    code: 'ERR_INVALID_OPTIONS',
    message: /registry: must be a host name.*bases\[0\]: must be project\/repository/,
  });
});
