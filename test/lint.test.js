// The checks: the real images pass every one; each defect fixture fails with its file:line message;
// bin/lint.js and bin/new-image.js as scripts; a scaffolded image builds on the real engine.
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { repoRoot, testEnv, uniqueName } from './helpers/env.js';
import { lintImages, formatProblem } from '../dist/lib/source/lint.js';
import { parseRequirements, checkRequirement, normalizePackageName, compareVersions, sameVersion, installEffect } from '../dist/lib/source/requirements.js';
import { loadCatalog, order } from '../dist/lib/source/catalog.js';

const run = promisify(execFile);
const fixtures = path.join(repoRoot, 'test', 'fixtures', 'catalog');
const F = 'test/fixtures/catalog';
const opts = { relativeTo: repoRoot };

async function lint(name) {
  return lintImages(path.join(fixtures, name), opts);
}
const messages = (result) => result.problems.map((p) => `${p.severity}: ${formatProblem(p)}`);

/** Run a script of bin/ and return its exit code, parsed stdout JSON and stderr. */
async function script(file, args) {
  try {
    const { stdout, stderr } = await run(process.execPath, [path.join(repoRoot, 'bin', file), ...args], { cwd: repoRoot });
    return { code: 0, stdout, json: JSON.parse(stdout), stderr };
  } catch (error) {
    if (typeof error.code !== 'number') throw error;
    return { code: error.code, stdout: error.stdout, json: JSON.parse(error.stdout), stderr: error.stderr };
  }
}

t.test('the four real images pass every check, without a warning', async (t) => {
  const result = await lintImages(path.join(repoRoot, 'images'), opts);
  t.same(messages(result), []);
  t.equal(result.ok, true);
  t.same(result.images, ['jupyter-agent-dev', 'jupyter-fine-tuning', 'jupyter-ml-cpu', 'jupyter-ml-gpu']);
  // And with a concrete registry, as the pipeline resolves them.
  const resolved = await lintImages(path.join(repoRoot, 'images'), { ...opts, registry: 'harbor.example.com' });
  t.same(messages(resolved), []);
});

t.test('the original images fail on their known defects, with file:line and a fix', async (t) => {
  const result = await lint('original');
  t.equal(result.ok, false);
  t.same(messages(result), [
    `error: ${F}/original/jupyter-agent-dev/Dockerfile:8: COPY runs no shell: "||" and what follows are taken as file names; a COPY cannot be made optional: put the files in the image folder, or remove the COPY`,
    `error: ${F}/original/jupyter-agent-dev/Dockerfile:8: COPY source notebooks/agents is not in the build context ${F}/original/jupyter-agent-dev; create ${F}/original/jupyter-agent-dev/notebooks/agents, or remove the COPY`,
    `error: ${F}/original/jupyter-fine-tuning/Dockerfile:7: RUN pip install: unsloth @ git+https://github.com/unslothai/unsloth.git is a VCS URL without a ref; pin a full 40-character commit: append @<commit> to the URL`,
    `error: ${F}/original/jupyter-fine-tuning/Dockerfile:8: COPY runs no shell: "||" and what follows are taken as file names; a COPY cannot be made optional: put the files in the image folder, or remove the COPY`,
    `error: ${F}/original/jupyter-fine-tuning/Dockerfile:8: COPY source notebooks/fine-tuning is not in the build context ${F}/original/jupyter-fine-tuning; create ${F}/original/jupyter-fine-tuning/notebooks/fine-tuning, or remove the COPY`,
    `error: ${F}/original/jupyter-ml-cpu/requirements.txt:12: claude-agent-sdk is not pinned; pin an exact version: claude-agent-sdk==X.Y.Z`,
    `error: ${F}/original/jupyter-ml-gpu/requirements.txt:3: claude-agent-sdk is not pinned; pin an exact version: claude-agent-sdk==X.Y.Z`,
  ]);
  const claude = result.problems.find((p) => p.image === 'jupyter-ml-cpu');
  t.same(claude, {
    severity: 'error',
    file: `${F}/original/jupyter-ml-cpu/requirements.txt`,
    line: 12,
    rule: 'pin',
    message: 'claude-agent-sdk is not pinned',
    hint: 'pin an exact version: claude-agent-sdk==X.Y.Z',
    image: 'jupyter-ml-cpu',
  });
});

t.test('pins: only one exact version per requirement, in files and in RUN pip install', async (t) => {
  const result = await lint('pins');
  const p = `${F}/pins/pinned`;
  t.same(messages(result), [
    `error: ${p}/Dockerfile:5: RUN pip install: claude-agent-sdk is not pinned; pin an exact version: claude-agent-sdk==X.Y.Z`,
    `warning: ${p}/Dockerfile:8: pip install without --no-cache-dir keeps its download cache in the image layer; add --no-cache-dir`,
    `error: ${p}/requirements-extra.txt:2: botocore is not pinned; pin an exact version: botocore==X.Y.Z`,
    `error: ${p}/requirements.txt:11: numpy>=1.26 is a range (>=), not an exact pin; pin an exact version: numpy==X.Y.Z`,
    `error: ${p}/requirements.txt:12: scipy~=1.14 is a range (~=), not an exact pin; pin an exact version: scipy==X.Y.Z`,
    `error: ${p}/requirements.txt:13: pandas<3 is a range (<), not an exact pin; pin an exact version: pandas==X.Y.Z`,
    `error: ${p}/requirements.txt:14: requests!=2.0 is a range (!=), not an exact pin; pin an exact version: requests==X.Y.Z`,
    `error: ${p}/requirements.txt:15: rich==13.* is a wildcard, not an exact pin; pin an exact version: rich==X.Y.Z`,
    `error: ${p}/requirements.txt:16: claude-agent-sdk is not pinned; pin an exact version: claude-agent-sdk==X.Y.Z`,
    `error: ${p}/requirements.txt:17: mylib @ https://example.com/mylib-1.0.tar.gz is a URL without a hash; add #sha256=<digest of the file> to the URL, or pin name==version from the index`,
    `error: ${p}/requirements.txt:19: unsloth @ git+https://github.com/unslothai/unsloth.git is a VCS URL without a ref; pin a full 40-character commit: append @<commit> to the URL`,
    `error: ${p}/requirements.txt:20: branchy @ git+https://github.com/example/branchy.git@main uses the ref "main", which can move; pin a full 40-character commit instead of "main": ...@<commit>`,
    `error: ${p}/requirements.txt:22: pip does not accept the option --no-such-option in a requirements file; use -r, -c, --index-url, --extra-index-url, --find-links or a requirement name==version`,
    `error: ${p}/requirements.txt:24: numpy==2.0.0 conflicts with numpy==1.26.4 on line 23; pip refuses two versions of one package in one install: keep one line`,
    `error: ${p}/requirements.txt:27: -r missing.txt names a file that does not exist; create ${p}/missing.txt or remove the line`,
  ]);
});

t.test('Dockerfiles: ARG HARBOR_REGISTRY before FROM, FROM through Harbor, no templates, no heredocs', async (t) => {
  const result = await lint('dockerfile');
  const d = `${F}/dockerfile`;
  t.same(messages(result), [
    `error: ${d}/heredoc/Dockerfile:3: RUN with a heredoc (<<EOT) is not supported; the classic builder cannot run heredocs and these checks cannot see inside them: chain commands with && or COPY a script file`,
    `error: ${d}/heredoc/Dockerfile:7: COPY source missing.txt is not in the build context ${d}/heredoc; create ${d}/heredoc/missing.txt, or remove the COPY`,
    `error: ${d}/jinja/Dockerfile:2: template syntax ({{ }} / {% %}) in the Dockerfile; Dockerfiles here are built as they are: use ARG HARBOR_REGISTRY and \${HARBOR_REGISTRY} instead of a template variable`,
    `error: ${d}/jinja/requirements.txt:2: template syntax in "jupyterlab-git=={{ jupyterlab_git_version }}"; requirements files are read by pip as they are: write the literal name==version`,
    `error: ${d}/late-arg/Dockerfile:1: FROM \${HARBOR_REGISTRY}/library/python:3.12-slim uses HARBOR_REGISTRY, which is not declared with ARG before the first FROM (the ARG on line 2 comes too late: an ARG after FROM is not visible to FROM); add ARG HARBOR_REGISTRY as the first line of the Dockerfile`,
    `error: ${d}/no-arg/Dockerfile:1: FROM \${HARBOR_REGISTRY}/library/python:3.12-slim uses HARBOR_REGISTRY, which is not declared with ARG before the first FROM; add ARG HARBOR_REGISTRY as the first line of the Dockerfile`,
    `error: ${d}/not-harbor/Dockerfile:2: FROM python:3.12-slim does not pull from Harbor through \${HARBOR_REGISTRY}; Thinkube nodes pull bases from Harbor (mirror the base there first): write FROM \${HARBOR_REGISTRY}/library/python:3.12-slim`,
  ]);
  // The multi-stage Dockerfile (escape directive, --platform, stage bases, COPY --from a stage,
  // ${VAR:-default}) and the plain one are clean.
  t.notOk(result.problems.some((p) => p.image === 'multi-stage' || p.image === 'ok'));
});

t.test('COPY/ADD sources must be in the context after .dockerignore', async (t) => {
  const result = await lint('copy');
  const c = `${F}/copy/sources`;
  t.same(messages(result), [
    `error: ${c}/Dockerfile:7: COPY source secret/key.txt is excluded by ${c}/.dockerignore; remove the .dockerignore pattern that matches secret/key.txt, or add !secret/key.txt after it`,
    `error: ${c}/Dockerfile:8: COPY source conf/app.py is excluded by ${c}/.dockerignore; remove the .dockerignore pattern that matches conf/app.py, or add !conf/app.py after it`,
    `error: ${c}/Dockerfile:9: COPY source notes/*.md matches no file in the build context ${c}; add a matching file to the image folder, fix the pattern, or check .dockerignore`,
    `error: ${c}/Dockerfile:10: COPY source ../outside.txt is outside the build context ${c}; the builder only sees the image folder: move the file into it`,
    `error: ${c}/Dockerfile:11: COPY source missing.txt is not in the build context ${c}; create ${c}/missing.txt, or remove the COPY`,
    `error: ${c}/Dockerfile:17: COPY needs at least one source and a destination; write COPY <source> <destination>`,
  ]);
});

t.test('metadata: schema, folder name = name, repository names, exactly one default', async (t) => {
  const m = `${F}/metadata`;
  t.same(messages(await lint('metadata')), [
    `error: ${m}/Bad_Name: image folder Bad_Name has no image.yaml; add ${m}/Bad_Name/image.yaml with name, display_name, description, category and metadata (node bin/new-image.js writes one)`,
    `error: ${m}/Bad_Name: library/Bad_Name is not a valid repository name; use lowercase letters and digits separated by single ., _, __ or dashes`,
    `error: ${m}/bad-fields/image.yaml: display_name is required; see schemas/image-metadata.schema.json for the fields and their formats`,
    `error: ${m}/bad-fields/image.yaml:4: colour is not a known field (check its spelling); see schemas/image-metadata.schema.json for the fields and their formats`,
    `error: ${m}/bad-fields/image.yaml:8: metadata.mem_limit must be a memory size such as 8G, 512M or 16Gi; see schemas/image-metadata.schema.json for the fields and their formats`,
    `error: ${m}/broken-yaml/image.yaml:3: not valid YAML: unexpected end of the stream within a flow collection; fix the YAML syntax (indentation, quotes, duplicate keys)`,
    `error: ${m}/first/image.yaml:11: 2 images have metadata.default: true (first, second); exactly one image is the default: set default: false in all but one`,
    `error: ${m}/no-metadata: image folder no-metadata has no image.yaml; add ${m}/no-metadata/image.yaml with name, display_name, description, category and metadata (node bin/new-image.js writes one)`,
    `error: ${m}/second/image.yaml:11: 2 images have metadata.default: true (first, second); exactly one image is the default: set default: false in all but one`,
    `error: ${m}/wrong-name/image.yaml:1: name is other-name but the folder is wrong-name; the folder name is the repository name: rename the folder to other-name or set name: wrong-name`,
  ]);
  t.same(messages(await lint('no-default')), [
    `error: ${F}/no-default: no image of ${F}/no-default has metadata.default: true; exactly one image is the default: set metadata.default: true in one image.yaml`,
  ]);
});

t.test('graph: a cycle and a FROM on a missing image are errors naming the images', async (t) => {
  t.same(messages(await lint('cycle')), [
    `error: ${F}/cycle/jupyter-a/Dockerfile:2: dependency cycle: jupyter-a -> jupyter-b -> jupyter-a (each image builds FROM the next); an image cannot build on itself, directly or through others: change one of these FROM lines`,
  ]);
  t.same(messages(await lint('missing-base')), [
    `error: ${F}/missing-base/jupyter-agent-dev/Dockerfile:2: FROM \${HARBOR_REGISTRY}/library/jupyter-ml-cpuu:latest names library/jupyter-ml-cpuu:latest, which is neither an image of ${F}/missing-base nor a mirrored base listed in bases.yaml; fix the name, add the folder ${F}/missing-base/jupyter-ml-cpuu, or mirror the base into Harbor and list library/jupyter-ml-cpuu:latest in ${F}/missing-base/bases.yaml`,
  ]);
});

t.test('a package pinned differently from the image it builds on (transitively) is a warning', async (t) => {
  const result = await lint('pin-conflict');
  const k = `${F}/pin-conflict`;
  t.equal(result.ok, true, 'warnings do not fail the check');
  t.same(messages(result), [
    `warning: ${k}/derived/requirements.txt:2: NumPy==2.0.0 differs from numpy==1.26.4 in base (${k}/base/requirements.txt:2), which this image builds on; installing it upgrades the base's numpy; use numpy==1.26.4 as the base does, or change both images together`,
    `warning: ${k}/leaf/requirements.txt:2: pandas==2.1.0 differs from pandas==2.2.2 in base (${k}/base/requirements.txt:3), which this image builds on; installing it downgrades the base's pandas; use pandas==2.2.2 as the base does, or change both images together`,
  ]);
});

t.test('requirement parsing details', async (t) => {
  const parsed = parseRequirements(
    [
      'a==1.0  # trailing comment',
      'b[x, y]==2.0; python_version >= "3.10"',
      'c == 3.0',
      '-e git+https://github.com/o/r.git@0123456789abcdef0123456789abcdef01234567#egg=r',
      'd==1.0 --hash=sha256:00 --hash=sha256:11',
      'https://example.com/e-1.0.tar.gz#sha256=abcdef',
      './wheels/f-1.0-py3-none-any.whl',
      'git+ssh://git@github.com/o/g.git@v1.0#egg=g',
      '-c constraints.txt',
      '--index-url',
      'torch==2.4.1+cu124',
    ].join('\n'),
  );
  t.same(parsed.pins.map((p) => [p.name, p.version, p.line]), [['a', '1.0', 1], ['b', '2.0', 2], ['c', '3.0', 3], ['d', '1.0', 5], ['torch', '2.4.1+cu124', 11]]);
  t.same(parsed.entries[1].extras, ['x', 'y']);
  t.equal(parsed.entries[1].marker, 'python_version >= "3.10"');
  t.same(parsed.includes, [{ line: 9, kind: 'constraint', path: 'constraints.txt' }]);
  t.same(parsed.problems.map((p) => [p.line, p.rule, p.message]), [
    [8, 'pin', 'g uses the ref "v1.0", which can move'],
    [10, 'pip-option', 'the option --index-url needs a value'],
  ]);
  t.same(checkRequirement('x (==1.0)').entry.pinned, '1.0');
  t.match(checkRequirement('x==1.0,<2').problem.message, 'combines several clauses');
  t.match(checkRequirement('not a requirement!').problem, { rule: 'requirement-syntax' });
  t.equal(normalizePackageName('Python_LSP.Server'), 'python-lsp-server');
});

t.test('markers and extras: the marker is split off where PEP 508 says, after a URL only at " ;"', async (t) => {
  const rows = [
    // [requirement, pinned, marker, url]
    ['b[x, y]==2.0; python_version >= "3.10"', '2.0', 'python_version >= "3.10"', undefined],
    ['b [x] == 2.0 ;python_version<"3.12" and sys_platform == "linux"', '2.0', 'python_version<"3.12" and sys_platform == "linux"', undefined],
    ['c @ https://example.com/c.whl;v=1#sha256=ab ; python_version < "3"', undefined, 'python_version < "3"', 'https://example.com/c.whl;v=1#sha256=ab'],
    ['c @ https://example.com/c.whl#sha256=ab;python_version<"3"', undefined, undefined, 'https://example.com/c.whl#sha256=ab;python_version<"3"'],
    ['https://example.com/d-1.0.tar.gz#sha256=ab ; sys_platform == "linux"', undefined, 'sys_platform == "linux"', 'https://example.com/d-1.0.tar.gz#sha256=ab'],
  ];
  for (const [text, pinned, marker, url] of rows) {
    const { entry, problem } = checkRequirement(text);
    t.same({ pinned: entry.pinned, marker: entry.marker, url: entry.url, problem: problem?.message }, { pinned, marker, url, problem: undefined }, text);
  }
});

t.test('PEP 440 ordering: pre, post and dev releases, epochs and local labels', async (t) => {
  // [a, b, compareVersions(a, b)]: PEP 440 order, not the order of the strings.
  const rows = [
    ['1.26.4', '2.0.0', -1],
    ['1.0rc10', '1.0rc9', 1],
    ['1.0a10', '1.0b1', -1],
    ['1.0rc1', '1.0', -1],
    ['1.0.post10', '1.0.post9', 1],
    ['0.0.28.post1', '0.0.28', 1],
    ['1.0.post1', '1.0.1', -1],
    ['1!1.0', '2.0', 1],
    ['1!1.0', '1!2.0', -1],
    ['1.0.dev1', '1.0a1', -1],
    ['1.0.dev10', '1.0.dev9', 1],
    ['1.0.post1.dev1', '1.0.post1', -1],
    ['1.0a1.post1', '1.0a2', -1],
    ['1.0+cpu', '1.0', 1],
    ['1.0+cpu.10', '1.0+cpu.2', 1],
    ['1.10', '1.9', 1],
    ['1.0', '1.0.0', 0],
    ['1.0RC1', '1.0rc1', 0],
    ['1.0-post1', '1.0.post1', 0],
    ['v1.0', '1.0', 0],
    ['1.0-custom', '1.0', undefined],
  ];
  for (const [a, b, expected] of rows) {
    t.equal(compareVersions(a, b), expected, `${a} vs ${b}`);
    if (expected !== undefined) t.equal(compareVersions(b, a), -expected || 0, `${b} vs ${a}`);
  }
  t.equal(sameVersion('1.0', '1.0.0'), true);
  t.equal(sameVersion('1.0-Custom', '1.0-custom'), true, 'an === pin is compared as a string');
  t.equal(sameVersion('1.0+cpu', '1.0'), false);
  // [new pin, installed pin, what installing it does]
  for (const [a, b, effect] of [['1.0rc10', '1.0rc9', 'upgrades'], ['1.0.post9', '1.0.post10', 'downgrades'], ['2.0', '1!1.0', 'downgrades'], ['2.5.1+cpu', '2.5.1', 'replaces'], ['1.0-custom', '1.0', 'replaces']]) {
    t.equal(installEffect(a, b), effect, `${a} over ${b}`);
  }
});

t.test('pin checks: what counts as one exact pin, by PEP 440', async (t) => {
  // [requirement, the pinned version, or the problem's rule and message]
  const rows = [
    ['x==1.0', '1.0'],
    ['x == 1.0rc10', '1.0rc10'],
    ['x==1!2.0.post1.dev3', '1!2.0.post1.dev3'],
    ['torch==2.4.1+cu124', '2.4.1+cu124'],
    ['x===1.0-custom', '1.0-custom'],
    ['x (==1.0)', '1.0'],
    ['x==1.0-custom', ['requirement-syntax', 'x: "==1.0-custom" is not a version specifier']],
    ['x==latest', ['requirement-syntax', 'x: "==latest" is not a version specifier']],
    ['x~=1', ['requirement-syntax', 'x: "~=1" is not a version specifier']],
    ['x>=1.0+cpu', ['requirement-syntax', 'x: ">=1.0+cpu" is not a version specifier']],
    ['x==1.0.*', ['pin', 'x==1.0.* is a wildcard, not an exact pin']],
    ['x>=1.0', ['pin', 'x>=1.0 is a range (>=), not an exact pin']],
    ['x~=1.0', ['pin', 'x~=1.0 is a range (~=), not an exact pin']],
    ['x!=1.0.*', ['pin', 'x!=1.0.* is a range (!=), not an exact pin']],
    ['x[a]<2', ['pin', 'x[a]<2 is a range (<), not an exact pin']],
    ['x==1.0,<2', ['pin', 'x==1.0,<2 combines several clauses, not one exact pin']],
    ['x', ['pin', 'x is not pinned']],
  ];
  for (const [text, expected] of rows) {
    const { entry, problem } = checkRequirement(text);
    if (typeof expected === 'string') t.same({ pinned: entry.pinned, problem: problem?.message }, { pinned: expected, problem: undefined }, text);
    else t.same({ pinned: entry?.pinned, rule: problem?.rule, message: problem?.message }, { pinned: undefined, rule: expected[0], message: expected[1] }, text);
  }
});

t.test('one package pinned twice in one file: one version written twice is a repeat, two versions an error', async (t) => {
  const rows = [
    ['1.0', '1.0.0', 'warning', 'x==1.0.0 is already pinned on line 1'],
    ['1.0rc1', '1.0RC1', 'warning', 'x==1.0RC1 is already pinned on line 1'],
    ['1.0rc9', '1.0rc10', 'error', 'x==1.0rc10 conflicts with x==1.0rc9 on line 1'],
    ['1.0', '1.0+cpu', 'error', 'x==1.0+cpu conflicts with x==1.0 on line 1'],
  ];
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pins-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const images = path.join(dir, 'images');
  await cp(path.join(fixtures, 'pin-conflict'), images, { recursive: true });
  for (const [first, second, severity, message] of rows) {
    await writeFile(path.join(images, 'base', 'requirements.txt'), `x==${first}\nx==${second}\n`);
    const found = (await lintImages(images, { relativeTo: images })).problems.filter((p) => p.rule === 'pin-duplicate');
    t.same(found.map((p) => [p.severity, p.file, p.line, p.message]), [[severity, 'base/requirements.txt', 2, message]], `${first} then ${second}`);
  }
});

t.test('pins across images: the same version is no conflict, another one says upgrade or downgrade by PEP 440', async (t) => {
  // [base image's pin, derived image's pin, the warning's effect (undefined: no warning)]
  const rows = [
    ['1.0rc9', '1.0rc10', 'upgrades'],
    ['1.0rc10', '1.0rc9', 'downgrades'],
    ['1.0.post9', '1.0.post10', 'upgrades'],
    ['1!1.0', '2.0', 'downgrades'],
    ['2.0.dev1', '2.0a1', 'upgrades'],
    ['2.5.1', '2.5.1+cpu', 'replaces'],
    ['1.0', '1.0.0', undefined],
    ['1.0RC1', '1.0rc1', undefined],
  ];
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pins-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const images = path.join(dir, 'images');
  await cp(path.join(fixtures, 'pin-conflict'), images, { recursive: true });
  await writeFile(path.join(images, 'leaf', 'requirements.txt'), 'jupyterlab==4.2.5\n');
  for (const [base, derived, effect] of rows) {
    await writeFile(path.join(images, 'base', 'requirements.txt'), `jupyterlab==4.2.5\nx==${base}\n`);
    await writeFile(path.join(images, 'derived', 'requirements.txt'), `jupyterlab==4.2.5\nx==${derived}\n`);
    const result = await lintImages(images, { relativeTo: images });
    const found = result.problems.filter((p) => p.rule === 'pin-conflict').map((p) => p.message);
    const expected = effect ? [`x==${derived} differs from x==${base} in base (base/requirements.txt:2), which this image builds on; installing it ${effect} the base's x`] : [];
    t.same(found, expected, `${base} in the base, ${derived} in the image on it`);
    t.equal(result.ok, true, 'a pin conflict across images is a warning');
  }
});

t.test('bin/lint.js: one JSON object on stdout, problems on stderr, exit 0/1', async (t) => {
  const ok = await script('lint.js', []);
  t.equal(ok.code, 0);
  t.match(ok.json, { ok: true, failed: false, changed: false, images: ['jupyter-agent-dev', 'jupyter-fine-tuning', 'jupyter-ml-cpu', 'jupyter-ml-gpu'], problems: [], msg: '4 image(s) checked: 0 error(s), 0 warning(s)' });
  t.equal(ok.stdout.trim().split('\n').length, 1, 'exactly one line of JSON');

  const bad = await script('lint.js', [`${F}/original`, '--registry', 'harbor.example.com']);
  t.equal(bad.code, 1);
  t.equal(bad.json.ok, false);
  t.equal(bad.json.failed, true);
  t.equal(bad.json.msg, '4 image(s) checked: 7 error(s), 0 warning(s)');
  t.match(bad.json.problems, [{ rule: 'copy-shell', line: 8, file: `${F}/original/jupyter-agent-dev/Dockerfile` }]);
  t.match(bad.stderr, `error: ${F}/original/jupyter-ml-cpu/requirements.txt:12: claude-agent-sdk is not pinned; pin an exact version: claude-agent-sdk==X.Y.Z\n`);

  const missing = await script('lint.js', [`${F}/nope`]);
  t.equal(missing.code, 1);
  t.match(missing.json, { failed: true, error_code: 'ERR_CATALOG', msg: `Cannot read the images folder ${F}/nope (ENOENT). Give the folder that holds one subfolder per image (e.g. images/)` });
  t.notMatch(missing.stderr, /at .*\.js:\d+/, 'no stack trace');

  const badArg = await script('lint.js', ['--frobnicate']);
  t.equal(badArg.code, 2, 'a usage error exits 2');
  t.match(badArg.json, { failed: true, error_code: 'ERR_USAGE', msg: /Unknown option --frobnicate/ });
});

// What --help and a real run load: test/startup.test.js, for every script.

t.test('new-image: scaffolds folders that pass lint; refuses bad names and existing folders', async (t) => {
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'thinkube-new-image-'));
  t.teardown(() => rm(tmp, { recursive: true, force: true }));
  const dir = path.join(tmp, 'images');
  await cp(path.join(repoRoot, 'images'), dir, { recursive: true });

  const python = await script('new-image.js', ['data-tools', '--images-dir', dir, '--display-name', 'Data: Tools', '--description', 'Pandas & friends']);
  t.equal(python.code, 0, python.stderr);
  t.match(python.json, { failed: false, changed: true, name: 'data-tools', from: '${HARBOR_REGISTRY}/library/python:3.12-slim', base_kind: 'base', template: 'python', is_default: false });
  t.same(python.json.files, ['.dockerignore', 'Dockerfile', 'image.yaml', 'requirements.txt']);
  const derived = await script('new-image.js', ['agents-extra', '--images-dir', dir, '--from', 'jupyter-ml-cpu']);
  t.match(derived.json, { failed: false, from: '${HARBOR_REGISTRY}/library/jupyter-ml-cpu:latest', base_kind: 'catalog', template: 'derived' });
  const gpu = await script('new-image.js', ['gpu-extra', '--images-dir', dir, '--from', 'library/jupyter-ml-gpu:latest']);
  t.match(gpu.json, { failed: false, base_kind: 'catalog', template: 'derived' });

  const result = await lintImages(dir, opts);
  t.same(messages(result), [], 'the real images and the scaffolds pass lint');
  const catalog = await loadCatalog(dir);
  t.same(order(catalog).levels, [['data-tools', 'jupyter-ml-cpu', 'jupyter-ml-gpu'], ['agents-extra', 'gpu-extra', 'jupyter-agent-dev', 'jupyter-fine-tuning']]);
  const meta = catalog.images.find((i) => i.name === 'data-tools').metadata;
  t.same(meta, { name: 'data-tools', display_name: 'Data: Tools', description: 'Pandas & friends', category: 'jupyter', tags: ['jupyter-compatible'], metadata: { gpu_required: false, cpu_limit: 2, mem_limit: '4G', default: false, purpose: 'jupyter' } });
  // A scaffold on the GPU image inherits its resources.
  t.match(catalog.images.find((i) => i.name === 'gpu-extra').metadata.metadata, { gpu_required: true, cpu_limit: 8, mem_limit: '16G' });
  t.match(await readFile(path.join(dir, 'data-tools', 'requirements.txt'), 'utf8'), /^jupyterlab==4\.2\.5$/m);

  const again = await script('new-image.js', ['data-tools', '--images-dir', dir]);
  t.equal(again.code, 1);
  t.match(again.json, { failed: true, changed: false, error_code: 'ERR_CATALOG', msg: `${path.join(dir, 'data-tools')} already exists` });
  const badName = await script('new-image.js', ['Data_Tools', '--images-dir', dir]);
  t.equal(badName.code, 1);
  t.match(badName.json, { error_code: 'ERR_INVALID_OPTIONS', msg: /name: "Data_Tools" must be a repository name/ });
  const otherRegistry = await script('new-image.js', ['x', '--images-dir', dir, '--from', 'docker.io/library/python:3.12']);
  t.match(otherRegistry.json, { error_code: 'ERR_INVALID_OPTIONS', msg: /names another registry/ });
  const empty = await mkdtemp(path.join(os.tmpdir(), 'thinkube-new-image-empty-'));
  t.teardown(() => rm(empty, { recursive: true, force: true }));
  const first = await script('new-image.js', ['only', '--images-dir', empty]);
  t.match(first.json, { failed: false, is_default: true, base_kind: 'added', base_added: 'library/python:3.12-slim' });
  t.same(messages(await lintImages(empty, opts)), [], 'the first image of an empty folder is the default, and its base is listed');
});

t.test('a scaffolded image passes lint and builds on the real engine (fixture busybox base)', async (t) => {
  const env = testEnv();
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'thinkube-scaffold-build-'));
  t.teardown(() => rm(tmp, { recursive: true, force: true }));
  const dir = path.join(tmp, 'images');
  await cp(path.join(repoRoot, 'images'), dir, { recursive: true });
  const name = uniqueName('scaffold');
  const made = await script('new-image.js', [name, '--images-dir', dir, '--from', `\${HARBOR_REGISTRY}/library/busybox:${env.busyboxTag}`, '--no-python']);
  t.match(made.json, { failed: false, template: 'no-python', base_kind: 'added', base_added: `library/busybox:${env.busyboxTag}` });
  t.match(await readFile(path.join(dir, 'bases.yaml'), 'utf8'), `  - library/busybox:${env.busyboxTag}\n`);
  const result = await lintImages(dir, { ...opts, registry: env.registryAnon });
  t.same(messages(result), []);

  // The build goes through the docker CLI for now; the library's buildImage is tested elsewhere.
  const docker = env.dockerCli ?? 'docker';
  const dockerEnv = { ...process.env, DOCKER_HOST: env.dockerHost, DOCKER_BUILDKIT: '0', ...(env.dockerConfigDir ? { DOCKER_CONFIG: env.dockerConfigDir } : {}) };
  const tag = `${env.registryAnon}/library/${name}:test`;
  t.teardown(() => run(docker, ['rmi', '-f', tag], { env: dockerEnv }).catch(() => undefined));
  await run(docker, ['build', '--build-arg', `HARBOR_REGISTRY=${env.registryAnon}`, '-t', tag, path.join(dir, name)], { env: dockerEnv, maxBuffer: 16 * 1024 * 1024 });
  const { stdout } = await run(docker, ['run', '--rm', '--network', 'none', tag, 'cat', `/opt/image/${name}/requirements.txt`], { env: dockerEnv });
  t.equal(stdout, await readFile(path.join(dir, name, 'requirements.txt'), 'utf8'), 'the image carries the requirements file');
  const { stdout: user } = await run(docker, ['image', 'inspect', '--format', '{{.Config.User}}', tag], { env: dockerEnv });
  t.equal(user.trim(), '1000');
});

t.test('the context size limit: a check error over the limit, the scans handed to the caller', async (t) => {
  const images = path.join(repoRoot, 'images');
  const small = await lintImages(images, { ...opts, maxContextBytes: 100 });
  const over = small.problems.filter((p) => p.rule === 'context');
  t.ok(over.length > 0, 'every image with COPY sources is over 100 bytes');
  t.match(over[0].message, /larger than the limit of 100 bytes/);
  t.equal(small.ok, false);
  t.equal(small.contexts.size, 0, 'no scan of a context that failed its check');
  const normal = await lintImages(images, opts);
  t.equal(normal.ok, true);
  t.same([...normal.contexts.keys()].sort(), normal.images.filter((name) => normal.catalog.images.find((i) => i.name === name).dockerfile), 'a scan of each image');
  for (const [name, scan] of normal.contexts) t.equal(scan.dockerfilePath, path.join(images, name, 'Dockerfile'));
  const cli = await script('lint.js', [images, '--max-context-bytes', '100']);
  t.equal(cli.code, 1, 'bin/lint.js takes the limit too');
  t.match(cli.json.problems, [{ rule: 'context' }]);
});
