/**
 * Client of Harbor's REST API v2.0 (Harbor's swagger; the endpoints used are in test/contracts/harbor-api.yaml): health, the
 * caller's identity, projects and their quota, artifacts, their tags and vulnerability scans, and
 * deleting tags and artifacts (input-tag retention).
 *
 * Basic authentication on every request (users and robot accounts alike; a robot's name such as
 * `robot$thinkube` is sent byte for byte) and no cookie jar: Harbor's CSRF check only applies to
 * cookie sessions, which a client that never stores cookies never has.
 */
import { randomUUID } from 'node:crypto';
import { ThinkubeImageError, ValidationError, type ErrorCode } from '../core/errors.js';
import type { RetryListener } from '../core/retry.js';
import type { HarborOptions } from '../options/generated/types.js';
import { validate, type ValidateOptions } from '../options/schema.js';
import { HttpClient, type HttpResponse, type Method } from '../http/client.js';
import { registryErrorsOf, type RegistryErrorEntry } from '../http/errors.js';
import { isLoopbackHost } from '../http/tls.js';

export type { HarborOptions };

/** Per-call controls (not part of the options schema). */
export interface HarborCallControls {
  signal?: AbortSignal;
  /** Told about every retry before its wait (a `retry` progress event). */
  onRetry?: RetryListener;
}


export interface HarborComponentHealth {
  name: string;
  /** "healthy" or "unhealthy". */
  status: string;
  /** Harbor's error text when the component is unhealthy. */
  error?: string;
}

export interface HarborHealth {
  /** Overall status: "healthy" only when every component is. */
  status: string;
  healthy: boolean;
  components: HarborComponentHealth[];
  /** Names of the components whose status is not "healthy". */
  unhealthy: string[];
}

export interface HarborPermission {
  resource: string;
  action: string;
}

export interface HarborIdentity {
  username: string;
  /** A robot account (name with the `robot$` prefix, or one Harbor answers 412 for on /users/current). */
  robot: boolean;
  userId?: number;
  sysadmin?: boolean;
  email?: string;
  realname?: string;
  /** For robot accounts: what /users/current/permissions lists (system scope). */
  permissions?: HarborPermission[];
  /** The endpoint that confirmed the identity. */
  source: 'users/current' | 'users/current/permissions';
}

export interface CreateProjectOptions {
  /** Anyone can pull from a public project. Default false. */
  public?: boolean;
  /** Storage quota in bytes (-1: unlimited). Default: Harbor's default quota. */
  storageLimitBytes?: number;
}

export interface CreateProjectResult {
  name: string;
  /** False when the project already existed (Harbor answered 409). */
  changed: boolean;
  /** Harbor's Location header for a created project. */
  location?: string;
}

/** Harbor's ResourceList: resource name (e.g. "storage", in bytes) to amount; -1 is unlimited. */
export type HarborResourceList = Record<string, number>;

export interface HarborQuota {
  hard: HarborResourceList;
  used: HarborResourceList;
  /** hard.storage; -1 means unlimited. */
  storageLimitBytes?: number;
  /** used.storage. */
  storageUsedBytes?: number;
}

export interface HarborProject {
  name: string;
  projectId?: number;
  public: boolean;
  ownerName?: string;
  repoCount?: number;
  /** Project metadata as Harbor stores it (string values: "true", "false", ...). */
  metadata: Record<string, string>;
  /** From /projects/{name}/summary; absent when the caller may not read it. */
  quota?: HarborQuota;
}

/** Swagger `ProjectSummary` (the fields this client reads). */
export interface HarborProjectSummary {
  repo_count?: number;
  quota?: { hard?: HarborResourceList; used?: HarborResourceList };
  [key: string]: unknown;
}

/** Swagger `Tag`. */
export interface HarborTag {
  id?: number;
  repository_id?: number;
  artifact_id?: number;
  name: string;
  push_time?: string;
  pull_time?: string;
  immutable?: boolean;
}

/** Swagger `VulnerabilitySummary`. */
export interface HarborVulnerabilitySummary {
  total?: number;
  fixable?: number;
  /** Counts by severity name as Harbor spells it: Critical, High, Medium, Low, Unknown, ... */
  summary?: Record<string, number>;
}

/** Swagger `NativeReportSummary`: one entry of an artifact's scan_overview. */
export interface HarborNativeReportSummary {
  report_id?: string;
  /** Pending, Running, Success, Error, Stopped, ... */
  scan_status?: string;
  /** Overall severity: None, Unknown, Low, Medium, High, Critical. */
  severity?: string;
  duration?: number;
  summary?: HarborVulnerabilitySummary;
  start_time?: string;
  end_time?: string;
  complete_percent?: number;
  scanner?: { name?: string; vendor?: string; version?: string };
}

/** Swagger `Artifact` (the fields this library reads; others are kept as Harbor sent them). */
export interface HarborArtifact {
  id?: number;
  type?: string;
  media_type?: string;
  manifest_media_type?: string;
  project_id?: number;
  repository_id?: number;
  repository_name?: string;
  digest?: string;
  size?: number;
  push_time?: string;
  tags?: HarborTag[] | null;
  /** An index's children (swagger `Reference`): child_digest of each platform's manifest. */
  references?: Array<{ parent_id?: number; child_id?: number; child_digest?: string; platform?: Record<string, unknown> }> | null;
  /** For images: architecture, os, created and the image config (its Labels) as Harbor read them. */
  extra_attrs?: Record<string, unknown> | null;
  /** Report MIME type to summary. */
  scan_overview?: Record<string, HarborNativeReportSummary> | null;
  [key: string]: unknown;
}

export interface GetArtifactOptions {
  /** Include scan_overview (sends X-Accept-Vulnerabilities). Default false. */
  withScanOverview?: boolean;
  /** Include the tags. Default true. */
  withTag?: boolean;
}

export interface ScanRequestResult {
  /** True when Harbor accepted a new scan (202); false when one was already running (409). */
  accepted: boolean;
}

/** The two vulnerability report formats Harbor knows, preferred first (the swagger's default). */
export const VULNERABILITY_REPORT_MIME_TYPES = [
  'application/vnd.security.vulnerability.report; version=1.1',
  'application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0',
] as const;
export const ACCEPT_VULNERABILITIES = VULNERABILITY_REPORT_MIME_TYPES.join(', ');

/** Harbor's default robot account prefix. */
const ROBOT_PREFIX = 'robot$';

export function isRobotAccountName(username: string): boolean {
  return username.startsWith(ROBOT_PREFIX);
}

/** A path segment: everything percent-encoded except ':' (digests are sha256:..., valid in a path). */
function segment(value: string): string {
  return encodeURIComponent(value).replace(/%3A/gi, ':');
}

/**
 * A repository name as Harbor's artifact paths want it: URL-encoded twice, so that a/b becomes
 * a%252Fb (once decoded by the router it still is one path segment, a%2Fb).
 */
export function encodeRepositoryName(repository: string): string {
  return encodeURIComponent(encodeURIComponent(repository));
}

interface RequestSpec {
  method: Method;
  /** Path below basePath, already encoded, starting with '/'. */
  path: string;
  query?: Record<string, string | number | boolean>;
  headers?: Record<string, string>;
  json?: unknown;
  /** Send the Basic header (health and ping need none). Default true. */
  auth?: boolean;
  /** What the request does, for messages: e.g. `create project "library"`. */
  what: string;
  signal?: AbortSignal | undefined;
  onRetry?: RetryListener | undefined;
}

export class HarborClient {
  /** Origin plus basePath, e.g. https://harbor.example.com/api/v2.0 (never carries credentials). */
  readonly baseUrl: string;
  /** Host[:port] named in messages. */
  readonly host: string;
  readonly username: string | undefined;
  readonly options: Readonly<Omit<HarborOptions, 'password'>>;
  // Private fields stay out of util.inspect, JSON and error details.
  readonly #authorization: string | undefined;
  readonly #http: HttpClient;

  constructor(options: HarborOptions, validateOptions: ValidateOptions = {}) {
    // Validated: every default (basePath, timeoutSeconds, validateCerts, requestIds) comes from the schema.
    const opts = validate<HarborOptions & Required<Pick<HarborOptions, 'basePath' | 'timeoutSeconds' | 'validateCerts'>>>('harbor-options.schema.json', options, {
      what: 'Harbor options',
      ...validateOptions,
    });
    const naming = validateOptions.naming ?? 'camel';
    if (!opts.url && !opts.host) {
      throw new ValidationError(validateOptions.what ?? 'Harbor options', [
        { field: naming === 'kebab' ? '--url' : 'url', message: 'or host is required (e.g. host: harbor.example.com)' },
      ]);
    }
    let origin: URL;
    if (opts.url) {
      origin = new URL(opts.url);
    } else {
      const host = opts.host as string;
      origin = new URL(`${isLoopbackHost(host) ? 'http' : 'https'}://${host}`);
    }
    const urlPath = origin.pathname.replace(/\/+$/, '');
    const basePath = opts.basePath.replace(/\/+$/, '');
    this.baseUrl = `${origin.protocol}//${origin.host}${urlPath}${basePath}`;
    this.host = origin.host;
    this.username = opts.username;
    if (opts.username !== undefined && opts.password !== undefined) {
      // Buffer, not URL userinfo: the name must reach Harbor exactly, `$` and all.
      this.#authorization = `Basic ${Buffer.from(`${opts.username}:${opts.password}`, 'utf8').toString('base64')}`;
    }
    this.#http = new HttpClient({
      service: {
        name: `Harbor at ${this.baseUrl}`,
        codes: { unreachable: 'ERR_REGISTRY_UNREACHABLE', auth: 'ERR_REGISTRY_AUTH', failed: 'ERR_HARBOR' },
        details: { host: this.host, url: this.baseUrl, ...(opts.username !== undefined ? { username: opts.username } : {}) },
      },
      timeoutSeconds: opts.timeoutSeconds,
      validateCerts: opts.validateCerts,
      caFile: opts.caFile,
      // An http:// url is the caller's choice; a host alone is https unless it is loopback.
      plainHttp: origin.protocol === 'http:',
      retry: opts.retry,
      headers: { accept: 'application/json, text/plain;q=0.9' },
      secrets: [{ secret: opts.password, username: opts.username }],
    });
    const { password: _password, ...visible } = opts;
    this.options = Object.freeze(visible);
  }

  /** Harbor's health, naming the unhealthy components. No credentials needed. */
  async health(controls: HarborCallControls = {}): Promise<HarborHealth> {
    const spec: RequestSpec = { method: 'GET', path: '/health', auth: false, what: 'read its health', signal: controls.signal, onRetry: controls.onRetry };
    const res = await this.#send(spec);
    if (res.status === 404) {
      // A plain OCI registry (or a wrong URL/basePath): callers report Harbor-only checks as not applicable.
      const error = this.#error('ERR_HARBOR', res, spec, `No Harbor API at ${this.baseUrl}`, {
        hint: 'Check that the host is Harbor and that the URL and basePath are right (Harbor serves /api/v2.0)',
      });
      error.details.notHarbor = true;
      throw error;
    }
    if (res.status !== 200) this.#fail(res, spec);
    const body = this.#json(res, 'GET', '/health') as { status?: unknown; components?: unknown };
    if (typeof body?.status !== 'string') {
      throw this.#notHarbor('GET', '/health', 'the health answer has no status');
    }
    const components: HarborComponentHealth[] = Array.isArray(body.components)
      ? (body.components as Array<Record<string, unknown>>).map((c) => {
          const out: HarborComponentHealth = { name: String(c?.name ?? ''), status: String(c?.status ?? '') };
          if (typeof c?.error === 'string' && c.error) out.error = c.error;
          return out;
        })
      : [];
    const unhealthy = components.filter((c) => c.status !== 'healthy').map((c) => c.name);
    return { status: body.status, healthy: body.status === 'healthy' && unhealthy.length === 0, components, unhealthy };
  }

  /** GET /ping: the API server answers (Harbor: "Pong"), whatever its components' health. */
  async ping(controls: HarborCallControls = {}): Promise<string> {
    const spec: RequestSpec = { method: 'GET', path: '/ping', auth: false, what: 'answer a ping', signal: controls.signal, onRetry: controls.onRetry };
    const res = await this.#send(spec);
    if (res.status !== 200) this.#fail(res, spec);
    return res.text().trim();
  }

  /**
   * Who the credentials belong to. Users come from /users/current; robot accounts (which Harbor
   * answers 412 for there) are confirmed through /users/current/permissions, which any
   * authenticated caller may read.
   */
  async currentUser(controls: HarborCallControls = {}): Promise<HarborIdentity> {
    if (this.username === undefined || this.#authorization === undefined) {
      throw new ThinkubeImageError('ERR_REGISTRY_AUTH', `No credentials given for Harbor at ${this.host}`, {
        hint: 'Pass username and password (a user such as admin, or a robot account such as robot$thinkube with its secret)',
        details: { host: this.host },
      });
    }
    if (isRobotAccountName(this.username)) return this.#robotIdentity(controls);
    const spec: RequestSpec = { method: 'GET', path: '/users/current', what: 'tell who the current user is', signal: controls.signal, onRetry: controls.onRetry };
    const res = await this.#send(spec);
    if (res.status === 412) return this.#robotIdentity(controls);
    if (res.status !== 200) this.#fail(res, spec);
    const user = this.#json(res, 'GET', '/users/current') as Record<string, unknown>;
    const identity: HarborIdentity = {
      username: typeof user?.username === 'string' ? user.username : this.username,
      robot: false,
      source: 'users/current',
    };
    if (typeof user?.user_id === 'number') identity.userId = user.user_id;
    if (typeof user?.sysadmin_flag === 'boolean') identity.sysadmin = user.sysadmin_flag;
    if (typeof user?.email === 'string' && user.email) identity.email = user.email;
    if (typeof user?.realname === 'string' && user.realname) identity.realname = user.realname;
    return identity;
  }

  async #robotIdentity(controls: HarborCallControls): Promise<HarborIdentity> {
    const spec: RequestSpec = {
      method: 'GET',
      path: '/users/current/permissions',
      what: `list the permissions of robot account "${this.username}"`,
      signal: controls.signal, onRetry: controls.onRetry,
    };
    const res = await this.#send(spec);
    if (res.status !== 200) this.#fail(res, spec);
    const list = this.#json(res, 'GET', spec.path);
    const permissions = Array.isArray(list)
      ? (list as Array<Record<string, unknown>>).map((p) => ({ resource: String(p?.resource ?? ''), action: String(p?.action ?? '') }))
      : [];
    return { username: this.username as string, robot: true, permissions, source: 'users/current/permissions' };
  }

  /** HEAD /projects?project_name=X: true (200) or false (404). */
  async projectExists(name: string, controls: HarborCallControls = {}): Promise<boolean> {
    const spec: RequestSpec = {
      method: 'HEAD',
      path: '/projects',
      query: { project_name: name },
      what: `check whether project "${name}" exists`,
      signal: controls.signal, onRetry: controls.onRetry,
    };
    const res = await this.#send(spec);
    if (res.status === 200) return true;
    if (res.status === 404) return false;
    return this.#fail(res, spec);
  }

  /** POST /projects. An existing project (409) is not an error: changed is false. */
  async createProject(name: string, options: CreateProjectOptions = {}, controls: HarborCallControls = {}): Promise<CreateProjectResult> {
    // `public` at the top level is deprecated (replication only); metadata.public is a string.
    const body: Record<string, unknown> = { project_name: name, metadata: { public: options.public ? 'true' : 'false' } };
    if (options.storageLimitBytes !== undefined) body.storage_limit = options.storageLimitBytes;
    const spec: RequestSpec = {
      method: 'POST',
      path: '/projects',
      json: body,
      what: `create ${options.public ? 'public' : 'private'} project "${name}"`,
      signal: controls.signal, onRetry: controls.onRetry,
    };
    const res = await this.#send(spec);
    if (res.status === 201) {
      const result: CreateProjectResult = { name, changed: true };
      const location = res.header('location');
      if (location) result.location = location;
      return result;
    }
    if (res.status === 409) return { name, changed: false };
    return this.#fail(res, spec);
  }

  /** GET /projects/{name} plus its summary's quota when readable. */
  async getProject(name: string, controls: HarborCallControls = {}): Promise<HarborProject> {
    const spec: RequestSpec = {
      method: 'GET',
      path: `/projects/${segment(name)}`,
      // Without it a numeric project name would be taken for a project id.
      headers: { 'X-Is-Resource-Name': 'true' },
      what: `read project "${name}"`,
      signal: controls.signal, onRetry: controls.onRetry,
    };
    const res = await this.#send(spec);
    if (res.status === 404) {
      throw this.#error('ERR_HARBOR', res, spec, `Project "${name}" does not exist on Harbor at ${this.host}`, {
        hint: `Create project "${name}" in Harbor (or let the tool create it with create_project: true), or fix the project name`,
      });
    }
    if (res.status !== 200) this.#fail(res, spec);
    const raw = this.#json(res, 'GET', spec.path) as Record<string, unknown>;
    const metadata: Record<string, string> = {};
    if (raw?.metadata && typeof raw.metadata === 'object') {
      for (const [k, v] of Object.entries(raw.metadata as Record<string, unknown>)) if (typeof v === 'string') metadata[k] = v;
    }
    const project: HarborProject = { name: typeof raw?.name === 'string' ? raw.name : name, public: metadata.public === 'true', metadata };
    if (typeof raw?.project_id === 'number') project.projectId = raw.project_id;
    if (typeof raw?.owner_name === 'string') project.ownerName = raw.owner_name;
    if (typeof raw?.repo_count === 'number') project.repoCount = raw.repo_count;
    try {
      const summary = await this.projectSummary(name, controls);
      const quota = quotaOf(summary);
      if (quota) project.quota = quota;
    } catch (error) {
      // The quota is extra information: a caller allowed to see the project but not its summary still gets the project.
      const status = (error as ThinkubeImageError).details?.status;
      if (!(error instanceof ThinkubeImageError) || (status !== 401 && status !== 403 && status !== 404)) throw error;
    }
    return project;
  }

  /** GET /projects/{name}/summary (repository count, quota hard/used). */
  async projectSummary(name: string, controls: HarborCallControls = {}): Promise<HarborProjectSummary> {
    const spec: RequestSpec = {
      method: 'GET',
      path: `/projects/${segment(name)}/summary`,
      headers: { 'X-Is-Resource-Name': 'true' },
      what: `read the summary of project "${name}"`,
      signal: controls.signal, onRetry: controls.onRetry,
    };
    const res = await this.#send(spec);
    if (res.status !== 200) this.#fail(res, spec);
    return (this.#json(res, 'GET', spec.path) ?? {}) as HarborProjectSummary;
  }

  /** GET .../artifacts/{reference} (digest or tag); 404 is ERR_MANIFEST_NOT_FOUND. */
  async getArtifact(
    project: string,
    repository: string,
    reference: string,
    options: GetArtifactOptions = {},
    controls: HarborCallControls = {},
  ): Promise<HarborArtifact> {
    const withScan = options.withScanOverview === true;
    const spec: RequestSpec = {
      method: 'GET',
      path: artifactPath(project, repository, reference),
      query: { with_tag: options.withTag !== false, with_scan_overview: withScan },
      what: `read artifact ${project}/${repository}${refSuffix(reference)}`,
      signal: controls.signal, onRetry: controls.onRetry,
    };
    if (withScan) spec.headers = { 'X-Accept-Vulnerabilities': ACCEPT_VULNERABILITIES };
    const res = await this.#send(spec);
    if (res.status === 404) {
      throw this.#error('ERR_MANIFEST_NOT_FOUND', res, spec, `Artifact ${project}/${repository}${refSuffix(reference)} is not on Harbor at ${this.host}`, {
        hint: 'Check the project, repository and tag or digest; push the image first',
      });
    }
    if (res.status !== 200) this.#fail(res, spec);
    const artifact = this.#json(res, 'GET', spec.path);
    if (!artifact || typeof artifact !== 'object' || Array.isArray(artifact)) throw this.#notHarbor('GET', spec.path, 'the artifact answer is not an object');
    return artifact as HarborArtifact;
  }

  /** POST .../artifacts/{reference}/scan (202). A scan already running (409) is not an error. */
  async scanArtifact(project: string, repository: string, reference: string, controls: HarborCallControls = {}): Promise<ScanRequestResult> {
    const spec: RequestSpec = {
      method: 'POST',
      path: `${artifactPath(project, repository, reference)}/scan`,
      json: { scan_type: 'vulnerability' },
      what: `scan artifact ${project}/${repository}${refSuffix(reference)}`,
      signal: controls.signal, onRetry: controls.onRetry,
    };
    const res = await this.#send(spec);
    if (res.status === 202) return { accepted: true };
    if (res.status === 409) return { accepted: false };
    if (res.status === 404) {
      throw this.#error('ERR_MANIFEST_NOT_FOUND', res, spec, `Cannot scan ${project}/${repository}${refSuffix(reference)}: it is not on Harbor at ${this.host}`, {
        hint: 'Check the project, repository and digest; push the image first',
      });
    }
    if (res.status === 422) {
      throw this.#error('ERR_HARBOR', res, spec, `Harbor at ${this.host} cannot scan ${project}/${repository}${refSuffix(reference)}`, {
        hint: 'Scan each platform manifest of an image index, or turn scanning off for this image',
      });
    }
    return this.#fail(res, spec);
  }

  /** Every tag of an artifact (GET .../tags, all pages). */
  async artifactTags(project: string, repository: string, reference: string, controls: HarborCallControls = {}): Promise<HarborTag[]> {
    const pageSize = 100;
    const tags: HarborTag[] = [];
    // Bounded: 100 pages of 100 tags is far beyond any real artifact.
    for (let page = 1; page <= 100; page++) {
      const spec: RequestSpec = {
        method: 'GET',
        path: `${artifactPath(project, repository, reference)}/tags`,
        query: { page, page_size: pageSize },
        what: `list the tags of ${project}/${repository}${refSuffix(reference)}`,
        signal: controls.signal, onRetry: controls.onRetry,
      };
      const res = await this.#send(spec);
      if (res.status === 404) {
        throw this.#error('ERR_MANIFEST_NOT_FOUND', res, spec, `Artifact ${project}/${repository}${refSuffix(reference)} is not on Harbor at ${this.host}`, {
          hint: 'Check the project, repository and tag or digest; push the image first',
        });
      }
      if (res.status !== 200) this.#fail(res, spec);
      const list = this.#json(res, 'GET', spec.path);
      if (!Array.isArray(list)) throw this.#notHarbor('GET', spec.path, 'the tag list is not an array');
      for (const t of list as Array<Record<string, unknown>>) if (t && typeof t.name === 'string') tags.push(t as unknown as HarborTag);
      const total = Number(res.header('x-total-count'));
      if (list.length < pageSize || (Number.isFinite(total) && tags.length >= total)) break;
    }
    return tags;
  }

  /** Every artifact of a repository with its tags (GET .../artifacts, all pages). [] when the repository does not exist. */
  async listArtifacts(project: string, repository: string, controls: HarborCallControls = {}): Promise<HarborArtifact[]> {
    const pageSize = 100;
    const artifacts: HarborArtifact[] = [];
    // Bounded: 100 pages of 100 artifacts is far beyond a repository this tool keeps tidy.
    for (let page = 1; page <= 100; page++) {
      const spec: RequestSpec = {
        method: 'GET',
        path: `/projects/${segment(project)}/repositories/${encodeRepositoryName(repository)}/artifacts`,
        query: { page, page_size: pageSize, with_tag: true },
        what: `list the artifacts of ${project}/${repository}`,
        signal: controls.signal, onRetry: controls.onRetry,
      };
      const res = await this.#send(spec);
      if (res.status === 404) return artifacts;
      if (res.status !== 200) this.#fail(res, spec);
      const list = this.#json(res, 'GET', spec.path);
      if (!Array.isArray(list)) throw this.#notHarbor('GET', spec.path, 'the artifact list is not an array');
      for (const a of list as unknown[]) if (a && typeof a === 'object' && typeof (a as HarborArtifact).digest === 'string') artifacts.push(a as HarborArtifact);
      const total = Number(res.header('x-total-count'));
      if (list.length < pageSize || (Number.isFinite(total) && artifacts.length >= total)) break;
    }
    return artifacts;
  }

  /** DELETE .../artifacts/{reference}/tags/{tag}: the tag alone; the artifact stays. false: it was already gone (404). */
  async deleteTag(project: string, repository: string, reference: string, tag: string, controls: HarborCallControls = {}): Promise<boolean> {
    const spec: RequestSpec = {
      method: 'DELETE',
      path: `${artifactPath(project, repository, reference)}/tags/${segment(tag)}`,
      what: `delete tag ${tag} of ${project}/${repository}${refSuffix(reference)}`,
      signal: controls.signal, onRetry: controls.onRetry,
    };
    const res = await this.#send(spec);
    if (res.status === 200) return true;
    if (res.status === 404) return false;
    return this.#fail(res, spec);
  }

  /**
   * DELETE .../artifacts/{reference}: the artifact and every tag on it (Harbor then frees its
   * blobs at its next garbage collection). false: it was already gone (404).
   */
  async deleteArtifact(project: string, repository: string, reference: string, controls: HarborCallControls = {}): Promise<boolean> {
    const spec: RequestSpec = {
      method: 'DELETE',
      path: artifactPath(project, repository, reference),
      what: `delete artifact ${project}/${repository}${refSuffix(reference)}`,
      signal: controls.signal, onRetry: controls.onRetry,
    };
    const res = await this.#send(spec);
    if (res.status === 200) return true;
    if (res.status === 404) return false;
    return this.#fail(res, spec);
  }

  // ---- transport ----

  /**
   * One request through the HTTP layer: reads (GET, HEAD) retried after a connection failure, a
   * timeout, a 429 or a 5xx; any method after a 429 (Harbor did not process it). Every retry is
   * reported.
   */
  async #send(spec: RequestSpec): Promise<HttpResponse> {
    const url = new URL(this.baseUrl + spec.path);
    for (const [k, v] of Object.entries(spec.query ?? {})) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = { ...spec.headers };
    if (spec.auth !== false && this.#authorization) headers.Authorization = this.#authorization;
    if (this.options.requestIds !== false) headers['X-Request-Id'] = randomUUID();
    const display = this.#displayPath(spec.path);
    return this.#http.request({
      method: spec.method,
      url,
      headers,
      ...(spec.json === undefined ? {} : { json: spec.json }),
      what: spec.what,
      display,
      operation: `${spec.method} ${display} on Harbor at ${this.host}`,
      signal: spec.signal,
      onRetry: spec.onRetry,
    });
  }

  /** Map a non-expected answer to the right error (the code follows the status) and throw it. */
  #fail(res: HttpResponse, spec: Pick<RequestSpec, 'method' | 'path' | 'what'>): never {
    const who = this.username === undefined ? 'anonymous access' : `user "${this.username}"`;
    const fail = (message: string, hint: string): never => {
      throw this.#http.error(res, { message: this.#said(res, spec, message), hint, details: this.#details(res, spec) });
    };
    if (res.status === 401) {
      fail(
        this.username === undefined
          ? `Harbor at ${this.host} needs credentials to ${spec.what}`
          : `Harbor at ${this.host} rejected the credentials of user "${this.username}" (to ${spec.what})`,
        this.username === undefined
          ? 'Pass username and password (a user such as admin, or a robot account such as robot$thinkube with its secret)'
          : `Check the password or robot secret of "${this.username}"${isRobotAccountName(this.username) ? ' (the robot account must exist and not be disabled or expired; quote the $ in shells)' : ''}`,
      );
    }
    if (res.status === 403) {
      fail(`Harbor at ${this.host} does not allow ${who} to ${spec.what}`, 'Give the account the needed role on the project (or system permission), or use another account');
    }
    if (res.status >= 300 && res.status < 400) {
      const location = res.header('location');
      fail(`Harbor at ${this.host} answered ${spec.method} ${this.#displayPath(spec.path)} with a redirect${location ? ` to ${location}` : ''}`, 'Use the URL Harbor redirects to (usually https://) as the Harbor url');
    }
    if (res.status >= 500) {
      fail(`Harbor at ${this.host} failed to ${spec.what}`, "Check Harbor's health (/api/v2.0/health) and its core log for the request id");
    }
    return fail(`Harbor at ${this.host} could not ${spec.what}`, "Read Harbor's error above; check the names and the account's permissions");
  }

  /** An error of a given code about an answer (not found, not Harbor, cannot scan). */
  #error(code: ErrorCode, res: HttpResponse, spec: Pick<RequestSpec, 'method' | 'path' | 'what'>, message: string, options: { hint: string }): ThinkubeImageError {
    return this.#http.errors.make(code, this.#said(res, spec, message), { hint: options.hint, details: { status: res.status, ...this.#details(res, spec) } });
  }

  /** The message with the request, the status and what Harbor said. */
  #said(res: HttpResponse, spec: Pick<RequestSpec, 'method' | 'path'>, message: string): string {
    const harborErrors = registryErrorsOf(res.body);
    const said = harborErrors.length ? harborErrors.map((e) => [e.code, e.message].filter(Boolean).join(': ')).join('; ') : snippet(res.text());
    return `${message} (${spec.method} ${this.#displayPath(spec.path)}: HTTP ${res.status}${said ? `, ${said}` : ''})`;
  }

  #details(res: HttpResponse, spec: Pick<RequestSpec, 'method' | 'path'>): Record<string, unknown> {
    return { request: `${spec.method} ${this.#displayPath(spec.path)}`, harborErrors: registryErrorsOf(res.body), requestId: res.header('x-request-id') };
  }

  #notHarbor(method: string, path: string, why: string): ThinkubeImageError {
    return new ThinkubeImageError('ERR_HARBOR', `${this.baseUrl} does not answer like Harbor's API (${method} ${this.#displayPath(path)}: ${why})`, {
      hint: 'Check that the URL points at Harbor (its API lives under /api/v2.0)',
      // notHarbor: something answered, but not Harbor's API (preflight then treats the host as a plain registry).
      details: { host: this.host, request: `${method} ${this.#displayPath(path)}`, notHarbor: true },
    });
  }

  #json(res: HttpResponse, method: string, path: string): unknown {
    if (res.body.length === 0) return undefined;
    const value = res.json();
    if (value === undefined) throw this.#notHarbor(method, path, `the answer is not JSON: ${snippet(res.text())}`);
    return value;
  }

  #displayPath(path: string): string {
    return new URL(this.baseUrl).pathname.replace(/\/+$/, '') + path;
  }
}

function artifactPath(project: string, repository: string, reference: string): string {
  return `/projects/${segment(project)}/repositories/${encodeRepositoryName(repository)}/artifacts/${segment(reference)}`;
}

function refSuffix(reference: string): string {
  return reference.includes(':') ? `@${reference}` : `:${reference}`;
}

/** Harbor's `{"errors":[{"code","message"}]}` body (registry errors use the same shape; one parser: lib/http). */
export function harborErrorsOf(body: string): RegistryErrorEntry[] {
  return registryErrorsOf(body);
}

function snippet(body: string): string {
  const text = body.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim();
  return text.length > 200 ? `${text.slice(0, 200)}...` : text;
}

function quotaOf(summary: HarborProjectSummary | undefined): HarborQuota | undefined {
  const q = summary?.quota;
  if (!q || (typeof q.hard !== 'object' && typeof q.used !== 'object')) return undefined;
  const hard = { ...(q.hard ?? {}) };
  const used = { ...(q.used ?? {}) };
  const quota: HarborQuota = { hard, used };
  if (typeof hard.storage === 'number') quota.storageLimitBytes = hard.storage;
  if (typeof used.storage === 'number') quota.storageUsedBytes = used.storage;
  return quota;
}
