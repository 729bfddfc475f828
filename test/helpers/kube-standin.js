// A stand-in of the Kubernetes API server, following its contract where clients see it:
// - paths /api/v1/namespaces/{ns}/{resource}[/{name}[/{subresource}]] (core group) and
//   /apis/{group}/{version}/namespaces/{ns}/{resource}[/{name}] (named groups), plus the
//   all-namespaces list /api/v1/{resource} (/apis/{group}/{version}/{resource});
// - verbs get, list, watch, create (POST), update (PUT), patch, delete; list and watch take
//   labelSelector (k=v, k==v, k!=v, k, !k, k in (a,b), k notin (a,b)) and fieldSelector
//   (metadata.name, metadata.namespace; pods also spec.nodeName and status.phase; another field is
//   400 "field label not supported");
// - metadata.resourceVersion from one counter (like etcd's revision), uid, creationTimestamp,
//   generation (bumped when anything but metadata changes); metadata.generateName on create gives
//   generateName (cut to 58 characters) + 5 characters of the apiserver's alphabet
//   [bcdfghjklmnpqrstvwxz2456789]; an update or patch naming an old resourceVersion is 409
//   Conflict; a create of an existing name is 409 AlreadyExists; a create in a namespace that does
//   not exist is 404 for the namespace; an update or patch that changes nothing writes nothing (same
//   resourceVersion, no watch event), as the etcd3 store does;
// - PATCH: application/merge-patch+json (RFC 7386) and application/json-patch+json (RFC 6902);
//   any other type (strategic merge, server-side apply) is 415 UnsupportedMediaType listing the
//   accepted ones (the real server takes strategic merge on built-in kinds: not served here);
// - watch (`watch=true`/`1` on a list URL, or on an object URL): 200, application/json, chunked,
//   one `{"type","object"}` per line. No resourceVersion or "0": ADDED for every current object,
//   then changes. A resourceVersion: every event after it, replayed from the event history, then
//   changes; older than the last compact(): one ERROR event (Status 410 Expired "too old resource
//   version: X (Y)") and the end of the stream; newer than the current revision: 504 Timeout. An
//   object that stops (starts) matching the selectors comes as DELETED (ADDED). timeoutSeconds
//   ends the stream; allowWatchBookmarks gets BOOKMARK events ({kind, apiVersion, metadata:
//   {resourceVersion}}) every bookmarkIntervalMs and on bookmark(). The DELETED event carries the
//   last state with the deletion's resourceVersion;
// - every error is a metav1.Status object (kind Status, status Failure, message, reason, details,
//   code) with the API server's wording;
// - bearer-token authentication (401 Unauthorized, also for a token after revoke(token); a watch
//   already open goes on, as authentication happens once per request), and RBAC per user: rules
//   of verbs, resources (a subresource as "pods/log") and namespaces (403 Forbidden: 'User "x"
//   cannot get resource "configmaps" in API group "" in the namespace "ns"'); a rule may name
//   apiGroups (default: every group), as a Role's rule does.
// Built-in resources: configmaps, secrets (data base64; stringData is folded into data on write,
// as the API server does), pods, events. More with addResource({ group, version, resource, kind,
// validate?, subresources: { name: handler } }); test/helpers/argo-controller.js adds Argo's
// workflows and serves pods/log. In-process writers (controllers) use create/update/remove/put and
// see every change through subscribe(fn) (an informer without the network).
// A request log records method, path, query, user and status, never a token. Knobs: beforeNext
// (run a function before the next matching request is handled), failNext (answer the next
// matching request with a status), revoke(token), compact(rv), dropWatches() (cut every open
// watch connection mid-stream, as a proxy or an API server restart would), bookmark().
import https from 'node:https';
import { execFileSync } from 'node:child_process';
import { randomBytes, randomInt, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import jsonMergePatch from 'json-merge-patch';
import jsonPatch from 'fast-json-patch';

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

export function status(code, reason, message, details) {
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

/** Split a selector on the commas that are not inside "in (a,b)". */
function selectorTerms(selector) {
  const terms = [];
  let depth = 0;
  let current = '';
  for (const ch of selector) {
    if (ch === '(') depth += 1;
    if (ch === ')') depth -= 1;
    if (ch === ',' && depth === 0) {
      terms.push(current.trim());
      current = '';
    } else current += ch;
  }
  if (current.trim()) terms.push(current.trim());
  return terms;
}

/** Kubernetes label selector semantics (k!=v and notin also match objects without the label). */
export function matchesSelector(labels = {}, selector) {
  if (!selector) return true;
  return selectorTerms(selector).every((term) => {
    let m;
    if ((m = /^(\S+)\s+(in|notin)\s+\((.*)\)$/.exec(term))) {
      const values = m[3].split(',').map((v) => v.trim());
      return m[2] === 'in' ? values.includes(labels[m[1]]) : !values.includes(labels[m[1]]);
    }
    if ((m = /^!\s*(\S+)$/.exec(term))) return !(m[1] in labels);
    m = /^([^!=]+)(==|=|!=)(.*)$/.exec(term);
    if (!m) return term in labels;
    const [, key, op, value] = m;
    return op === '!=' ? labels[key.trim()] !== value.trim() : labels[key.trim()] === value.trim();
  });
}

const FIELD_LABELS = {
  'metadata.name': (o) => o.metadata.name,
  'metadata.namespace': (o) => o.metadata.namespace,
};
const POD_FIELD_LABELS = { 'spec.nodeName': (o) => o.spec?.nodeName ?? '', 'status.phase': (o) => o.status?.phase ?? '' };

/** A fieldSelector as a predicate; throws a Status for an unsupported field. */
function fieldPredicate(selector, spec) {
  if (!selector) return () => true;
  const fields = { ...FIELD_LABELS, ...(spec.resource === 'pods' ? POD_FIELD_LABELS : {}) };
  const tests = selector.split(',').map((term) => {
    const m = /^([^!=]+)(==|=|!=)(.*)$/.exec(term.trim());
    if (!m) throw status(400, 'BadRequest', `invalid selector: '${selector}'; can't understand '${term}'`);
    const [, field, op, value] = m;
    const get = fields[field.trim()];
    if (!get) throw status(400, 'BadRequest', `field label not supported: ${field.trim()}`);
    return (o) => (op === '!=' ? get(o) !== value : get(o) === value);
  });
  return (o) => tests.every((f) => f(o));
}

/** strconv.ParseBool, as the API server reads watch=. */
const isTrue = (v) => ['1', 't', 'T', 'true', 'TRUE', 'True'].includes(v ?? '');

// The API server's own name generator: utilrand.String(5) has no vowels (no words by chance).
const NAME_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';
export function generatedName(base) {
  let name = base.slice(0, 63 - 5);
  for (let i = 0; i < 5; i += 1) name += NAME_ALPHABET[randomInt(NAME_ALPHABET.length)];
  return name;
}

const withoutMetadata = ({ metadata, ...rest }) => rest;
const sameContent = (a, b) => {
  const strip = (o) => ({ ...o, metadata: { ...o.metadata, resourceVersion: undefined, generation: undefined } });
  return JSON.stringify(strip(a)) === JSON.stringify(strip(b));
};

export async function startKubeStandin(options = {}) {
  // token -> user name; users -> RBAC rules [{ verbs, resources, namespaces }] ('*' matches all).
  const tokens = new Map();
  const rules = new Map();
  const namespaces = new Set(options.namespaces ?? ['default', 'kube-system', 'thinkube-control']);
  const resources = new Map(); // `${group}/${resource}` -> { group, version, resource, kind, namespaced, subresources, validate }
  const objects = new Map(); // `${group}/${resource}/${ns}/${name}` -> object
  const requests = [];
  // Every change as the watch cache keeps it: { rv, type, group, resource, namespace, name, object, old }.
  const history = [];
  let compactedRevision = 0;
  const watchers = new Set();
  const subscribers = new Set();
  const bookmarkIntervalMs = options.bookmarkIntervalMs ?? 60_000;
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
    resources.set(`${spec.group}/${spec.resource}`, { namespaced: true, subresources: {}, ...spec });
  }
  const base64 = /^[A-Za-z0-9+/]*={0,2}$/;
  addResource({ group: '', version: 'v1', resource: 'configmaps', kind: 'ConfigMap' });
  addResource({
    group: '',
    version: 'v1',
    resource: 'secrets',
    kind: 'Secret',
    // The API server keeps only data (base64); stringData is write-only and folded into data.
    normalize(object) {
      const data = { ...(object.data ?? {}) };
      for (const [k, v] of Object.entries(object.stringData ?? {})) data[k] = Buffer.from(String(v)).toString('base64');
      const { stringData, ...rest } = object;
      return { type: 'Opaque', ...rest, data };
    },
    validate(object) {
      for (const [k, v] of Object.entries(object.data ?? {})) {
        if (typeof v !== 'string' || !base64.test(v) || v.length % 4 !== 0) return [`data[${k}]`, 'Invalid value: illegal base64 data'];
      }
      return undefined;
    },
  });
  addResource({ group: '', version: 'v1', resource: 'pods', kind: 'Pod' });
  addResource({ group: '', version: 'v1', resource: 'events', kind: 'Event' });

  function allowed(user, verb, resource, namespace, group) {
    return (rules.get(user) ?? []).some(
      (r) =>
        (r.apiGroups === undefined || r.apiGroups.includes('*') || r.apiGroups.includes(group)) &&
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
  const apiVersionOf = (spec) => (spec.group ? `${spec.group}/${spec.version}` : spec.version);
  const specOf = (resource, group = '') => {
    const spec = resources.get(`${group}/${resource}`);
    if (!spec) throw new Error(`kube stand-in: no resource ${group}/${resource} (addResource first)`);
    return spec;
  };

  function stamp(object, spec, ns, old) {
    revision += 1;
    const metadata = { ...object.metadata, namespace: ns, resourceVersion: String(revision) };
    metadata.uid = old?.metadata.uid ?? randomUUID();
    metadata.creationTimestamp = old?.metadata.creationTimestamp ?? new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const changed = !old || JSON.stringify(withoutMetadata(object)) !== JSON.stringify(withoutMetadata(old));
    metadata.generation = (old?.metadata.generation ?? 0) + (changed ? 1 : 0);
    delete metadata.managedFields;
    return { ...object, apiVersion: apiVersionOf(spec), kind: spec.kind, metadata };
  }

  /** Store (or with `object` undefined, remove) and tell every watcher and subscriber. */
  function commit(spec, ns, name, object, type) {
    const k = key(spec, ns, name);
    const old = objects.get(k);
    let stored;
    if (type === 'DELETED') {
      objects.delete(k);
      revision += 1;
      stored = { ...old, metadata: { ...old.metadata, resourceVersion: String(revision) } };
    } else {
      stored = stamp(spec.normalize ? spec.normalize(object) : object, spec, ns, old);
      objects.set(k, stored);
    }
    const event = { rv: revision, type, group: spec.group, resource: spec.resource, namespace: ns, name, object: stored, old };
    history.push(event);
    for (const w of watchers) w.deliver(event);
    for (const fn of subscribers) fn(structuredClone({ type, group: spec.group, resource: spec.resource, object: stored, old }));
    return stored;
  }

  function validName(name) {
    return /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(name) && name.length <= 253;
  }

  /** Checks of a body to be stored; returns undefined or [field, message]. */
  function problems(spec, object) {
    const name = object.metadata?.name;
    if (!name) return ['metadata.name', 'Required value: name or generateName is required'];
    if (!validName(name)) return ['metadata.name', `Invalid value: "${name}"`];
    if (spec.kind === 'ConfigMap') {
      for (const [k, v] of Object.entries(object.data ?? {})) if (typeof v !== 'string') return [`data[${k}]`, 'Invalid value: must be a string'];
      const size = Object.values(object.data ?? {}).reduce((n, v) => n + Buffer.byteLength(v), 0);
      if (size > 1024 * 1024) return ['[]', 'Too long: must have at most 1048576 bytes'];
    }
    for (const [k, v] of Object.entries(object.metadata.labels ?? {})) if (typeof v !== 'string') return [`metadata.labels[${k}]`, 'Invalid value: must be a string'];
    return spec.validate?.(object);
  }

  function invalid(res, spec, name, [field, message]) {
    return send(res, 422, status(422, 'Invalid', `${spec.kind} "${name ?? ''}" is invalid: ${field}: ${message}`, { name: name ?? '', kind: spec.kind, causes: [{ reason: 'FieldValueInvalid', message, field }] }));
  }

  function conflict(res, spec, name, resource) {
    return send(res, 409, status(409, 'Conflict', `Operation cannot be fulfilled on ${kindName(spec)} "${name}": the object has been modified; please apply your changes to the latest version and try again`, { name, kind: resource }));
  }

  function selection(spec, parsed, url) {
    const labels = url.searchParams.get('labelSelector') ?? undefined;
    const field = fieldPredicate(url.searchParams.get('fieldSelector') ?? undefined, spec);
    return (o) =>
      o.metadata !== undefined &&
      (parsed.namespace === undefined || o.metadata.namespace === parsed.namespace) &&
      (parsed.name === undefined || o.metadata.name === parsed.name) &&
      matchesSelector(o.metadata.labels, labels) &&
      field(o);
  }

  function current(spec, matches) {
    return [...objects.values()].filter((o) => o.kind === spec.kind && o.apiVersion === apiVersionOf(spec) && matches(o)).sort((a, b) => Number(a.metadata.resourceVersion) - Number(b.metadata.resourceVersion));
  }

  /** A watch: 200 and a line per event until timeoutSeconds, the client leaving, or dropWatches(). */
  function watch(req, res, spec, parsed, url) {
    let matches;
    try {
      matches = selection(spec, parsed, url);
    } catch (s) {
      return send(res, s.code, s);
    }
    const rvParam = url.searchParams.get('resourceVersion');
    const from = rvParam === null || rvParam === '' || rvParam === '0' ? undefined : Number(rvParam);
    if (from !== undefined && !Number.isInteger(from)) return send(res, 400, status(400, 'BadRequest', `invalid resource version: strconv.ParseUint: parsing "${rvParam}": invalid syntax`));
    if (from !== undefined && from > revision) return send(res, 504, status(504, 'Timeout', `Timeout: Too large resource version: ${from}, current: ${revision}`, { causes: [{ reason: 'ResourceVersionTooLarge', message: 'Too large resource version' }], retryAfterSeconds: 1 }));
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-cache, private' });
    // The API server sends the headers at once: a client's watch() resolves before any event.
    res.flushHeaders();
    const line = (type, object) => res.write(`${JSON.stringify({ type, object })}\n`);
    if (from !== undefined && from < compactedRevision) {
      // The watch cache (etcd) no longer has these events: the stream says so once and ends.
      line('ERROR', status(410, 'Expired', `too old resource version: ${from} (${compactedRevision})`));
      res.end();
      return 200;
    }
    const watcher = {
      res,
      bookmarks: isTrue(url.searchParams.get('allowWatchBookmarks') ?? ''),
      deliver(event) {
        if (event.group !== spec.group || event.resource !== spec.resource) return;
        const now = event.type !== 'DELETED' && matches(event.object);
        const before = event.old !== undefined && matches(event.old);
        if (event.type === 'ADDED' && now) line('ADDED', event.object);
        else if (event.type === 'DELETED' && before) line('DELETED', event.object);
        else if (event.type === 'MODIFIED') {
          if (now) line(before ? 'MODIFIED' : 'ADDED', event.object);
          else if (before) line('DELETED', { ...event.old, metadata: { ...event.old.metadata, resourceVersion: event.object.metadata.resourceVersion } });
        }
      },
      bookmark() {
        if (this.bookmarks) line('BOOKMARK', { kind: spec.kind, apiVersion: apiVersionOf(spec), metadata: { resourceVersion: String(revision) } });
      },
      close() {
        watchers.delete(watcher);
        clearTimeout(watcher.timeout);
        clearInterval(watcher.interval);
      },
    };
    if (from === undefined) for (const o of current(spec, matches)) line('ADDED', o);
    else for (const event of history) if (event.rv > from) watcher.deliver(event);
    watchers.add(watcher);
    const timeoutSeconds = Number(url.searchParams.get('timeoutSeconds') ?? 0);
    if (timeoutSeconds > 0) {
      watcher.timeout = setTimeout(() => {
        watcher.close();
        res.end();
      }, timeoutSeconds * 1000);
    }
    if (watcher.bookmarks) watcher.interval = setInterval(() => watcher.bookmark(), bookmarkIntervalMs);
    res.on('close', () => watcher.close());
    return 200;
  }

  const PATCH_TYPES = ['application/json-patch+json', 'application/merge-patch+json', 'application/apply-patch+yaml'];

  /** PATCH: the patched object goes through the checks of an update. */
  function patch(req, res, body, spec, parsed, old) {
    const type = (req.headers['content-type'] ?? '').split(';')[0].trim();
    if (type !== 'application/merge-patch+json' && type !== 'application/json-patch+json') {
      // Strategic merge is served by the real server for built-in kinds, never for custom resources; apply is not served here.
      return send(res, 415, status(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: ${PATCH_TYPES.join(', ')}`));
    }
    let document;
    try {
      document = JSON.parse(body);
    } catch (error) {
      return send(res, 400, status(400, 'BadRequest', `error decoding patch: ${error.message}`));
    }
    let patched;
    if (type === 'application/merge-patch+json') {
      if (!document || typeof document !== 'object' || Array.isArray(document)) return send(res, 400, status(400, 'BadRequest', 'error decoding patch: json: cannot unmarshal array into Go value of type map[string]interface {}'));
      patched = jsonMergePatch.apply(structuredClone(old), document);
    } else {
      if (!Array.isArray(document)) return send(res, 400, status(400, 'BadRequest', 'json: cannot unmarshal object into Go value of type jsonpatch.Patch'));
      try {
        patched = jsonPatch.applyPatch(structuredClone(old), document, true, false).newDocument;
      } catch (error) {
        return invalid(res, spec, parsed.name, ['patch', `Invalid value: "${body.replace(/"/g, '\\"')}": ${error.message.split('\n')[0]}`]);
      }
    }
    if (patched?.metadata?.name !== parsed.name) return send(res, 400, status(400, 'BadRequest', `the name of the object (${patched?.metadata?.name}) does not match the name on the URL (${parsed.name})`));
    if (patched.kind !== spec.kind || patched.apiVersion !== apiVersionOf(spec)) return send(res, 400, status(400, 'BadRequest', `the object provided is unrecognized (must be of type ${spec.kind})`));
    // A resourceVersion in the patch is a precondition.
    if (patched.metadata.resourceVersion !== old.metadata.resourceVersion) return conflict(res, spec, parsed.name, parsed.resource);
    const problem = problems(spec, patched);
    if (problem) return invalid(res, spec, parsed.name, problem);
    if (sameContent(patched, old)) return send(res, 200, old);
    return send(res, 200, commit(spec, parsed.namespace, parsed.name, patched, 'MODIFIED'));
  }

  /** The API server's own handling of a parsed request; returns the status sent. */
  function route(req, res, body, user, parsed, url) {
    const spec = resources.get(`${parsed.group}/${parsed.resource}`);
    if (!spec || spec.version !== parsed.version) return send(res, 404, status(404, 'NotFound', 'the server could not find the requested resource'));
    const method = req.method;
    const watching = isTrue(url.searchParams.get('watch') ?? '') && !parsed.subresource;
    const verb = method === 'GET' ? (watching ? 'watch' : parsed.name ? 'get' : 'list') : method === 'POST' ? 'create' : method === 'PUT' ? 'update' : method === 'DELETE' ? 'delete' : method === 'PATCH' ? 'patch' : undefined;
    if (!verb) return send(res, 405, status(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource`));
    const group = parsed.group;
    const resource = parsed.subresource ? `${parsed.resource}/${parsed.subresource}` : parsed.resource;
    if (!allowed(user, verb, resource, parsed.namespace, group)) {
      const what = parsed.name ? `${kindName(spec)} "${parsed.name}"` : kindName(spec);
      const where = parsed.namespace ? ` in the namespace "${parsed.namespace}"` : ' at the cluster scope';
      return send(res, 403, status(403, 'Forbidden', `${what} is forbidden: User "${user}" cannot ${verb} resource "${resource}" in API group "${group}"${where}`, { ...(parsed.name ? { name: parsed.name } : {}), kind: parsed.resource, ...(group ? { group } : {}) }));
    }
    if (parsed.subresource) {
      const handler = spec.subresources[parsed.subresource];
      if (!handler) return send(res, 404, status(404, 'NotFound', 'the server could not find the requested resource'));
      return handler({ req, res, body, user, parsed, url, verb, send, status, object: objects.get(key(spec, parsed.namespace, parsed.name)) });
    }

    if (verb === 'watch') return watch(req, res, spec, parsed, url);
    if (verb === 'list') {
      let items;
      try {
        items = current(spec, selection(spec, parsed, url));
      } catch (s) {
        return send(res, s.code, s);
      }
      return send(res, 200, { kind: `${spec.kind}List`, apiVersion: apiVersionOf(spec), metadata: { resourceVersion: String(revision) }, items });
    }
    const ns = parsed.namespace;
    if (spec.namespaced && ns === undefined) return send(res, 404, status(404, 'NotFound', 'the server could not find the requested resource'));
    const notFound = () => send(res, 404, status(404, 'NotFound', `${kindName(spec)} "${parsed.name}" not found`, { name: parsed.name, kind: parsed.resource, ...(group ? { group } : {}) }));
    const old = parsed.name === undefined ? undefined : objects.get(key(spec, ns, parsed.name));

    if (verb === 'get') return old ? send(res, 200, old) : notFound();
    if (verb === 'delete') {
      if (!old) return notFound();
      commit(spec, ns, parsed.name, undefined, 'DELETED');
      return send(res, 200, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details: { name: parsed.name, kind: parsed.resource, uid: old.metadata.uid } });
    }
    if (verb === 'patch') return old ? patch(req, res, body, spec, parsed, old) : notFound();
    let object;
    try {
      object = JSON.parse(body);
    } catch (error) {
      return send(res, 400, status(400, 'BadRequest', `the body of the request was in an unknown format: ${error.message}`));
    }
    if (!object || typeof object !== 'object' || object.kind !== spec.kind) {
      return send(res, 400, status(400, 'BadRequest', `the object provided is unrecognized (must be of type ${spec.kind}): ${JSON.stringify(object?.kind)}`));
    }
    if (verb === 'create' && !object.metadata?.name && object.metadata?.generateName) {
      do object.metadata.name = generatedName(object.metadata.generateName);
      while (objects.has(key(spec, ns, object.metadata.name)));
    }
    const name = object.metadata?.name;
    if (object.metadata?.namespace !== undefined && object.metadata.namespace !== ns) {
      return send(res, 400, status(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request'));
    }
    const problem = problems(spec, object);
    if (problem) return invalid(res, spec, name, problem);
    if (verb === 'create') {
      if (!namespaces.has(ns)) return send(res, 404, status(404, 'NotFound', `namespaces "${ns}" not found`, { name: ns, kind: 'namespaces' }));
      if (objects.has(key(spec, ns, name))) return send(res, 409, status(409, 'AlreadyExists', `${kindName(spec)} "${name}" already exists`, { name, kind: parsed.resource }));
      if (object.metadata.resourceVersion) return invalid(res, spec, name, ['metadata.resourceVersion', 'Invalid value: must be empty on create']);
      return send(res, 201, commit(spec, ns, name, object, 'ADDED'));
    }
    if (verb === 'update') {
      if (name !== parsed.name) return send(res, 400, status(400, 'BadRequest', `the name of the object (${name}) does not match the name on the URL (${parsed.name})`));
      if (!old) return notFound();
      const rv = object.metadata.resourceVersion;
      // ConfigMaps allow an unconditional update (no resourceVersion); a stale one is a conflict.
      if (rv && rv !== old.metadata.resourceVersion) return conflict(res, spec, name, parsed.resource);
      const candidate = { ...object, apiVersion: apiVersionOf(spec), metadata: { ...object.metadata, namespace: ns, uid: old.metadata.uid, creationTimestamp: old.metadata.creationTimestamp, resourceVersion: old.metadata.resourceVersion } };
      if (sameContent(spec.normalize ? spec.normalize(candidate) : candidate, old)) return send(res, 200, old);
      return send(res, 200, commit(spec, ns, name, object, 'MODIFIED'));
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
      const matches = (f) => (!f.method || f.method === req.method) && (!f.path || f.path === url.pathname) && (f.watch === undefined || f.watch === isTrue(url.searchParams.get('watch') ?? ''));
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
      // The API server authenticates before anything else: no or a bad (or revoked) token is 401.
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

  /** In-process writes (a controller's), through the same store, history and watch events as the API. */
  function inProcess(resource, group, object) {
    const spec = specOf(resource, group);
    const ns = object.metadata.namespace;
    return { spec, ns, k: key(spec, ns, object.metadata.name) };
  }

  return {
    url,
    port,
    adminToken,
    /** The server's certificate (PEM): the cluster CA a kubeconfig names. */
    ca: tls.cert.toString('utf8'),
    requests,
    namespaces,
    /** Every change so far: { rv, type, group, resource, namespace, name, object, old } (live array). */
    history,
    get revision() {
      return revision;
    },
    addUser,
    addResource,
    /** Serve `resource`/`name` (e.g. pods/log) with handler({ req, res, url, parsed, object, send, status }); RBAC as "pods/log". */
    addSubresource(resource, name, handler, group = '') {
      specOf(resource, group).subresources[name] = handler;
    },
    /** The stored object (a copy), or undefined. */
    get(resource, namespace, name, group = '') {
      const o = objects.get(`${group}/${resource}/${namespace}/${name}`);
      return o ? structuredClone(o) : undefined;
    },
    /** Every stored object of a resource (copies), optionally of one namespace. */
    list(resource, namespace, group = '') {
      return [...objects.entries()].filter(([k]) => k.startsWith(`${group}/${resource}/${namespace === undefined ? '' : `${namespace}/`}`)).map(([, o]) => structuredClone(o));
    },
    /** Store an object directly (as another client would have): ADDED or MODIFIED, a new resourceVersion. */
    put(resource, object, group = '') {
      const { spec, ns, k } = inProcess(resource, group, object);
      return structuredClone(commit(spec, ns, object.metadata.name, structuredClone(object), objects.has(k) ? 'MODIFIED' : 'ADDED'));
    },
    /** Create (generateName honoured); throws if it exists. */
    create(resource, object, group = '') {
      const copy = structuredClone(object);
      const spec = specOf(resource, group);
      if (!copy.metadata.name && copy.metadata.generateName) {
        do copy.metadata.name = generatedName(copy.metadata.generateName);
        while (objects.has(key(spec, copy.metadata.namespace, copy.metadata.name)));
      }
      const { ns, k } = inProcess(resource, group, copy);
      if (objects.has(k)) throw new Error(`kube stand-in: ${k} exists`);
      return structuredClone(commit(spec, ns, copy.metadata.name, copy, 'ADDED'));
    },
    /** Replace an existing object unless nothing changed; returns the stored copy. */
    update(resource, object, group = '') {
      const { spec, ns, k } = inProcess(resource, group, object);
      const old = objects.get(k);
      if (!old) throw new Error(`kube stand-in: ${k} does not exist`);
      if (sameContent({ ...object, metadata: { ...object.metadata, resourceVersion: old.metadata.resourceVersion } }, old)) return structuredClone(old);
      return structuredClone(commit(spec, ns, object.metadata.name, structuredClone(object), 'MODIFIED'));
    },
    /** Delete (a DELETED event); false when it did not exist. */
    remove(resource, namespace, name, group = '') {
      const spec = specOf(resource, group);
      if (!objects.has(key(spec, namespace, name))) return false;
      commit(spec, namespace, name, undefined, 'DELETED');
      return true;
    },
    /** fn({ type, group, resource, object, old }) after every change; returns the unsubscribe function. */
    subscribe(fn) {
      subscribers.add(fn);
      return () => subscribers.delete(fn);
    },
    /** Run `fn` (may be async) before the next request matching { method, path, watch } is handled (watch: true only watches, false no watch). */
    beforeNext(match, fn) {
      befores.push({ ...match, fn });
    },
    /** Answer the next request matching { method, path, watch } with `status` (a Status object; opts reason, message). */
    failNext(match, code, opts = {}) {
      failures.push({ ...match, status: code, ...opts });
    },
    /** From now on requests with `token` are 401 (an expired or deleted token). */
    revoke(token) {
      tokens.delete(token);
    },
    /** Forget the events up to `rv` (default: all so far), as etcd compaction does: older watches get 410. */
    compact(rv = revision) {
      compactedRevision = Math.max(compactedRevision, rv);
      while (history.length && history[0].rv <= compactedRevision) history.shift();
    },
    /** Cut every open watch connection mid-stream (no end of the chunked body). */
    dropWatches() {
      const n = watchers.size;
      for (const w of [...watchers]) {
        w.close();
        w.res.socket?.destroy();
      }
      return n;
    },
    /** Send a BOOKMARK now on every open watch that allowed them. */
    bookmark() {
      for (const w of watchers) w.bookmark();
    },
    /** Open watch connections. */
    get openWatches() {
      return watchers.size;
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
      history.length = 0;
      befores = [];
      failures = [];
    },
    async close() {
      for (const w of [...watchers]) {
        w.close();
        w.res.end();
      }
      subscribers.clear();
      server.closeAllConnections?.();
      await new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
