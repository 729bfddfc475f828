// A stateful stand-in of thinkube-control's image registration API (the contract in
// schemas/control-api.schema.json), following FastAPI's conventions: JSON {"detail": ...} errors,
// 401 with WWW-Authenticate: Bearer, ApiKey realm="api", 404 "Not Found" for unknown routes, 405
// "Method Not Allowed" for a known route with another method, 422 with a list of field problems.
// Knobs: failNext (injected 5xx, optionally after storing, like a gateway that times out after the
// backend committed), setEndpoint ('present' | 'absent' like today's thinkube-control | 'read-only'
// where only GET routes exist), and a request log that records whether auth was valid, never the
// token itself.
//
// thinkube-control's real image API as it is today (shared/reference/thinkube.md, "thinkube-
// control's image API, precisely"), when started with `kube: { url, token }`:
// - POST /api/v1/harbor/images/sync (no body): lists the ConfigMaps labelled
//   thinkube.io/image-manifest=true in every namespace FROM THE KUBERNETES STAND-IN over HTTP (a
//   failed list is 500), and upserts each manifest entry into its rows in one transaction: the
//   thinkube.io/category label must be system or user, each entry needs name, registry,
//   repository, destination_url, its category system/user, mirror_date ISO or absent; one bad
//   entry rolls the whole run back (500 {"detail"}). Rows are unique on registry/repository/tag;
//   on an existing row only description, category, protected, metadata and last_synced change.
//   Digest, size_bytes and vulnerabilities are not read (vulnerabilities stays null).
// - GET /api/v1/harbor/images?search=&category=&skip=&limit=: 200 {total, skip, limit, images}.
// Any valid token is accepted on these routes (no scope is checked); 401 without one.
import http from 'node:http';
import https from 'node:https';
import { randomBytes, randomUUID } from 'node:crypto';
import { Ajv } from 'ajv';
import { schemaDocuments } from '../../dist/lib/options/generated/schemas.js';

const PREFIX = '/api/v1/images';
const CONTRACT = schemaDocuments['control-api.schema.json'];
const FIELDS = Object.keys(CONTRACT.definitions.registeredImage.properties);

let validator;
function validateEntry(body) {
  if (!validator) {
    // strict off: the contract carries this project's annotation keywords (errorMessage, x-secret).
    const ajv = new Ajv({ allErrors: true, strict: false });
    for (const doc of Object.values(schemaDocuments)) ajv.addSchema(doc);
    validator = ajv.getSchema(`${CONTRACT.$id}#/definitions/registeredImage`);
  }
  if (validator(body)) return [];
  return validator.errors.map((e) => {
    const loc = ['body', ...e.instancePath.split('/').slice(1).map((p) => (/^\d+$/.test(p) ? Number(p) : p))];
    if (e.keyword === 'required') return { type: 'missing', loc: [...loc, e.params.missingProperty], msg: 'Field required' };
    if (e.keyword === 'additionalProperties') return { type: 'extra_forbidden', loc: [...loc, e.params.additionalProperty], msg: 'Extra inputs are not permitted' };
    return { type: e.keyword, loc, msg: e.message };
  });
}

/** A stored record as FastAPI's response_model would serialize it: unset optionals are null. */
function serialize(record) {
  const out = { id: record.id };
  for (const f of FIELDS) out[f] = record[f] ?? null;
  out.created_at = record.created_at;
  out.updated_at = record.updated_at;
  return out;
}

export async function startControlStandin(options = {}) {
  const token = options.token ?? `tk_${randomBytes(24).toString('hex')}`;
  // A valid token without the right to write images: writes get 403.
  const readOnlyToken = options.readOnlyToken;
  const images = new Map();
  const requests = [];
  // thinkube-control's database rows (container_images), keyed registry/repository:tag.
  const rows = new Map();
  let nextRowId = 1;
  const kube = options.kube;
  let failures = [];
  let endpoint = options.endpoint ?? 'present';

  function send(res, status, body, headers = {}) {
    const text = body === undefined ? '' : JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(text);
    return status;
  }

  function authorize(req) {
    const header = req.headers.authorization;
    if (!header) return 'missing';
    if (header === `Bearer ${token}`) return 'valid';
    if (readOnlyToken && header === `Bearer ${readOnlyToken}`) return 'read-only';
    return 'invalid';
  }

  /** One sync run over every labelled ConfigMap: all rows change, or none (a rollback). */
  async function sync(res) {
    if (!kube) return send(res, 500, { detail: 'Failed to sync images: no Kubernetes API configured' });
    let list;
    try {
      // Like thinkube-control's service account: list_config_map_for_all_namespaces with a label selector.
      const answer = await kubeGet(`${kube.url}/api/v1/configmaps?labelSelector=${encodeURIComponent('thinkube.io/image-manifest=true')}`, kube.token, kube.ca);
      if (answer.status !== 200) return send(res, 500, { detail: `Failed to sync images: listing ConfigMaps answered ${answer.status}` });
      list = JSON.parse(answer.body);
    } catch (error) {
      return send(res, 500, { detail: `Failed to sync images: ${error.message}` });
    }
    const work = new Map([...rows].map(([k, v]) => [k, structuredClone(v)]));
    let created = 0;
    let updated = 0;
    const now = new Date().toISOString();
    try {
      for (const cm of list.items) {
        const where = `${cm.metadata.namespace}/${cm.metadata.name}`;
        const label = cm.metadata.labels?.['thinkube.io/category'];
        if (label !== 'system' && label !== 'user') throw new Error(`ConfigMap ${where}: invalid category ${JSON.stringify(label)}`);
        const manifest = JSON.parse(cm.data?.['manifest.json'] ?? '{"images": []}');
        for (const e of manifest.images ?? []) {
          for (const f of ['name', 'registry', 'repository', 'destination_url']) if (typeof e[f] !== 'string' || !e[f]) throw new Error(`ConfigMap ${where}: entry without ${f}`);
          const category = e.category ?? label;
          if (category !== 'system' && category !== 'user') throw new Error(`ConfigMap ${where}: invalid category ${JSON.stringify(category)} for ${e.name}`);
          let mirrorDate = now;
          if (e.mirror_date) {
            if (typeof e.mirror_date !== 'string' || Number.isNaN(Date.parse(e.mirror_date))) throw new Error(`ConfigMap ${where}: invalid mirror_date for ${e.name}`);
            mirrorDate = e.mirror_date;
          }
          const tag = e.tag || 'latest';
          const k = `${e.registry}/${e.repository}:${tag}`;
          const old = work.get(k);
          if (old) {
            Object.assign(old, { description: e.description ?? old.description, category, protected: Boolean(e.protected), metadata: e.metadata ?? {}, last_synced: now });
            updated += 1;
          } else {
            work.set(k, {
              id: nextRowId++,
              name: e.name,
              registry: e.registry,
              repository: e.repository,
              tag,
              source_url: e.source_url ?? null,
              destination_url: e.destination_url,
              description: e.description ?? null,
              category,
              source: e.source ?? 'mirrored',
              protected: Boolean(e.protected),
              mirror_date: mirrorDate,
              harbor_project: e.harbor_project ?? 'library',
              metadata: e.metadata ?? {},
              digest: null,
              size_bytes: null,
              vulnerabilities: null,
              last_synced: now,
            });
            created += 1;
          }
        }
      }
    } catch (error) {
      // One bad entry: the session rolls back, nothing of this run is kept.
      return send(res, 500, { detail: `Failed to sync images: ${error.message}` });
    }
    rows.clear();
    for (const [k, v] of work) rows.set(k, v);
    return send(res, 200, { message: 'Images synced', created, updated, total: list.items.length });
  }

  function publicRow(row) {
    return structuredClone(row);
  }

  /** thinkube-control's /api/v1/harbor/images routes; undefined when the path is not one. */
  async function harborRoute(req, res, auth) {
    const url = new URL(req.url, 'http://standin');
    const p = url.pathname.replace(/\/+$/, '');
    if (p !== '/api/v1/harbor/images' && p !== '/api/v1/harbor/images/sync') return undefined;
    const allowed = p.endsWith('/sync') ? ['POST'] : ['GET', 'POST'];
    if (!allowed.includes(req.method)) return send(res, 405, { detail: 'Method Not Allowed' }, { allow: allowed.join(', ') });
    if (auth === 'missing' || auth === 'invalid') return send(res, 401, { detail: 'Not authenticated' }, { 'www-authenticate': 'Bearer, ApiKey realm="api"' });
    if (p.endsWith('/sync')) return sync(res);
    if (req.method === 'POST') return send(res, 400, { detail: 'Only mirroring of external images is supported here (source_url)' });
    const search = (url.searchParams.get('search') ?? '').toLowerCase();
    const category = url.searchParams.get('category');
    const skip = Number(url.searchParams.get('skip') ?? 0);
    const limit = Number(url.searchParams.get('limit') ?? 50);
    const found = [...rows.values()]
      .filter((r) => !search || [r.name, r.repository, r.description ?? ''].some((v) => v.toLowerCase().includes(search)))
      .filter((r) => !category || r.category === category)
      .sort((a, b) => a.id - b.id);
    return send(res, 200, { total: found.length, skip, limit, images: found.slice(skip, skip + limit).map(publicRow) });
  }

  function route(req, res, body, auth) {
    const url = new URL(req.url, 'http://standin');
    const p = url.pathname;
    const method = req.method;
    if (p !== PREFIX && !p.startsWith(`${PREFIX}/`)) return send(res, 404, { detail: 'Not Found' });
    const name = p === PREFIX ? undefined : decodeURIComponent(p.slice(PREFIX.length + 1));
    if (name !== undefined && (name === '' || name.includes('/'))) return send(res, 404, { detail: 'Not Found' });
    if (endpoint === 'absent') return send(res, 404, { detail: 'Not Found' });
    const allowed = endpoint === 'read-only' ? ['GET'] : name === undefined ? ['GET', 'POST'] : ['GET', 'PUT', 'DELETE'];
    if (!allowed.includes(method)) return send(res, 405, { detail: 'Method Not Allowed' }, { allow: allowed.join(', ') });
    // Like thinkube-control, the authentication dependency runs before the body is validated.
    if (auth === 'missing') return send(res, 401, { detail: 'Not authenticated' }, { 'www-authenticate': 'Bearer, ApiKey realm="api"' });
    if (auth === 'invalid') return send(res, 401, { detail: 'Invalid or expired token' }, { 'www-authenticate': 'Bearer, ApiKey realm="api"' });
    if (auth === 'read-only' && method !== 'GET') return send(res, 403, { detail: 'Not enough permissions' });
    if (endpoint === 'read-only' && name !== undefined) return send(res, 404, { detail: 'Image not found' });

    if (method === 'GET' && name === undefined) return send(res, 200, { images: [...images.values()].map(serialize) });
    if (method === 'GET') {
      const record = images.get(name);
      return record ? send(res, 200, serialize(record)) : send(res, 404, { detail: 'Image not found' });
    }
    if (method === 'DELETE') {
      if (!images.delete(name)) return send(res, 404, { detail: 'Image not found' });
      return send(res, 200, { message: `Image ${name} deleted` });
    }
    // POST / PUT: a JSON body that the contract accepts.
    let parsed;
    try {
      parsed = JSON.parse(body);
    } catch {
      return send(res, 422, { detail: [{ type: 'json_invalid', loc: ['body', 0], msg: 'JSON decode error' }] });
    }
    const problems = validateEntry(parsed);
    if (problems.length) return send(res, 422, { detail: problems });
    const now = new Date().toISOString();
    if (method === 'POST') {
      if (images.has(parsed.name)) return send(res, 409, { detail: `Image '${parsed.name}' already exists` });
      const record = { ...parsed, id: randomUUID(), created_at: now, updated_at: now };
      images.set(parsed.name, record);
      return send(res, 201, serialize(record));
    }
    if (parsed.name !== name) return send(res, 422, { detail: [{ type: 'value_error', loc: ['body', 'name'], msg: `must equal the name in the path (${name})` }] });
    const old = images.get(name);
    if (!old) return send(res, 404, { detail: 'Image not found' });
    const record = { ...parsed, id: old.id, created_at: old.created_at, updated_at: now };
    images.set(name, record);
    return send(res, 200, serialize(record));
  }

  function handler(req, res) {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const auth = authorize(req);
      const entry = { method: req.method, path: new URL(req.url, 'http://standin').pathname, auth, body: body ? safeJson(body) : undefined, status: 0, injected: false };
      requests.push(entry);
      const index = failures.findIndex((f) => !f.method || f.method === req.method);
      if (index >= 0) {
        const failure = failures[index];
        failures.splice(index, 1);
        entry.injected = true;
        if (failure.apply) {
          // Process for real (the backend commits), then answer the failure instead.
          const sink = { writeHead() {}, end() {} };
          entry.applied = route(req, sink, body, auth);
        }
        const headers = failure.retryAfter === undefined ? {} : { 'retry-after': String(failure.retryAfter) };
        entry.status = send(res, failure.status, { detail: failure.detail ?? (failure.status >= 500 ? 'Service temporarily unavailable' : 'Bad request') }, headers);
        return;
      }
      Promise.resolve(harborRoute(req, res, auth)).then((status) => {
        entry.status = status ?? route(req, res, body, auth);
      });
    });
  }

  const server = options.tls ? https.createServer({ key: options.tls.key, cert: options.tls.cert }, handler) : http.createServer(handler);
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  const scheme = options.tls ? 'https' : 'http';

  return {
    /** thinkube-control's address ending in /api (any of base, /api, /api/v1 works as controlUrl). */
    url: `${scheme}://127.0.0.1:${port}/api`,
    /** The base URL, as people write it (https://control.<domain>). */
    baseUrl: `${scheme}://127.0.0.1:${port}`,
    port,
    token,
    images,
    /** thinkube-control's database rows (the sync's), keyed registry/repository:tag. */
    rows,
    requests,
    /** Answer the next n requests (of `method`, if given) with `status`; `apply` stores first. */
    failNext(n, status = 503, opts = {}) {
      for (let i = 0; i < n; i++) failures.push({ status, ...opts });
    },
    setEndpoint(mode) {
      endpoint = mode;
    },
    reset() {
      images.clear();
      rows.clear();
      requests.length = 0;
      failures = [];
    },
    async close() {
      server.closeAllConnections?.();
      await new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

function kubeGet(url, token, ca) {
  return new Promise((resolve, reject) => {
    https
      .get(url, { headers: { authorization: `Bearer ${token}`, accept: 'application/json' }, ca }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString('utf8') }));
      })
      .on('error', reject);
  });
}

function safeJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
