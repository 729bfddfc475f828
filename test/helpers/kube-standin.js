// A stand-in of the Kubernetes API server, following its contract where clients see it:
// - paths /api/v1/namespaces/{ns}/{resource}[/{name}] (core group) and
//   /apis/{group}/{version}/namespaces/{ns}/{resource}[/{name}] (named groups), plus the
//   all-namespaces list /api/v1/{resource} (/apis/{group}/{version}/{resource});
// - verbs get, list (labelSelector k=v[,k=v]), create (POST), update (PUT), delete;
// - metadata.resourceVersion from one counter (like etcd's revision), uid, creationTimestamp;
//   an update naming an old resourceVersion is 409 Conflict; a create of an existing name is 409
//   AlreadyExists; a create in a namespace that does not exist is 404 for the namespace;
// - every error is a metav1.Status object (kind Status, status Failure, message, reason, details,
//   code) with the API server's wording;
// - bearer-token authentication (401 Unauthorized), and RBAC per user: rules of verbs, resources
//   and namespaces (403 Forbidden: 'User "x" cannot get resource "configmaps" in API group "" in
//   the namespace "ns"').
// Resources are registered with addResource (ConfigMaps are there from the start), so custom
// resources (Argo Workflows), subresources (pods/log) and watch can be added the same way: route()
// dispatches on the parsed path, and a resource may bring its own handler. A request log records
// method, path, user and status, never a token. Knobs: beforeNext (run a function before the next
// matching request is handled: another writer slipping in between a read and a write),
// failNext (answer the next matching request with a status).
import https from 'node:https';
import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** A self-signed certificate for 127.0.0.1, as a cluster's own CA would issue (openssl, like the other TLS tests). */
function serverCertificate() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kube-standin-tls-'));
  try {
    const key = path.join(dir, 'key.pem');
    const cert = path.join(dir, 'cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=kube-apiserver', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
    return { key: readFileSync(key), cert: readFileSync(cert) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function status(code, reason, message, details) {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, ...(details ? { details } : {}), code };
}

/** Parse a URL path into { group, version, namespace, resource, name, subresource } or undefined. */
export function parseApiPath(pathname) {
  const parts = pathname.split('/').filter(Boolean).map(decodeURIComponent);
  let group;
  let version;
  let rest;
  if (parts[0] === 'api' && parts.length >= 2) {
    group = '';
    version = parts[1];
    rest = parts.slice(2);
  } else if (parts[0] === 'apis' && parts.length >= 3) {
    group = parts[1];
    version = parts[2];
    rest = parts.slice(3);
  } else return undefined;
  let namespace;
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    namespace = rest[1];
    rest = rest.slice(2);
  }
  const [resource, name, subresource] = rest;
  if (!resource) return undefined;
  return { group, version, namespace, resource, name, subresource };
}

function matchesSelector(labels = {}, selector) {
  if (!selector) return true;
  return selector.split(',').every((term) => {
    const m = /^([^!=]+)(==|=|!=)(.*)$/.exec(term.trim());
    if (!m) return term.trim() in labels;
    const [, key, op, value] = m;
    return op === '!=' ? labels[key] !== value : labels[key] === value;
  });
}

export async function startKubeStandin(options = {}) {
  // token -> user name; users -> RBAC rules [{ verbs, resources, namespaces }] ('*' matches all).
  const tokens = new Map();
  const rules = new Map();
  const namespaces = new Set(options.namespaces ?? ['default', 'kube-system', 'thinkube-control']);
  const resources = new Map(); // `${group}/${resource}` -> { group, version, resource, kind, namespaced }
  const objects = new Map(); // `${group}/${resource}/${ns}/${name}` -> object
  const requests = [];
  let revision = 1000;
  let befores = [];
  let failures = [];

  function addUser(name, userRules = [{ verbs: ['*'], resources: ['*'], namespaces: ['*'] }], token = `kube-${randomBytes(20).toString('hex')}`) {
    tokens.set(token, name);
    rules.set(name, userRules);
    return token;
  }
  const adminToken = addUser('admin');

  function addResource(spec) {
    resources.set(`${spec.group}/${spec.resource}`, { namespaced: true, ...spec });
  }
  addResource({ group: '', version: 'v1', resource: 'configmaps', kind: 'ConfigMap' });

  function allowed(user, verb, resource, namespace) {
    return (rules.get(user) ?? []).some(
      (r) =>
        (r.verbs.includes('*') || r.verbs.includes(verb)) &&
        (r.resources.includes('*') || r.resources.includes(resource)) &&
        (r.namespaces.includes('*') || (namespace !== undefined && r.namespaces.includes(namespace))),
    );
  }

  function send(res, code, body) {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
    return code;
  }

  const key = (spec, ns, name) => `${spec.group}/${spec.resource}/${ns}/${name}`;
  const kindName = (spec) => (spec.group ? `${spec.resource}.${spec.group}` : spec.resource);

  function stamp(object, spec, ns, old) {
    revision += 1;
    const metadata = { ...object.metadata, namespace: ns, resourceVersion: String(revision) };
    metadata.uid = old?.metadata.uid ?? randomUUID();
    metadata.creationTimestamp = old?.metadata.creationTimestamp ?? new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    delete metadata.managedFields;
    return { ...object, apiVersion: spec.group ? `${spec.group}/${spec.version}` : spec.version, kind: spec.kind, metadata };
  }

  /** The API server's own handling of a parsed request; returns the status sent. */
  function route(req, res, body, user, parsed, url) {
    const spec = resources.get(`${parsed.group}/${parsed.resource}`);
    if (!spec || spec.version !== parsed.version) return send(res, 404, status(404, 'NotFound', 'the server could not find the requested resource'));
    const method = req.method;
    const verb = method === 'GET' ? (parsed.name ? (url.searchParams.get('watch') === 'true' ? 'watch' : 'get') : url.searchParams.get('watch') === 'true' ? 'watch' : 'list') : method === 'POST' ? 'create' : method === 'PUT' ? 'update' : method === 'DELETE' ? 'delete' : method === 'PATCH' ? 'patch' : undefined;
    if (!verb) return send(res, 405, status(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource`));
    const group = parsed.group;
    if (!allowed(user, verb, parsed.resource, parsed.namespace)) {
      const what = parsed.name ? `${kindName(spec)} "${parsed.name}"` : kindName(spec);
      const where = parsed.namespace ? ` in the namespace "${parsed.namespace}"` : ' at the cluster scope';
      return send(res, 403, status(403, 'Forbidden', `${what} is forbidden: User "${user}" cannot ${verb} resource "${parsed.resource}" in API group "${group}"${where}`, { ...(parsed.name ? { name: parsed.name } : {}), kind: parsed.resource, ...(group ? { group } : {}) }));
    }
    if (spec.handler) return spec.handler({ req, res, body, user, parsed, url, verb, send, status });
    if (parsed.subresource) return send(res, 404, status(404, 'NotFound', 'the server could not find the requested resource'));

    if (verb === 'list') {
      const selector = url.searchParams.get('labelSelector') ?? undefined;
      const items = [...objects.entries()]
        .filter(([k]) => k.startsWith(`${group}/${parsed.resource}/${parsed.namespace === undefined ? '' : `${parsed.namespace}/`}`))
        .map(([, o]) => o)
        .filter((o) => matchesSelector(o.metadata.labels, selector));
      return send(res, 200, { kind: `${spec.kind}List`, apiVersion: spec.group ? `${spec.group}/${spec.version}` : spec.version, metadata: { resourceVersion: String(revision) }, items });
    }
    if (verb === 'watch') return send(res, 405, status(405, 'MethodNotAllowed', 'watch is not served by this stand-in yet'));
    const ns = parsed.namespace;
    if (spec.namespaced && ns === undefined) return send(res, 404, status(404, 'NotFound', 'the server could not find the requested resource'));
    const notFound = () => send(res, 404, status(404, 'NotFound', `${kindName(spec)} "${parsed.name}" not found`, { name: parsed.name, kind: parsed.resource, ...(group ? { group } : {}) }));

    if (verb === 'get') {
      const object = objects.get(key(spec, ns, parsed.name));
      return object ? send(res, 200, object) : notFound();
    }
    if (verb === 'delete') {
      if (!objects.delete(key(spec, ns, parsed.name))) return notFound();
      return send(res, 200, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details: { name: parsed.name, kind: parsed.resource } });
    }
    let object;
    try {
      object = JSON.parse(body);
    } catch (error) {
      return send(res, 400, status(400, 'BadRequest', `the body of the request was in an unknown format: ${error.message}`));
    }
    if (!object || typeof object !== 'object' || object.kind !== spec.kind) {
      return send(res, 400, status(400, 'BadRequest', `the object provided is unrecognized (must be of type ${spec.kind}): ${JSON.stringify(object?.kind)}`));
    }
    const name = object.metadata?.name;
    const invalid = (field, message) =>
      send(res, 422, status(422, 'Invalid', `${spec.kind} "${name ?? ''}" is invalid: ${field}: ${message}`, { name: name ?? '', kind: spec.kind, causes: [{ reason: 'FieldValueInvalid', message, field }] }));
    if (!name) return invalid('metadata.name', 'Required value: name or generateName is required');
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(name) || name.length > 253) return invalid('metadata.name', `Invalid value: "${name}"`);
    if (object.metadata.namespace !== undefined && object.metadata.namespace !== ns) {
      return send(res, 400, status(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request'));
    }
    if (spec.kind === 'ConfigMap') {
      for (const [k, v] of Object.entries(object.data ?? {})) if (typeof v !== 'string') return invalid(`data[${k}]`, 'Invalid value: must be a string');
      const size = Object.values(object.data ?? {}).reduce((n, v) => n + Buffer.byteLength(v), 0);
      if (size > 1024 * 1024) return invalid('[]', 'Too long: must have at most 1048576 bytes');
    }
    for (const [k, v] of Object.entries(object.metadata.labels ?? {})) if (typeof v !== 'string') return invalid(`metadata.labels[${k}]`, 'Invalid value: must be a string');
    if (verb === 'create') {
      if (!namespaces.has(ns)) return send(res, 404, status(404, 'NotFound', `namespaces "${ns}" not found`, { name: ns, kind: 'namespaces' }));
      if (objects.has(key(spec, ns, name))) return send(res, 409, status(409, 'AlreadyExists', `${kindName(spec)} "${name}" already exists`, { name, kind: parsed.resource }));
      if (object.metadata.resourceVersion) return invalid('metadata.resourceVersion', 'Invalid value: must be empty on create');
      const created = stamp(object, spec, ns);
      objects.set(key(spec, ns, name), created);
      return send(res, 201, created);
    }
    if (verb === 'update') {
      if (name !== parsed.name) return send(res, 400, status(400, 'BadRequest', `the name of the object (${name}) does not match the name on the URL (${parsed.name})`));
      const old = objects.get(key(spec, ns, name));
      if (!old) return notFound();
      const rv = object.metadata.resourceVersion;
      // ConfigMaps allow an unconditional update (no resourceVersion); a stale one is a conflict.
      if (rv && rv !== old.metadata.resourceVersion) {
        return send(res, 409, status(409, 'Conflict', `Operation cannot be fulfilled on ${kindName(spec)} "${name}": the object has been modified; please apply your changes to the latest version and try again`, { name, kind: parsed.resource }));
      }
      const updated = stamp(object, spec, ns, old);
      objects.set(key(spec, ns, name), updated);
      return send(res, 200, updated);
    }
    return send(res, 405, status(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource'));
  }

  function handler(req, res) {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const url = new URL(req.url, 'http://standin');
      const header = req.headers.authorization ?? '';
      const token = header.startsWith('Bearer ') ? header.slice(7) : undefined;
      const user = token !== undefined ? tokens.get(token) : undefined;
      const entry = { method: req.method, path: url.pathname, query: url.search, user: user ?? (token === undefined ? 'anonymous' : 'invalid-token'), status: 0 };
      requests.push(entry);
      const parsed = parseApiPath(url.pathname);
      const matches = (f) => (!f.method || f.method === req.method) && (!f.path || f.path === url.pathname);
      const bi = befores.findIndex(matches);
      if (bi >= 0) {
        const [before] = befores.splice(bi, 1);
        await before.fn();
      }
      const fi = failures.findIndex(matches);
      if (fi >= 0) {
        const [failure] = failures.splice(fi, 1);
        entry.injected = true;
        entry.status = send(res, failure.status, status(failure.status, failure.reason ?? 'InternalError', failure.message ?? 'Internal error occurred: injected failure'));
        return;
      }
      // The API server authenticates before anything else: no or a bad token is 401.
      if (!user) {
        entry.status = send(res, 401, status(401, 'Unauthorized', 'Unauthorized'));
        return;
      }
      if (!parsed) {
        entry.status = send(res, 404, status(404, 'NotFound', 'the server could not find the requested resource'));
        return;
      }
      entry.status = route(req, res, body, user, parsed, url);
    });
  }

  // HTTPS like every API server (client-node refuses plain HTTP unless TLS checks are off).
  const tls = serverCertificate();
  const server = https.createServer({ key: tls.key, cert: tls.cert }, handler);
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  const url = `https://127.0.0.1:${port}`;

  return {
    url,
    port,
    adminToken,
    /** The server's certificate (PEM): the cluster CA a kubeconfig names. */
    ca: tls.cert.toString('utf8'),
    requests,
    namespaces,
    addUser,
    addResource,
    /** The stored object (a copy), or undefined. */
    get(resource, namespace, name, group = '') {
      const o = objects.get(`${group}/${resource}/${namespace}/${name}`);
      return o ? structuredClone(o) : undefined;
    },
    /** Store an object directly (as another client would have), stamped with a new resourceVersion. */
    put(resource, object, group = '') {
      const spec = resources.get(`${group}/${resource}`);
      const ns = object.metadata.namespace;
      const k = key(spec, ns, object.metadata.name);
      const stored = stamp(structuredClone(object), spec, ns, objects.get(k));
      objects.set(k, stored);
      return structuredClone(stored);
    },
    /** Run `fn` (may be async) before the next request matching { method, path } is handled. */
    beforeNext(match, fn) {
      befores.push({ ...match, fn });
    },
    /** Answer the next request matching { method, path } with `status` (a Status object). */
    failNext(match, code, opts = {}) {
      failures.push({ ...match, status: code, ...opts });
    },
    /** Write a kubeconfig for `token` (default the admin's) into dir; returns its path. */
    kubeconfig(dir, { token = adminToken, file = 'kubeconfig', namespace = 'default', server: serverUrl = url, ca = tls.cert } = {}) {
      const target = path.join(dir, file);
      const doc = {
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'standin', cluster: { server: serverUrl, ...(ca ? { 'certificate-authority-data': Buffer.from(ca).toString('base64') } : {}) } }],
        users: [{ name: 'standin-user', user: { token } }],
        contexts: [{ name: 'standin', context: { cluster: 'standin', user: 'standin-user', namespace } }],
        'current-context': 'standin',
      };
      writeFileSync(target, JSON.stringify(doc, null, 2), { mode: 0o600 });
      return target;
    },
    reset() {
      objects.clear();
      requests.length = 0;
      befores = [];
      failures = [];
    },
    async close() {
      server.closeAllConnections?.();
      await new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
