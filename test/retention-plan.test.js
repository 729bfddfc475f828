// Input-tag retention without a service: the plan (lib/publish/retention.ts planRetention) as
// properties over random repositories, and the Harbor path against the Harbor stand-in (its
// artifact list, tag and artifact deletes; the requests themselves are checked against Harbor's
// swagger by test/harbor-prism.test.js). The real registry path: test/retention.test.js.
import t from 'tap';
import fc from 'fast-check';
import { planRetention, retainInputTags, isInputTag, isWorkflowTag } from '../dist/lib/publish/retention.js';
import { HarborClient } from '../dist/lib/harbor/client.js';
import { RegistryClient } from '../dist/lib/registry/client.js';
import { startHarborStandin, fakeDigest } from './helpers/harbor-standin.js';
import { FC_SEED, assertProperty } from './helpers/fast-check.js';

t.comment(`FC_SEED=${FC_SEED}`);

const inTag = (n) => `in-${n.toString(16).padStart(32, '0')}`;
const digest = (n) => `sha256:${n.toString(16).padStart(64, '0')}`;

/** A random repository: images with creation times, input tags on them, other tags, indexes naming some images. */
const repositoryArb = fc
  .record({
    images: fc.array(fc.option(fc.integer({ min: 0, max: 50 }), { nil: undefined }), { minLength: 1, maxLength: 12 }),
    inputs: fc.array(fc.nat(), { maxLength: 16 }),
    others: fc.array(fc.nat(), { maxLength: 4 }),
    index: fc.array(fc.nat(), { maxLength: 3 }),
    keep: fc.integer({ min: 0, max: 8 }),
    current: fc.array(fc.nat(), { maxLength: 2 }),
  })
  .map(({ images, inputs, others, index, keep, current }) => {
    const tags = new Map();
    const created = new Map();
    images.forEach((c, i) => created.set(digest(i + 1), c === undefined ? undefined : new Date(Date.UTC(2026, 0, 1, 0, c)).toISOString()));
    inputs.forEach((n, i) => tags.set(inTag(i + 1), digest((n % images.length) + 1)));
    others.forEach((n, i) => tags.set(`v${i}`, digest((n % images.length) + 1)));
    const indexes = new Map();
    if (index.length) {
      indexes.set(digest(999), index.map((n) => digest((n % images.length) + 1)));
      tags.set('multi', digest(999));
    }
    const inputTags = [...tags.keys()].filter(isInputTag);
    const cur = inputTags.length ? current.map((n) => inputTags[n % inputTags.length]) : [];
    return { inventory: { tags, indexes, pinned: new Set(), created }, keep, current: cur };
  });

t.test('the plan: never an image another tag or an index names, this run\'s tags kept, at most keep left', async (t) => {
  assertProperty(
    'retention plan',
    fc.property(repositoryArb, ({ inventory, keep, current }) => {
      const plan = planRetention(inventory, { keep, current });
      const inputTags = [...inventory.tags.keys()].filter(isInputTag);
      const removed = new Set([...plan.deletes.flatMap((d) => d.tags), ...plan.untags.map((u) => u.tag)]);
      for (const tag of current) if (removed.has(tag)) return false;
      if (keep === 0) return removed.size === 0;
      // What is left: at most keep input tags, or the current ones when they alone are more.
      if (inputTags.filter((tag) => !removed.has(tag)).length > Math.max(keep, new Set(current).size)) return false;
      const deleted = new Set(plan.deletes.map((d) => d.digest));
      for (const [tag, d] of inventory.tags) {
        if (removed.has(tag)) continue;
        if (deleted.has(d)) return false; // a tag that stays would lose its image
        for (const child of inventory.indexes.get(d) ?? []) if (deleted.has(child)) return false;
      }
      // A delete takes every stale tag of its image; an untag leaves an image in use.
      for (const d of plan.deletes) if ([...inventory.tags].some(([tag, x]) => x === d.digest && !d.tags.includes(tag))) return false;
      // Kept non-current tags are never older than removed ones.
      const when = (tag) => inventory.created.get(inventory.tags.get(tag)) ?? '';
      const keptOthers = plan.kept.filter((tag) => !current.includes(tag));
      for (const k of keptOthers) for (const r of removed) if (when(k) < when(r)) return false;
      return true;
    }),
    { numRuns: 500 },
  );
});

t.test('the plan: newest by creation time, ties by name, undated oldest; published tags override', async (t) => {
  const tags = new Map([
    [inTag(1), digest(1)],
    [inTag(2), digest(2)],
    [inTag(3), digest(3)],
    [inTag(4), digest(4)],
    ['latest', digest(1)],
  ]);
  const created = new Map([
    [digest(1), '2026-01-01T00:00:00.000Z'],
    [digest(2), '2026-03-01T00:00:00.000Z'],
    [digest(3), undefined],
    [digest(4), '2026-02-01T00:00:00.000Z'],
  ]);
  const inventory = { tags, indexes: new Map(), pinned: new Set(), created };
  const plan = planRetention(inventory, { keep: 2, current: [inTag(5)] });
  t.same(plan.kept, [inTag(5), inTag(2)], 'this run first, then the newest');
  t.same(plan.deletes, [{ digest: digest(3), tags: [inTag(3)] }, { digest: digest(4), tags: [inTag(4)] }]);
  t.same(plan.untags, [{ digest: digest(1), tag: inTag(1) }], 'latest still names image 1: its input tag can go alone, the image stays');
  // Once the publish moves latest elsewhere, image 1 is free: check mode sees it through `published`.
  const moved = planRetention(inventory, { keep: 2, current: [inTag(5)], published: new Map([['latest', 'pending:tags'], [inTag(5), 'pending:native']]) });
  t.same(moved.deletes.map((d) => d.digest).sort(), [digest(1), digest(3), digest(4)].sort());
  t.same(moved.untags, []);
  t.same(planRetention(inventory, { keep: 0, current: [] }).deletes, [], '0 keeps every input tag');
});

t.test('the plan: tags a cluster build pushed before its input digest was known are always stale', async (t) => {
  const uid = '3f0c2a5e-9b1d-4c7e-8a2f-0123456789ab';
  t.ok(isWorkflowTag(`build-${uid}-amd64`) && isWorkflowTag(`build-${uid}`) && isWorkflowTag(`build-${uid}-native`));
  t.notOk(isWorkflowTag('build-latest') || isWorkflowTag(`build-${uid.toUpperCase()}`) || isWorkflowTag(inTag(1)), 'other tags are not');
  const tags = new Map([
    [inTag(1), digest(1)],
    [`build-${uid}-native`, digest(1)], // re-tagged to in-1: the image stays, the tag goes alone
    [`build-${uid}`, digest(2)], // the Workflow's own index, named by nothing else: deleted
    ['latest', digest(1)],
  ]);
  const created = new Map([[digest(1), '2026-01-01T00:00:00Z'], [digest(2), '2026-01-01T00:00:00Z']]);
  const plan = planRetention({ tags, indexes: new Map(), pinned: new Set(), created }, { keep: 5, current: [inTag(1)] });
  t.same(plan.kept, [inTag(1)], 'the input tag is kept');
  t.same(plan.untags, [{ digest: digest(1), tag: `build-${uid}-native` }]);
  t.same(plan.deletes, [{ digest: digest(2), tags: [`build-${uid}`] }]);
  t.same(planRetention({ tags, indexes: new Map(), pinned: new Set(), created }, { keep: 0, current: [] }).untags, [], 'keep 0 keeps everything');
});

t.test('Harbor: stale tags deleted alone where the image is in use, else the artifact; check mode deletes nothing and predicts the same', async (t) => {
  const day = (d) => `2026-01-${String(d).padStart(2, '0')}T00:00:00Z`;
  const img = (n) => fakeDigest(`image-${n}`);
  const project = 'library';
  const repository = 'team/app';
  const artifacts = [
    // Five builds, oldest first; the newest is latest; the first carries a version tag too.
    { project, repository, digest: img(1), tags: [inTag(1), 'v1'], created: day(1) },
    { project, repository, digest: img(2), tags: [inTag(2)], labels: { 'org.opencontainers.image.created': day(2) }, created: day(20) },
    { project, repository, digest: img(3), tags: [inTag(3)], created: day(3) },
    { project, repository, digest: img(4), tags: [inTag(4)], created: day(4) },
    { project, repository, digest: img(5), tags: [inTag(5), 'latest'], created: day(5) },
    // A platform image of an index that a tag names, and one of an untagged (earlier) index.
    { project, repository, digest: img(6), tags: [inTag(6)], created: day(0) },
    { project, repository, digest: fakeDigest('index-a'), tags: ['multi'], references: [img(6)] },
    { project, repository, digest: img(7), tags: [inTag(7)], created: day(0) },
    { project, repository, digest: fakeDigest('index-b'), tags: [], references: [img(7)] },
  ];
  const s = await startHarborStandin({ artifacts });
  t.teardown(() => s.close());
  const harbor = new HarborClient({ url: s.url, username: 'admin', password: 'Harbor12345' });
  const client = new RegistryClient({ registry: s.host });
  const target = { client, repository: `${project}/${repository}`, harbor };
  const options = { keep: 2, current: [inTag(5)] };

  const before = s.requests.length;
  const check = await retainInputTags(target, { ...options, dryRun: true });
  t.equal(s.requests.slice(before).filter((r) => r.method === 'DELETE').length, 0, 'check mode sends no DELETE');
  t.equal(check.harbor, true, "Harbor's API was used");
  const real = await retainInputTags(target, options);
  t.same(check, real, 'check mode predicts the real run exactly');
  t.same(real.kept, [inTag(4), inTag(5)], 'kept: this run and the newest (image 2 is dated by its label, not its config time)');
  t.same(real.removedDigests.sort(), [img(2), img(3)].sort(), 'artifacts nothing else names are deleted');
  t.same(real.removedTags, [inTag(1), inTag(2), inTag(3), inTag(6), inTag(7)].sort(), 'every stale input tag goes');
  t.equal(real.warning, undefined);
  const deletes = s.requests.slice(before).filter((r) => r.method === 'DELETE').map((r) => decodeURIComponent(r.rawPath).replace(/^.*\/artifacts\//, ''));
  t.same(deletes.sort(), [img(2), img(3), `${img(1)}/tags/${inTag(1)}`, `${img(6)}/tags/${inTag(6)}`, `${img(7)}/tags/${inTag(7)}`].sort(), 'tags alone where the image is in use (v1, an index), artifacts otherwise');
  const left = [...s.state.artifacts.values()].filter((a) => a.repository === repository);
  t.same(left.map((a) => a.digest).sort(), [img(1), img(4), img(5), img(6), img(7), fakeDigest('index-a'), fakeDigest('index-b')].sort(), 'v1, the kept images and both indexes\' platforms stay');
  t.same(left.flatMap((a) => a.tags.map((x) => x.name)).filter(isInputTag).sort(), [inTag(4), inTag(5)].sort(), 'two input tags left');

  const again = await retainInputTags(target, options);
  t.same(again.removedTags, [], 'a second pass removes nothing');
});

t.test('Harbor refuses the delete (no permission): a warning naming the cause, no failure', async (t) => {
  const s = await startHarborStandin({
    users: { admin: 'Harbor12345', reader: 'reader-secret' },
    readOnly: ['reader'],
    artifacts: [
      { project: 'library', repository: 'app', digest: fakeDigest('a'), tags: [inTag(1)], created: '2026-01-01T00:00:00Z' },
      { project: 'library', repository: 'app', digest: fakeDigest('b'), tags: [inTag(2), 'latest'], created: '2026-01-02T00:00:00Z' },
    ],
  });
  t.teardown(() => s.close());
  const harbor = new HarborClient({ url: s.url, username: 'reader', password: 'reader-secret' });
  const result = await retainInputTags({ client: new RegistryClient({ registry: s.host }), repository: 'library/app', harbor }, { keep: 1, current: [inTag(2)] });
  t.match(result.warning, /old input tags not \(all\) removed: .*does not allow user "reader"/);
  t.notMatch(result.warning, /reader-secret/, 'no secret in the warning');
  t.same(result.removedTags, []);
  t.equal([...s.state.artifacts.values()].length, 2, 'nothing deleted');
});

t.test('a plain registry (no Harbor API at the host): the registry API is used', async (t) => {
  // The stand-in without its Harbor API: a registry whose /api/v2.0/ping answers 404.
  const s = await startHarborStandin({ artifacts: [] });
  t.teardown(() => s.close());
  const harbor = new HarborClient({ url: `${s.url}/nothing-here`, username: 'admin', password: 'Harbor12345' });
  const result = await retainInputTags({ client: new RegistryClient({ registry: s.host }), repository: 'library/none', harbor }, { keep: 0, current: [] });
  t.same(result, { keep: 0, removedTags: [], removedDigests: [], kept: [], harbor: false }, 'keep 0: nothing read, nothing removed');
});
