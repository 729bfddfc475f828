// A stateful stand-in of the Harbor v2.0 REST endpoints this project uses (Harbor cannot run
// here). It follows the contract of test/contracts/harbor-api.yaml (Harbor's swagger): paths under
// /api/v2.0, Harbor's {"errors":[{code,message}]} bodies, Basic auth checked byte for byte,
// 412 on /users/current for robot accounts, repository names decoded the way Harbor's router
// does (the path is decoded once, so a%2Fb splits into two segments and only a%252Fb works),
// a session cookie on every answer with Harbor's CSRF rule for requests that send it back, and
// scans that move Pending -> Running -> Success/Error one poll at a time. The registry side is
// there too, as far as preflight needs it: /service/token (Basic in, Bearer token out), /v2/ and
// manifest HEADs answered from the artifacts (anonymous pulls from public projects only).
import http from 'node:http';
import https from 'node:https';
import { randomUUID } from 'node:crypto';

export const GiB = 1024 ** 3;
export const MiB = 1024 ** 2;
export const REPORT_MIME_TYPES = [
  'application/vnd.security.vulnerability.report; version=1.1',
  'application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0',
];
const SEVERITY_ORDER = ['Critical', 'High', 'Medium', 'Low', 'Negligible', 'Unknown'];

function fakeDigest(seed) {
  let hex = '';
  for (let i = 0; hex.length < 64; i++) hex += ((seed.charCodeAt(i % seed.length) * 31 + i * 7) % 256).toString(16).padStart(2, '0');
  return `sha256:${hex.slice(0, 64)}`;
}
export { fakeDigest };

/**
 * options:
 *  users: { name: password }                default { admin: 'Harbor12345', 'robot$thinkube': 'robot-secret' }
 *  robots: [names]                          robot accounts (default: names starting with robot$)
 *  sysadmins: [names]                       default ['admin']
 *  readOnly: [names]                        users whose POSTs get 403
 *  health: { name: errorText|null }         components; a string marks it unhealthy. Default: all healthy
 *  projects: { name: { public, quota: { hard, used } } }  default { library: public, no limit }
 *  artifacts: [{ project, repository, digest?, tags?, size?, scan?, previousScan?, created?, labels?, references?, pushTime? }]
 *     created / labels: the image config's created time and Labels (Harbor's extra_attrs)
 *     references: child digests (an index); Harbor refuses to delete an artifact an index references
 *     tags: names, or { name, pushTime }
 *     scan: { outcome: 'Success'|'Error'|'Hang', counts: {Critical: n, ...}, fixable, pendingPolls, runningPolls, startDelayPolls }
 *     previousScan: { counts, fixable }     a finished report already shown before any trigger
 *  tls: { key, cert }                       serve HTTPS instead of HTTP
 *  pushed(project, repository, reference)   artifacts pushed to a real registry beside the stand-in
 *     (Harbor knows every pushed artifact): returns { scan, size } for a digest it should know,
 *     or undefined; the artifact is then created on first access
 */
export async function startHarborStandin(options = {}) {
  const users = options.users ?? { admin: 'Harbor12345', 'robot$thinkube': 'robot-secret' };
  const robots = new Set(options.robots ?? Object.keys(users).filter((u) => u.startsWith('robot$')));
  const sysadmins = new Set(options.sysadmins ?? ['admin']);
  const readOnly = new Set(options.readOnly ?? []);
  let nextId = 1;

  const state = {
    /** Milliseconds to wait before answering (client timeouts). */
    delayMs: 0,
    health: { core: null, database: null, jobservice: null, portal: null, redis: null, registry: null, registryctl: null, trivy: null, ...(options.health ?? {}) },
    projects: new Map(),
    /** key `${project}/${repository}@${digest}` -> artifact */
    artifacts: new Map(),
  };

  const addProject = (name, p = {}) => {
    state.projects.set(name, {
      project_id: nextId++,
      name,
      owner_name: p.owner ?? 'admin',
      metadata: { public: p.public ? 'true' : 'false' },
      quota: { hard: { storage: p.quota?.hard ?? -1 }, used: { storage: p.quota?.used ?? 0 } },
    });
  };
  for (const [name, p] of Object.entries(options.projects ?? { library: { public: true } })) addProject(name, p);

  const addArtifact = (a) => {
    const digest = a.digest ?? fakeDigest(`${a.project}/${a.repository}`);
    const artifact = {
      id: nextId++,
      project: a.project,
      repository: a.repository,
      digest,
      size: a.size ?? 12345678,
      tags: (a.tags ?? ['latest']).map((t) => ({ id: nextId++, name: typeof t === 'string' ? t : t.name, push_time: (typeof t === 'string' ? undefined : t.pushTime) ?? a.pushTime ?? '2026-01-01T00:00:00.000Z', pull_time: '0001-01-01T00:00:00.000Z', immutable: false })),
      created: a.created,
      labels: a.labels,
      references: a.references ?? [],
      scanPlan: a.scan ?? { outcome: 'Success', counts: {} },
      previous: a.previousScan ? finishedReport(a.previousScan.counts ?? {}, a.previousScan.fixable ?? 0, 'Success') : undefined,
      run: undefined,
      scanRequests: 0,
    };
    state.artifacts.set(`${a.project}/${a.repository}@${digest}`, artifact);
    return artifact;
  };
  for (const a of options.artifacts ?? []) addArtifact(a);
  state.addArtifact = addArtifact;
  state.addProject = addProject;

  /** Bearer tokens the token service handed out: token -> { user (null: anonymous), service, scopes }. */
  const registryTokens = new Map();

  /** Every request, as the server saw it. */
  const requests = [];

  const handler = async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const bodyText = Buffer.concat(chunks).toString('utf8');
    const rawUrl = req.url ?? '/';
    const q = rawUrl.indexOf('?');
    const rawPath = q < 0 ? rawUrl : rawUrl.slice(0, q);
    const query = new URLSearchParams(q < 0 ? '' : rawUrl.slice(q + 1));
    const auth = parseBasic(req.headers.authorization);
    const record = {
      method: req.method,
      rawUrl,
      rawPath,
      query: Object.fromEntries(query),
      headers: { ...req.headers },
      body: bodyText,
      user: auth?.user,
      at: Date.now(),
    };
    requests.push(record);
    if (state.delayMs) await new Promise((r) => setTimeout(r, state.delayMs));

    const requestId = req.headers['x-request-id'] || randomUUID();
    const send = (status, body, headers = {}) => {
      const h = { 'X-Request-Id': requestId, 'Set-Cookie': `sid=${randomUUID().replace(/-/g, '')}; Path=/; HttpOnly`, ...headers };
      if (body === undefined) {
        res.writeHead(status, h);
        return res.end();
      }
      const text = typeof body === 'string' ? body : JSON.stringify(body);
      res.writeHead(status, { 'Content-Type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json', ...h });
      res.end(req.method === 'HEAD' ? undefined : text);
    };
    const error = (status, code, message) => send(status, { errors: [{ code, message }] });

    const m0 = req.method;
    // Go's router works on the decoded path: %2F becomes a real separator here.
    let decoded;
    try {
      decoded = decodeURIComponent(rawPath);
    } catch {
      return error(400, 'BAD_REQUEST', 'invalid path encoding');
    }
    // Harbor's registry side: token service and the /v2/ API (enough for ping and manifest HEADs).
    if (decoded === '/service/token' && m0 === 'GET') return tokenService(req, send, error, query);
    if (decoded === '/v2' || decoded.startsWith('/v2/')) return registryApi(req, send, decoded);
    if (!decoded.startsWith('/api/v2.0/')) return error(404, 'NOT_FOUND', `no route for ${decoded}`);
    const parts = decoded.slice('/api/v2.0/'.length).split('/');
    const route = (pattern) => {
      const p = pattern.split('/');
      if (p.length !== parts.length) return undefined;
      const params = {};
      for (let i = 0; i < p.length; i++) {
        if (p[i].startsWith('{')) params[p[i].slice(1, -1)] = parts[i];
        else if (p[i] !== parts[i]) return undefined;
      }
      return params;
    };
    const m = req.method;

    // Unauthenticated endpoints.
    if (m === 'GET' && route('health')) {
      const components = Object.entries(state.health).map(([name, err]) => (err ? { name, status: 'unhealthy', error: err } : { name, status: 'healthy' }));
      return send(200, { status: components.every((c) => c.status === 'healthy') ? 'healthy' : 'unhealthy', components });
    }
    if (m === 'GET' && route('ping')) return send(200, 'Pong');

    // Credentials, when sent, must be right; Harbor answers 401 otherwise.
    if (req.headers.authorization !== undefined && (!auth || users[auth.user] !== auth.password)) {
      return error(401, 'UNAUTHORIZED', 'unauthorized');
    }
    const user = auth?.user;
    // Harbor's CSRF middleware checks requests that carry its session cookie.
    if (m !== 'GET' && m !== 'HEAD' && /(?:^|;\s*)sid=/.test(req.headers.cookie ?? '') && !req.headers['x-harbor-csrf-token']) {
      return error(403, 'FORBIDDEN', 'CSRF token invalid');
    }

    if (m === 'HEAD' && route('projects')) {
      const name = query.get('project_name');
      if (!name) return error(400, 'BAD_REQUEST', 'project_name is required');
      return send(state.projects.has(name) ? 200 : 404, undefined);
    }

    if (!user) return error(401, 'UNAUTHORIZED', 'unauthorized');

    if (m === 'POST' && route('projects')) {
      if (readOnly.has(user)) return error(403, 'FORBIDDEN', `user ${user} has no permission to create projects`);
      let body;
      try {
        body = JSON.parse(bodyText);
      } catch {
        return error(400, 'BAD_REQUEST', 'body is not JSON');
      }
      const name = body?.project_name;
      if (typeof name !== 'string' || !/^[a-z0-9]+(?:[._-][a-z0-9]+)*$/.test(name)) return error(400, 'BAD_REQUEST', `invalid project name ${JSON.stringify(name)}`);
      if (state.projects.has(name)) return error(409, 'CONFLICT', `The project named ${name} already exists`);
      const isPublic = body.metadata?.public === 'true' || body.public === true;
      addProject(name, { public: isPublic, owner: user, quota: { hard: typeof body.storage_limit === 'number' ? body.storage_limit : -1, used: 0 } });
      return send(201, undefined, { Location: `/api/v2.0/projects/${state.projects.get(name).project_id}` });
    }

    let p;
    if (m === 'GET' && (p = route('projects/{name}'))) {
      const project = state.projects.get(p.name);
      if (!project) return error(404, 'NOT_FOUND', `project ${p.name} not found`);
      const repoCount = new Set([...state.artifacts.values()].filter((a) => a.project === p.name).map((a) => a.repository)).size;
      return send(200, { project_id: project.project_id, name: project.name, owner_name: project.owner_name, repo_count: repoCount, metadata: project.metadata });
    }
    if (m === 'GET' && (p = route('projects/{name}/summary'))) {
      const project = state.projects.get(p.name);
      if (!project) return error(404, 'NOT_FOUND', `project ${p.name} not found`);
      return send(200, { repo_count: 0, project_admin_count: 1, quota: project.quota });
    }

    if (m === 'GET' && route('users/current')) {
      if (robots.has(user)) return error(412, 'PRECONDITION', 'the security context is not a local user');
      return send(200, { user_id: Object.keys(users).indexOf(user) + 1, username: user, email: `${user}@example.com`, realname: user, sysadmin_flag: sysadmins.has(user), admin_role_in_auth: false });
    }
    if (m === 'GET' && route('users/current/permissions')) {
      return send(200, robots.has(user)
        ? [{ resource: 'repository', action: 'pull' }, { resource: 'repository', action: 'push' }, { resource: 'artifact', action: 'list' }]
        : [{ resource: 'project', action: 'create' }]);
    }

    const artifactRoute = (suffix) => route(`projects/{project}/repositories/{repository}/artifacts/{reference}${suffix}`);
    const findArtifact = (params) => {
      // The repository segment still holds one level of encoding (a%2Fb).
      let repository;
      try {
        repository = decodeURIComponent(params.repository);
      } catch {
        return undefined;
      }
      for (const a of state.artifacts.values()) {
        if (a.project !== params.project || a.repository !== repository) continue;
        if (a.digest === params.reference || a.tags.some((t) => t.name === params.reference)) return a;
      }
      const pushed = /^sha256:[0-9a-f]{64}$/.test(params.reference) ? options.pushed?.(params.project, repository, params.reference) : undefined;
      return pushed ? addArtifact({ project: params.project, repository, digest: params.reference, tags: [], ...pushed }) : undefined;
    };
    const notFound = (params) => error(404, 'NOT_FOUND', `artifact ${params.project}/${params.repository}@${params.reference} not found`);

    const artifactBody = (a) => ({
      id: a.id,
      type: 'IMAGE',
      media_type: 'application/vnd.oci.image.config.v1+json',
      manifest_media_type: a.references.length ? 'application/vnd.oci.image.index.v1+json' : 'application/vnd.oci.image.manifest.v1+json',
      project_id: state.projects.get(a.project)?.project_id ?? 0,
      repository_name: `${a.project}/${a.repository}`,
      digest: a.digest,
      size: a.size,
      push_time: '2026-01-01T00:00:00.000Z',
      references: a.references.map((child) => ({ parent_id: a.id, child_id: [...state.artifacts.values()].find((c) => c.digest === child)?.id ?? 0, child_digest: child })),
      extra_attrs: a.references.length ? {} : { architecture: 'amd64', os: 'linux', created: a.created ?? '2026-01-01T00:00:00Z', config: { Labels: a.labels ?? null } },
    });
    // The repository segment of an artifact path holds one level of encoding still (a%2Fb).
    const repositoryOf = (params) => {
      try {
        return decodeURIComponent(params.repository);
      } catch {
        return undefined;
      }
    };
    if (m === 'GET' && (p = route('projects/{project}/repositories/{repository}/artifacts'))) {
      const repository = repositoryOf(p);
      const all = [...state.artifacts.values()].filter((a) => a.project === p.project && a.repository === repository);
      if (!state.projects.has(p.project) || all.length === 0) return error(404, 'NOT_FOUND', `repository ${p.project}/${repository} not found`);
      const page = Number(query.get('page') ?? 1);
      const size = Number(query.get('page_size') ?? 10);
      const withTag = query.get('with_tag') !== 'false';
      const slice = all.slice((page - 1) * size, page * size).map((a) => ({ ...artifactBody(a), ...(withTag ? { tags: a.tags.map((t) => ({ ...t, repository_id: 1, artifact_id: a.id })) } : {}) }));
      return send(200, slice, { 'X-Total-Count': String(all.length) });
    }
    if (m === 'DELETE' && (p = artifactRoute(''))) {
      const a = findArtifact(p);
      if (!a) return notFound(p);
      if (readOnly.has(user)) return error(403, 'FORBIDDEN', `user ${user} has no permission to delete artifacts`);
      const parent = [...state.artifacts.values()].find((x) => x !== a && x.project === a.project && x.repository === a.repository && x.references.includes(a.digest));
      if (parent) return error(412, 'VIOLATE_FOREIGN_KEY_CONSTRAINT', `the deleting artifact is referenced by ${parent.digest}`);
      state.artifacts.delete(`${a.project}/${a.repository}@${a.digest}`);
      return send(200, undefined);
    }
    if (m === 'DELETE' && (p = artifactRoute('/tags/{tag}'))) {
      const a = findArtifact(p);
      if (!a) return notFound(p);
      if (readOnly.has(user)) return error(403, 'FORBIDDEN', `user ${user} has no permission to delete tags`);
      const i = a.tags.findIndex((t) => t.name === p.tag);
      if (i < 0) return error(404, 'NOT_FOUND', `tag ${p.tag} not found on ${a.digest}`);
      a.tags.splice(i, 1);
      return send(200, undefined);
    }

    if (m === 'GET' && (p = artifactRoute(''))) {
      const a = findArtifact(p);
      if (!a) return notFound(p);
      const body = {
        id: a.id,
        type: 'IMAGE',
        media_type: 'application/vnd.oci.image.config.v1+json',
        manifest_media_type: 'application/vnd.oci.image.manifest.v1+json',
        project_id: state.projects.get(a.project)?.project_id ?? 0,
        repository_name: `${a.project}/${a.repository}`,
        digest: a.digest,
        size: a.size,
        push_time: '2026-01-01T00:00:00.000Z',
      };
      if (query.get('with_tag') !== 'false') body.tags = a.tags.map((t) => ({ ...t, repository_id: 1, artifact_id: a.id }));
      if (query.get('with_scan_overview') === 'true') {
        const accept = (req.headers['x-accept-vulnerabilities'] ?? REPORT_MIME_TYPES.join(', ')).split(',').map((s) => s.trim());
        const mime = accept.find((t) => REPORT_MIME_TYPES.includes(t));
        const report = overviewFor(a);
        body.scan_overview = mime && report ? { [mime]: report } : {};
      }
      return send(200, body);
    }
    if (m === 'POST' && (p = artifactRoute('/scan'))) {
      const a = findArtifact(p);
      if (!a) return notFound(p);
      if (readOnly.has(user)) return error(403, 'FORBIDDEN', `user ${user} has no permission to scan`);
      if (bodyText) {
        let body;
        try {
          body = JSON.parse(bodyText);
        } catch {
          return error(400, 'BAD_REQUEST', 'body is not JSON');
        }
        if (body.scan_type !== undefined && body.scan_type !== 'vulnerability' && body.scan_type !== 'sbom') return error(422, 'UNPROCESSABLE_ENTITY', 'invalid scan_type');
      }
      a.scanRequests++;
      if (a.run && (a.run.status === 'Pending' || a.run.status === 'Running')) return error(409, 'CONFLICT', 'a previous scan process is running');
      a.run = { plan: a.scanPlan, polls: 0, status: 'Pending', reportId: randomUUID(), start: new Date().toISOString() };
      return send(202, undefined);
    }
    if (m === 'GET' && (p = artifactRoute('/tags'))) {
      const a = findArtifact(p);
      if (!a) return notFound(p);
      const page = Number(query.get('page') ?? 1);
      const size = Number(query.get('page_size') ?? 10);
      const slice = a.tags.slice((page - 1) * size, page * size).map((t) => ({ ...t, repository_id: 1, artifact_id: a.id }));
      return send(200, slice, { 'X-Total-Count': String(a.tags.length) });
    }

    return error(404, 'NOT_FOUND', `no route for ${m} ${decoded}`);
  };

  /**
   * GET /service/token (Docker token auth, as Harbor's core serves it): Basic credentials, when
   * sent, must be right (401 otherwise); without them the token is anonymous.
   */
  function tokenService(req, send, error, query) {
    let user = null;
    if (req.headers.authorization !== undefined) {
      const auth = parseBasic(req.headers.authorization);
      if (!auth || users[auth.user] !== auth.password) return error(401, 'UNAUTHORIZED', 'authentication required');
      user = auth.user;
    }
    const token = randomUUID().replace(/-/g, '');
    registryTokens.set(token, { user, service: query.get('service'), scopes: query.getAll('scope') });
    return send(200, { token, access_token: token, expires_in: 1800, issued_at: new Date().toISOString() });
  }

  /** /v2/ (ping) and HEAD /v2/<project>/<repository>/manifests/<reference> against the artifacts. */
  function registryApi(req, send, decoded) {
    const bearer = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')?.[1];
    const grant = bearer ? registryTokens.get(bearer) : undefined;
    const host = req.headers.host;
    const challenge = (scope) => {
      const realm = `${options.tls ? 'https' : 'http'}://${host}/service/token`;
      const header = `Bearer realm="${realm}",service="harbor-registry"${scope ? `,scope="${scope}"` : ''}`;
      return send(401, { errors: [{ code: 'UNAUTHORIZED', message: 'unauthorized to access repository', detail: null }] }, { 'Www-Authenticate': header, 'Docker-Distribution-Api-Version': 'registry/2.0' });
    };
    if (decoded === '/v2' || decoded === '/v2/') {
      if (!grant?.user) return challenge();
      return send(200, {}, { 'Docker-Distribution-Api-Version': 'registry/2.0' });
    }
    const match = /^\/v2\/([^/]+)\/(.+)\/manifests\/([^/]+)$/.exec(decoded);
    if (!match || req.method !== 'HEAD') return send(404, { errors: [{ code: 'UNSUPPORTED', message: 'the stand-in serves /v2/ and manifest HEADs only' }] });
    const [, project, repository, reference] = match;
    const scope = `repository:${project}/${repository}:pull`;
    const p = state.projects.get(project);
    // Harbor lets anonymous tokens pull from public projects only.
    if (!grant || (!grant.user && p?.metadata.public !== 'true')) return challenge(scope);
    const artifact = p && [...state.artifacts.values()].find((a) => a.project === project && a.repository === repository && (a.digest === reference || a.tags.some((t) => t.name === reference)));
    if (!artifact) return send(404, { errors: [{ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown', detail: { name: `${project}/${repository}`, revision: reference } }] });
    return send(200, '', {
      'Content-Type': 'application/vnd.oci.image.manifest.v1+json',
      'Docker-Content-Digest': artifact.digest,
      'Docker-Distribution-Api-Version': 'registry/2.0',
    });
  }

  /** The report an overview shows now; each read advances a running scan by one step. */
  function overviewFor(a) {
    const run = a.run;
    if (!run) return a.previous;
    run.polls++;
    const plan = run.plan;
    const startDelay = plan.startDelayPolls ?? 0;
    if (run.polls <= startDelay) return a.previous;
    const step = run.polls - startDelay;
    const pending = plan.pendingPolls ?? 1;
    const running = plan.runningPolls ?? 1;
    if (step <= pending) run.status = 'Pending';
    else if (step <= pending + running || plan.outcome === 'Hang') run.status = 'Running';
    else run.status = plan.outcome === 'Error' ? 'Error' : 'Success';
    if ((run.status === 'Error' || run.status === 'Success') && !run.end) run.end = new Date().toISOString();
    const base = { report_id: run.reportId, scan_status: run.status, start_time: run.start, scanner: { name: 'Trivy', vendor: 'Aqua Security', version: 'v0.50.1' } };
    if (run.status === 'Pending') return { ...base, complete_percent: 0 };
    if (run.status === 'Running') return { ...base, complete_percent: 50 };
    if (run.status === 'Error') return { ...base, complete_percent: 100, end_time: run.end, severity: '' };
    return { ...finishedReport(plan.counts ?? {}, plan.fixable ?? 0, 'Success'), ...base, end_time: run.end, complete_percent: 100, duration: 3 };
  }

  const server = options.tls ? https.createServer({ key: options.tls.key, cert: options.tls.cert }, handler) : http.createServer(handler);
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  const host = `127.0.0.1:${port}`;
  return {
    url: `${options.tls ? 'https' : 'http'}://${host}`,
    host,
    port,
    state,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}

function finishedReport(counts, fixable, status) {
  const summary = {};
  let total = 0;
  for (const [k, v] of Object.entries(counts)) {
    summary[k] = v;
    total += v;
  }
  const severity = SEVERITY_ORDER.find((s) => (summary[s] ?? 0) > 0) ?? 'None';
  return {
    report_id: randomUUID(),
    scan_status: status,
    severity,
    duration: 2,
    summary: { total, fixable, summary },
    start_time: '2025-12-31T00:00:00Z',
    end_time: '2025-12-31T00:00:02Z',
    complete_percent: 100,
    scanner: { name: 'Trivy', vendor: 'Aqua Security', version: 'v0.50.1' },
  };
}

/** Decode `Authorization: Basic <base64>` exactly: the user is everything before the first ':'. */
function parseBasic(header) {
  if (typeof header !== 'string') return undefined;
  const m = /^Basic ([A-Za-z0-9+/]+={0,2})$/.exec(header);
  if (!m) return undefined;
  const text = Buffer.from(m[1], 'base64').toString('utf8');
  const i = text.indexOf(':');
  if (i < 0) return undefined;
  return { user: text.slice(0, i), password: text.slice(i + 1) };
}
