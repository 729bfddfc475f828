// scripts/check-harbor-contract.js, the comparer .ci/run uses to keep test/contracts/harbor-api.yaml
// equal to Harbor's full swagger: it passes on an identical reference, sees through $refs, and names
// every kind of drift (on copies of the contract mutated in a temporary folder, so this test reads
// nothing outside the checkout).
import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import yaml from 'js-yaml';
import { repoRoot } from './helpers/env.js';
import { compareContracts } from '../scripts/check-harbor-contract.js';

const run = promisify(execFile);
const script = path.join(repoRoot, 'scripts', 'check-harbor-contract.js');
const contract = path.join(repoRoot, 'test', 'contracts', 'harbor-api.yaml');
const original = yaml.load(readFileSync(contract, 'utf8'));
const dir = mkdtempSync(path.join(os.tmpdir(), 'tk-harbor-contract-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const ARTIFACT = '/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}';
let count = 0;
/** A reference swagger: a copy of the contract changed by `mutate`. */
function reference(mutate = () => {}) {
  const doc = structuredClone(original);
  mutate(doc);
  const file = path.join(dir, `reference-${++count}.yaml`);
  writeFileSync(file, yaml.dump(doc));
  return file;
}
const problems = (mutate) => compareContracts(contract, reference(mutate)).problems;
/** Run the script; resolves with { code, stdout } whatever the exit code. */
const cli = (...args) => run(process.execPath, [script, ...args]).then((r) => ({ code: 0, ...r }), (e) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }));

t.test('the contract against an identical reference: no difference, every operation compared', async (t) => {
  const result = compareContracts(contract, reference());
  t.same(result.problems, []);
  t.equal(result.operations, 14, 'the 14 operations the Harbor client calls');
  const ok = await cli(reference());
  t.equal(ok.code, 0);
  t.match(ok.stdout, /^Harbor contract OK: the 14 operations of test\/contracts\/harbor-api\.yaml match /);
});

t.test('$refs are resolved: an inlined parameter or definition is no drift, documentation is ignored', async (t) => {
  t.same(
    problems((doc) => {
      const op = doc.paths[ARTIFACT].get;
      op.parameters = op.parameters.map((p) => (p.$ref === '#/parameters/page' ? structuredClone(doc.parameters.page) : p));
      doc.paths['/projects'].post.parameters.find((p) => p.in === 'body').schema = structuredClone(doc.definitions.ProjectReq);
      doc.definitions.Project.properties.name.description = 'reworded';
      doc.paths['/health'].get.summary = 'reworded';
    }),
    [],
  );
});

t.test('drift is named, operation by operation', async (t) => {
  const cases = [
    ['a parameter that became required', (doc) => {
      doc.paths[ARTIFACT].get.parameters.find((p) => p.name === 'with_scan_overview').required = true;
    }, /^GET \/projects\/\{project_name\}\/repositories\/\{repository_name\}\/artifacts\/\{reference\}: parameter query with_scan_overview\.required: contract false, Harbor true$/],
    ['a parameter renamed', (doc) => {
      doc.paths[ARTIFACT].get.parameters.find((p) => p.name === 'with_tag').name = 'with_tags';
    }, /parameter query with_tag is not in Harbor's operation/],
    ['a new required parameter', (doc) => {
      doc.paths['/projects'].head.parameters.push({ name: 'tenant', in: 'query', required: true, type: 'string' });
    }, /^HEAD \/projects: Harbor has parameter query tenant \(required\) that the contract lacks$/],
    ['a shared parameter whose type changed (behind a $ref)', (doc) => {
      doc.parameters.page.type = 'string';
    }, /^GET .*\/tags: parameter query page\.type: contract "integer", Harbor "string"$/],
    ['a header parameter changed (names compared case-insensitively)', (doc) => {
      doc.parameters.isResourceName.default = true;
    }, /^GET \/projects\/\{project_name_or_id\}: parameter header x-is-resource-name\.default: contract false, Harbor true$/],
    ['a request body property whose type changed, two $refs deep', (doc) => {
      doc.definitions.ProjectMetadata.properties.public.type = 'boolean';
    }, /^POST \/projects: parameter body project\.schema\.properties\.metadata\.properties\.public\.type: contract "string", Harbor "boolean"$/],
    ['a request body enum narrowed', (doc) => {
      doc.definitions.ScanType.properties.scan_type.enum = ['sbom'];
    }, /^POST .*\/scan: parameter body scanType\.schema\.properties\.scan_type\.enum: contract \["vulnerability","sbom"\], Harbor \["sbom"\]$/],
    ['a response schema property removed', (doc) => {
      delete doc.definitions.Tag.properties.name;
    }, /^GET .*\/tags: response 200\.schema\.items\.properties\.name: contract \{"type":"string"\}, Harbor absent$/],
    ['a response header dropped', (doc) => {
      delete doc.paths[`${ARTIFACT}/tags`].get.responses['200'].headers['X-Total-Count'];
    }, /^GET .*\/tags: response 200\.headers\.x-total-count: contract \{"type":"integer"\}, Harbor absent$/],
    ['a status code removed', (doc) => {
      delete doc.paths[`${ARTIFACT}/scan`].post.responses['422'];
    }, /^POST .*\/scan: response 422 is not in Harbor's operation$/],
    ['a status code added', (doc) => {
      doc.paths['/ping'].get.responses['503'] = { description: 'down' };
    }, /^GET \/ping: Harbor has response 503 that the contract lacks$/],
    ['a method gone', (doc) => {
      delete doc.paths['/projects'].head;
    }, /^HEAD \/projects: Harbor has no HEAD on this path \(it has POST\)$/],
    ['a path renamed', (doc) => {
      doc.paths['/users/me/permissions'] = doc.paths['/users/current/permissions'];
      delete doc.paths['/users/current/permissions'];
    }, /^GET \/users\/current\/permissions: Harbor's swagger has no path \/users\/current\/permissions$/],
    ['what an operation produces', (doc) => {
      doc.paths['/ping'].get.produces = ['application/json'];
    }, /^GET \/ping: produces\[?.*contract .*text\/plain.*Harbor .*application\/json/],
    ['the security schemes', (doc) => {
      doc.securityDefinitions.basic.type = 'apiKey';
    }, /^securityDefinitions\.basic\.type: contract "basic", Harbor "apiKey"$/],
    ['the base path', (doc) => {
      doc.basePath = '/api/v3.0';
    }, /^basePath: contract "\/api\/v2\.0", Harbor "\/api\/v3\.0"$/],
  ];
  for (const [what, mutate, expected] of cases) {
    const found = problems(mutate);
    t.ok(found.some((p) => expected.test(p)), `${what}: ${JSON.stringify(found)}`);
  }
});

t.test('the command lists the differences and fails; a missing file is a usage error', async (t) => {
  const drifted = await cli(reference((doc) => {
    doc.parameters.page.type = 'string';
    delete doc.paths['/projects'].head;
  }));
  t.equal(drifted.code, 1);
  t.match(drifted.stdout, /^Harbor contract drift: \d+ differences between test\/contracts\/harbor-api\.yaml and /);
  t.match(drifted.stdout, /\n {2}- HEAD \/projects: Harbor has no HEAD on this path/);
  t.match(drifted.stdout, /\n {2}- GET .*\/tags: parameter query page\.type: contract "integer", Harbor "string"/);
  t.match(drifted.stdout, /Fix: copy the changed operations/);

  const missing = await cli(path.join(dir, 'no-such-swagger.yaml'));
  t.equal(missing.code, 2);
  t.match(missing.stderr, /no-such-swagger\.yaml/);
});
