// The scan gate as a pipeline step: the pushed digest is scanned by Harbor (the stateful stand-in,
// which follows Harbor's API; images go to the real registry beside it), an image with findings
// at or above maxSeverity fails and is not registered, the images built on it are skipped, and
// each result carries the counts by severity. Check mode scans nothing.
import t from 'tap';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, existsSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { testEnv, uniqueName } from './helpers/env.js';
import { startHarborStandin } from './helpers/harbor-standin.js';
import { runPipeline } from '../dist/lib/pipeline/pipeline.js';

const env = await testEnv();

/** base (FROM busybox) and child (FROM base), in the authenticated registry. */
function imagesDir(t, p) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tk-scan-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'bases.yaml'), 'bases:\n  - library/busybox:1.35\n');
  const image = (name, from, isDefault) => {
    mkdirSync(path.join(dir, name));
    writeFileSync(path.join(dir, name, 'Dockerfile'), `ARG HARBOR_REGISTRY\nFROM \${HARBOR_REGISTRY}/${from}\nRUN echo ${name} > /name\n`);
    writeFileSync(path.join(dir, name, 'image.yaml'), `name: ${name}\ndisplay_name: Scan ${name}\ndescription: Fixture ${name}\ncategory: jupyter\nmetadata:\n  default: ${isDefault}\n  purpose: jupyter\n`);
  };
  image(`${p}-base`, 'library/busybox:1.35', true);
  image(`${p}-child`, `library/${p}-base:latest`, false);
  return dir;
}

async function harbor(t, scanOf) {
  const standin = await startHarborStandin({
    users: { [env.registryUser]: env.registryPassword },
    pushed: (project, repository) => ({ scan: scanOf(repository) }),
  });
  t.teardown(() => standin.close());
  return standin;
}

function options(dir, standin, catalogPath, scan = {}) {
  return {
    imagesDir: dir,
    registry: env.registryAuth,
    auth: { username: env.registryUser, password: env.registryPassword },
    engine: { host: env.dockerHost },
    registration: { target: 'catalog', catalogPath },
    scan: { enabled: true, harborUrl: standin.url, timeoutSeconds: 60, ...scan },
  };
}

const scans = (standin) => [...standin.state.artifacts.values()].reduce((n, a) => n + a.scanRequests, 0);

t.test('findings below the gate: every image is scanned after its push, registered with its counts', async (t) => {
  const p = uniqueName('scanok');
  const dir = imagesDir(t, p);
  const standin = await harbor(t, () => ({ outcome: 'Success', counts: { High: 2, Low: 1 }, pendingPolls: 1, runningPolls: 1 }));
  const catalogPath = path.join(dir, 'catalog.json');
  const result = await runPipeline(options(dir, standin, catalogPath, { maxSeverity: 'critical' }));
  t.equal(result.failed, false, JSON.stringify(result.images.map((i) => i.error?.message)));
  for (const image of result.images) {
    t.equal(image.scan.status, 'Success', `${image.name}: scanned`);
    t.match(image.scan.counts, { critical: 0, high: 2, medium: 0, low: 1 }, `${image.name}: counts by severity`);
    const artifact = [...standin.state.artifacts.values()].find((a) => a.repository === image.name);
    t.equal(artifact?.digest, image.digest, `${image.name}: Harbor scanned the pushed digest`);
    const registered = JSON.parse(readFileSync(catalogPath, 'utf8')).images[image.name];
    t.ok(registered, `${image.name}: registered after the gate`);
    t.same(registered.vulnerabilities, { critical: 0, high: 2, medium: 0, low: 1 }, `${image.name}: the counts are in the registered entry`);
    t.equal(registered.scan_status, 'Success');
  }
  t.equal(scans(standin), 2, 'one scan per image');

  // Check mode afterwards predicts the registration from Harbor's last scan (read, not started): nothing changes.
  const requestsBefore = scans(standin);
  const check = await runPipeline(options(dir, standin, catalogPath, { maxSeverity: 'critical' }), { checkMode: true });
  for (const image of check.images) {
    t.equal(image.changed, false, `${image.name}: check mode predicts no change`);
    t.equal(image.registration.outcome, 'unchanged');
  }
  t.equal(scans(standin), requestsBefore, 'check mode started no scan');
  const again = await runPipeline(options(dir, standin, catalogPath, { maxSeverity: 'critical' }));
  for (const image of again.images) t.equal(image.changed, false, `${image.name}: and the real run changes nothing`);
});

t.test('without the gate the entry says not scanned, not zeros', async (t) => {
  const p = uniqueName('scanoff');
  const dir = imagesDir(t, p);
  const standin = await harbor(t, () => ({ outcome: 'Success', counts: {} }));
  const catalogPath = path.join(dir, 'catalog.json');
  const result = await runPipeline({ ...options(dir, standin, catalogPath), scan: { enabled: false } });
  t.equal(result.failed, false);
  for (const image of result.images) {
    const registered = JSON.parse(readFileSync(catalogPath, 'utf8')).images[image.name];
    t.equal(registered.scan_status, 'not-scanned');
    t.notOk('vulnerabilities' in registered, `${image.name}: no counts`);
  }
});

t.test('a critical finding fails the image before registration; its dependant is skipped', async (t) => {
  const p = uniqueName('scanbad');
  const dir = imagesDir(t, p);
  const standin = await harbor(t, (repository) => (repository.endsWith('-base') ? { outcome: 'Success', counts: { Critical: 1, Medium: 3 } } : { outcome: 'Success', counts: {} }));
  const catalogPath = path.join(dir, 'catalog.json');
  const events = [];
  const result = await runPipeline(options(dir, standin, catalogPath), { onEvent: (e) => events.push(e) });
  const [base, child] = result.images;
  t.equal(result.failed, true);
  // The child may be planned once the base is published, but is built only after the base's gate.
  t.notOk(events.some((e) => e.type === 'build-context' && path.basename(e.context) === `${p}-child`), 'the dependant was never built');
  t.equal(base.status, 'failed');
  t.equal(base.error.code, 'ERR_SCAN_GATE');
  t.match(base.error.message, /severity critical or worse/);
  t.match(base.scan, { status: 'Success', passed: false, counts: { critical: 1, medium: 3 } }, 'the counts are in the result');
  t.notOk(base.registration, 'no registration attempted');
  t.notOk(existsSync(catalogPath) && JSON.parse(readFileSync(catalogPath, 'utf8')).images?.[base.name], 'not registered');
  t.equal(child.status, 'skipped');
  t.match(child.reason, new RegExp(`builds on ${p}-base`));
});

t.test('a scan that fails or never ends fails the image', async (t) => {
  const p = uniqueName('scanerr');
  const dir = imagesDir(t, p);
  const standin = await harbor(t, (repository) => (repository.endsWith('-base') ? { outcome: 'Error' } : { outcome: 'Success', counts: {} }));
  const result = await runPipeline({ ...options(dir, standin, path.join(dir, 'catalog.json')), images: [`${p}-base`] });
  t.equal(result.images[0].status, 'failed');
  t.equal(result.images[0].error.code, 'ERR_SCAN_GATE');
  t.equal(result.images[0].scan.status, 'Error');
});

t.test('check mode scans nothing and says the scan runs after the push', async (t) => {
  const p = uniqueName('scanchk');
  const dir = imagesDir(t, p);
  const standin = await harbor(t, () => ({ outcome: 'Success', counts: { Critical: 5 } }));
  const result = await runPipeline(options(dir, standin, path.join(dir, 'catalog.json')), { checkMode: true });
  t.equal(result.failed, false);
  for (const image of result.images) t.match(image.scan, { status: 'not-run' }, `${image.name}: not scanned in check mode`);
  t.equal(scans(standin), 0, 'no scan requested');
  // Harbor is only read (input-tag retention plans on its artifact list): nothing written, no scan.
  t.same(standin.requests.filter((r) => r.method !== 'GET').map((r) => `${r.method} ${r.rawPath}`), [], 'nothing sent to Harbor but reads');
  t.notOk(standin.requests.some((r) => /\/scan(\?|$)/.test(r.rawUrl) || /scan_overview=true/.test(r.rawUrl)), 'no scan or scan overview asked for');
});
