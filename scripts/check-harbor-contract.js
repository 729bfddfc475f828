#!/usr/bin/env node
// Compares the Harbor API description the tests serve (test/contracts/harbor-api.yaml: only the
// operations our Harbor client calls) with Harbor's full swagger, operation by operation: the
// operation exists, its parameters (in, name, required, type, format, enum, items, default, body
// schema), what it consumes and produces, its security, and its responses by status code (schema
// and headers), every $ref resolved. Documentation (description, summary, example, title) is
// ignored. Prints the differences and exits 1 when there are any; exits 2 when a file cannot be
// read. .ci/run runs it; `npm test` never does (the reference file lives outside the checkout).
//
//   node scripts/check-harbor-contract.js [HARBOR_SWAGGER] [--contract FILE]
//   HARBOR_SWAGGER defaults to ../shared/reference/harbor-v2.0-swagger.yaml (beside the checkout)
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import yaml from 'js-yaml';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DEFAULT_REFERENCE = path.resolve(root, '..', 'shared', 'reference', 'harbor-v2.0-swagger.yaml');
const DEFAULT_CONTRACT = path.join(root, 'test', 'contracts', 'harbor-api.yaml');
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch'];
/** Keys that document but do not constrain. */
const DOC_KEYS = new Set(['description', 'summary', 'example', 'examples', 'title', 'externalDocs', 'tags', 'operationId']);
/** At most this many schema differences per response or body (the first ones say enough). */
const MAX_SCHEMA_DIFFS = 15;

/** Local JSON pointer ("#/definitions/Project") inside `doc`. */
function pointer(doc, ref, file) {
  if (typeof ref !== 'string' || !ref.startsWith('#/')) throw new Error(`${file}: only local $refs are supported, got ${JSON.stringify(ref)}`);
  let node = doc;
  for (const raw of ref.slice(2).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (node === null || typeof node !== 'object' || !(key in node)) throw new Error(`${file}: $ref ${ref} points at nothing`);
    node = node[key];
  }
  return node;
}

/** A swagger document with helpers that resolve its $refs. */
function load(file) {
  const doc = yaml.load(readFileSync(file, 'utf8'));
  if (!doc || typeof doc !== 'object' || !doc.paths) throw new Error(`${file} is not a swagger/OpenAPI document (no paths)`);
  if (doc.swagger !== '2.0') throw new Error(`${file}: only swagger 2.0 documents are supported (swagger: ${JSON.stringify(doc.swagger ?? doc.openapi)})`);
  /** Follow $ref chains of parameters or responses (not schemas: see schema()). */
  const deref = (node) => {
    const seen = new Set();
    while (node && typeof node === 'object' && typeof node.$ref === 'string') {
      if (seen.has(node.$ref)) throw new Error(`${file}: $ref cycle at ${node.$ref}`);
      seen.add(node.$ref);
      node = pointer(doc, node.$ref, file);
    }
    return node;
  };
  /** A schema with every $ref inlined and documentation dropped; a recursive ref stays {$ref}. */
  const schema = (node, stack = []) => {
    if (Array.isArray(node)) return node.map((n) => schema(n, stack));
    if (!node || typeof node !== 'object') return node;
    if (typeof node.$ref === 'string') {
      if (stack.includes(node.$ref)) return { $recursive: node.$ref };
      return schema(pointer(doc, node.$ref, file), [...stack, node.$ref]);
    }
    const out = {};
    for (const [k, v] of Object.entries(node)) {
      if (DOC_KEYS.has(k)) continue;
      // Under "properties" the keys are property names, never documentation keywords.
      out[k] = k === 'properties' && v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([p, s]) => [p, schema(s, stack)])) : schema(v, stack);
    }
    return out;
  };
  return { file, doc, deref, schema };
}

/** The operation's parameters (path-level ones overridden by operation-level), keyed by in + name. */
function parameters(spec, pathItem, op) {
  const out = new Map();
  for (const raw of [...(pathItem.parameters ?? []), ...(op.parameters ?? [])]) {
    const p = spec.deref(raw);
    // Header names are case-insensitive.
    const name = p.in === 'header' ? String(p.name).toLowerCase() : p.name;
    out.set(`${p.in} ${name}`, p);
  }
  return out;
}

/** What of a parameter is compared. */
function parameterFacts(spec, p) {
  const facts = { required: p.required === true };
  for (const key of ['type', 'format', 'enum', 'default', 'collectionFormat', 'minimum', 'maximum', 'maxLength', 'minLength', 'pattern', 'allowEmptyValue']) {
    if (p[key] !== undefined) facts[key] = p[key];
  }
  if (p.items !== undefined) facts.items = spec.schema(p.items);
  if (p.schema !== undefined) facts.schema = spec.schema(p.schema);
  return facts;
}

function responseFacts(spec, raw) {
  const r = spec.deref(raw);
  const facts = {};
  if (r.schema !== undefined) facts.schema = spec.schema(r.schema);
  if (r.headers) {
    facts.headers = Object.fromEntries(
      Object.entries(r.headers)
        .map(([name, h]) => [name.toLowerCase(), spec.schema(h)])
        .sort(([a], [b]) => a.localeCompare(b)),
    );
  }
  return facts;
}

const show = (v) => (v === undefined ? 'absent' : JSON.stringify(v).length > 120 ? `${JSON.stringify(v).slice(0, 117)}...` : JSON.stringify(v));

/** Structural differences of two values: "where: contract X, Harbor Y". */
function diffValues(a, b, where, out) {
  if (JSON.stringify(a) === JSON.stringify(b)) return out;
  const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (isObj(a) && isObj(b)) {
    for (const key of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
      diffValues(a[key], b[key], `${where}.${key}`, out);
    }
    return out;
  }
  if (Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x) => isObj(x))) {
    a.forEach((x, i) => diffValues(x, b[i], `${where}[${i}]`, out));
    return out;
  }
  out.push(`${where}: contract ${show(a)}, Harbor ${show(b)}`);
  return out;
}

function limited(list) {
  return list.length > MAX_SCHEMA_DIFFS ? [...list.slice(0, MAX_SCHEMA_DIFFS), `... and ${list.length - MAX_SCHEMA_DIFFS} more`] : list;
}

/** Every difference between the contract's operations and Harbor's, as readable lines. */
export function compareContracts(contractFile, referenceFile) {
  const contract = load(contractFile);
  const reference = load(referenceFile);
  const problems = [];
  let operations = 0;
  for (const key of ['basePath']) {
    if (contract.doc[key] !== reference.doc[key]) problems.push(`${key}: contract ${show(contract.doc[key])}, Harbor ${show(reference.doc[key])}`);
  }
  for (const [name, def] of Object.entries(contract.doc.securityDefinitions ?? {})) {
    diffValues(contract.schema(def), reference.schema(reference.doc.securityDefinitions?.[name]), `securityDefinitions.${name}`, problems);
  }
  for (const [route, item] of Object.entries(contract.doc.paths)) {
    const upstreamItem = reference.doc.paths[route];
    const methods = METHODS.filter((m) => item[m]);
    if (!upstreamItem) {
      problems.push(`${methods.map((m) => m.toUpperCase()).join(', ')} ${route}: Harbor's swagger has no path ${route}`);
      continue;
    }
    for (const method of methods) {
      operations++;
      const op = item[method];
      const where = `${method.toUpperCase()} ${route}`;
      const upstream = upstreamItem[method];
      if (!upstream) {
        problems.push(`${where}: Harbor has no ${method.toUpperCase()} on this path (it has ${METHODS.filter((m) => upstreamItem[m]).map((m) => m.toUpperCase()).join(', ') || 'none'})`);
        continue;
      }
      // Parameters.
      const ours = parameters(contract, item, op);
      const theirs = parameters(reference, upstreamItem, upstream);
      for (const [id, p] of ours) {
        const q = theirs.get(id);
        if (!q) {
          problems.push(`${where}: parameter ${id} is not in Harbor's operation`);
          continue;
        }
        const diffs = diffValues(parameterFacts(contract, p), parameterFacts(reference, q), `parameter ${id}`, []);
        for (const d of limited(diffs)) problems.push(`${where}: ${d}`);
      }
      for (const [id, q] of theirs) {
        if (!ours.has(id)) problems.push(`${where}: Harbor has parameter ${id}${q.required ? ' (required)' : ''} that the contract lacks`);
      }
      // Media types and security (operation-level, else the document's).
      for (const key of ['consumes', 'produces', 'security']) {
        const a = op[key] ?? contract.doc[key];
        const b = upstream[key] ?? reference.doc[key];
        for (const d of diffValues(a, b, key, [])) problems.push(`${where}: ${d}`);
      }
      // Responses by status code.
      const codes = [...new Set([...Object.keys(op.responses ?? {}), ...Object.keys(upstream.responses ?? {})])].sort();
      for (const code of codes) {
        const a = op.responses?.[code];
        const b = upstream.responses?.[code];
        if (!b) {
          problems.push(`${where}: response ${code} is not in Harbor's operation`);
          continue;
        }
        if (!a) {
          problems.push(`${where}: Harbor has response ${code} that the contract lacks`);
          continue;
        }
        const diffs = diffValues(responseFacts(contract, a), responseFacts(reference, b), `response ${code}`, []);
        for (const d of limited(diffs)) problems.push(`${where}: ${d}`);
      }
    }
  }
  return { operations, problems };
}

function main(argv) {
  const args = [...argv];
  let contractFile = DEFAULT_CONTRACT;
  const i = args.indexOf('--contract');
  if (i >= 0) {
    contractFile = path.resolve(args[i + 1] ?? '');
    args.splice(i, 2);
  }
  if (args.includes('--help') || args.length > 1) {
    console.log('Usage: node scripts/check-harbor-contract.js [HARBOR_SWAGGER] [--contract FILE]');
    console.log(`  HARBOR_SWAGGER  Harbor's full swagger (default ${path.relative(process.cwd(), DEFAULT_REFERENCE) || DEFAULT_REFERENCE})`);
    console.log(`  --contract      the description the tests serve (default ${path.relative(root, DEFAULT_CONTRACT)})`);
    return args.includes('--help') ? 0 : 2;
  }
  const referenceFile = path.resolve(args[0] ?? DEFAULT_REFERENCE);
  let result;
  try {
    result = compareContracts(contractFile, referenceFile);
  } catch (error) {
    console.error(`check-harbor-contract: ${error.message}`);
    if (error.code === 'ENOENT') console.error(`Give the path of Harbor's swagger (api/v2.0/swagger.yaml of the Harbor release) as the first argument.`);
    return 2;
  }
  const { operations, problems } = result;
  if (problems.length === 0) {
    console.log(`Harbor contract OK: the ${operations} operations of ${path.relative(root, contractFile)} match ${referenceFile}`);
    return 0;
  }
  console.log(`Harbor contract drift: ${problems.length} difference${problems.length === 1 ? '' : 's'} between ${path.relative(root, contractFile)} and ${referenceFile}:`);
  for (const p of problems) console.log(`  - ${p}`);
  console.log('Fix: copy the changed operations (and the parameters, responses and definitions they use) from');
  console.log(`Harbor's swagger into ${path.relative(root, contractFile)}, adapt lib/harbor/ if the API changed, and run`);
  console.log('node scripts/run-tests.js test/harbor-prism.test.js.');
  return 1;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = main(process.argv.slice(2));
}
