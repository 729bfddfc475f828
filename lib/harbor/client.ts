/**
 * Client of Harbor's REST API v2.0 (../shared/reference/harbor-v2.0-swagger.yaml): health, the
 * caller's identity, projects and their quota, artifacts, their tags and vulnerability scans.
 *
 * Basic authentication on every request (users and robot accounts alike; a robot's name such as
 * `robot$thinkube` is sent byte for byte) and no cookie jar: Harbor's CSRF check only applies to
 * cookie sessions, which a client that never stores cookies never has.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import got, { AbortError, RequestError, TimeoutError, type Method } from 'got';
import { ThinkubeImageError, ValidationError, isConnectionError, type ErrorCode } from '../core/errors.js';
import type { HarborOptions } from '../options/generated/types.js';
import { validate, type ValidateOptions } from '../options/schema.js';
import { RetryBudget, parseRetryAfter, retrySettings, type RetryListener, type RetrySettings } from '../core/retry.js';

export type { HarborOptions };

/** Per-call controls (not part of the options schema). */
export interface HarborCallControls {
  signal?: AbortSignal;
  /** Told about every retry before its wait (a `retry` progress event). */
  onRetry?: RetryListener;
}

/** Retries of Harbor requests (options.retry overrides these). */
export const HARBOR_RETRY_DEFAULTS: Readonly<RetrySettings> = Object.freeze({ limit: 2, maxTotalMs: 120_000, initialDelayMs: 1000, maxDelayMs: 30_000 });
/** Connection failures worth another try of a read (never TLS or DNS failures). */
const RETRY_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ERR_STREAM_PREMATURE_CLOSE']);

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

const LOOPBACK_HOST = /^(?:localhost|127(?:\.\d{1,3}){3}|\[::1\])(?::\d+)?$/i;

const TLS_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'EPROTO',
  'ERR_SSL_WRONG_VERSION_NUMBER',
]);

interface HarborErrorEntry {
  code?: string;
  message?: string;
}

interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
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
  readonly #https: { rejectUnauthorized: boolean; certificateAuthority?: string[] };
  readonly #timeoutMs: number;
  readonly #retry: RetrySettings;

  constructor(options: HarborOptions, validateOptions: ValidateOptions = {}) {
    const opts = validate<HarborOptions>('harbor-options.schema.json', options, { what: 'Harbor options', ...validateOptions });
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
      origin = new URL(`${LOOPBACK_HOST.test(host) ? 'http' : 'https'}://${host}`);
    }
    const urlPath = origin.pathname.replace(/\/+$/, '');
    const basePath = (opts.basePath ?? '/api/v2.0').replace(/\/+$/, '');
    this.baseUrl = `${origin.protocol}//${origin.host}${urlPath}${basePath}`;
    this.host = origin.host;
    this.username = opts.username;
    if (opts.username !== undefined && opts.password !== undefined) {
      // Buffer, not URL userinfo: the name must reach Harbor exactly, `$` and all.
      this.#authorization = `Basic ${Buffer.from(`${opts.username}:${opts.password}`, 'utf8').toString('base64')}`;
    }
    const https: { rejectUnauthorized: boolean; certificateAuthority?: string[] } = { rejectUnauthorized: opts.validateCerts !== false };
    if (opts.caFile) {
      let pem: string;
      try {
        pem = readFileSync(opts.caFile, 'utf8');
      } catch (error) {
        throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `Cannot read the Harbor CA file ${opts.caFile}: ${(error as Error).message}`, {
          hint: 'Give caFile as the path of a readable PEM bundle',
          details: { field: 'caFile', file: opts.caFile },
        });
      }
      if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
        throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `The Harbor CA file ${opts.caFile} holds no PEM certificate`, {
          hint: 'Give caFile as a PEM bundle (-----BEGIN CERTIFICATE----- blocks)',
          details: { field: 'caFile', file: opts.caFile },
        });
      }
      // Setting `ca` replaces Node's trust store: keep the public roots and add the given CAs.
      https.certificateAuthority = [...rootCertificates, pem];
    }
    this.#https = https;
    this.#timeoutMs = Math.round((opts.timeoutSeconds ?? 30) * 1000);
    this.#retry = retrySettings(opts.retry, HARBOR_RETRY_DEFAULTS);
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
    return res.body.trim();
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
      const location = header(res, 'location');
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
      const total = Number(header(res, 'x-total-count'));
      if (list.length < pageSize || (Number.isFinite(total) && tags.length >= total)) break;
    }
    return tags;
  }

  // ---- transport ----

  /**
   * One request, retried when that is safe: reads (GET, HEAD) after a connection failure, a 429 or
   * a 5xx; any method after a 429 (Harbor did not process it). Every retry is reported.
   */
  async #send(spec: RequestSpec): Promise<RawResponse> {
    const budget = new RetryBudget(`${spec.method} ${this.#displayPath(spec.path)} on Harbor at ${this.host}`, this.#retry, { onRetry: spec.onRetry, signal: spec.signal });
    const read = spec.method === 'GET' || spec.method === 'HEAD';
    for (;;) {
      let res: RawResponse;
      try {
        res = await this.#sendOnce(spec);
      } catch (error) {
        const code = (error as ThinkubeImageError).details?.errorCode;
        if (read && typeof code === 'string' && RETRY_CODES.has(code) && (await this.#pause(budget, spec, code))) continue;
        if (read && (error as ThinkubeImageError).code === 'ERR_TIMEOUT' && (await this.#pause(budget, spec, 'timeout'))) continue;
        throw error;
      }
      if ((read && res.status >= 500) || res.status === 429) {
        if (await this.#pause(budget, spec, `HTTP ${res.status}`, parseRetryAfter(res.headers['retry-after']))) continue;
      }
      return res;
    }
  }

  async #pause(budget: RetryBudget, spec: RequestSpec, reason: string, retryAfterMs?: number): Promise<boolean> {
    try {
      return await budget.wait(reason, retryAfterMs);
    } catch {
      throw new ThinkubeImageError('ERR_ABORTED', `Aborted while waiting to retry a request to Harbor at ${this.host} (${spec.what})`, { details: { host: this.host } });
    }
  }

  async #sendOnce(spec: RequestSpec): Promise<RawResponse> {
    const url = new URL(this.baseUrl + spec.path);
    for (const [k, v] of Object.entries(spec.query ?? {})) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = { Accept: 'application/json, text/plain;q=0.9', ...spec.headers };
    if (spec.auth !== false && this.#authorization) headers.Authorization = this.#authorization;
    if (this.options.requestIds !== false) headers['X-Request-Id'] = randomUUID();
    const requestId = headers['X-Request-Id'];
    try {
      const res = await got(url.href, {
        method: spec.method,
        headers,
        ...(spec.json === undefined ? {} : { json: spec.json }),
        throwHttpErrors: false,
        followRedirect: false,
        retry: { limit: 0 },
        timeout: { request: this.#timeoutMs },
        https: this.#https,
        responseType: 'text',
        ...(spec.signal ? { signal: spec.signal } : {}),
      });
      return { status: res.statusCode, headers: res.headers, body: res.body ?? '' };
    } catch (error) {
      throw this.#transportError(error, spec, requestId);
    }
  }

  #transportError(error: unknown, spec: RequestSpec, requestId: string | undefined): ThinkubeImageError {
    const request = `${spec.method} ${this.#displayPath(spec.path)}`;
    const code = (error as { code?: unknown })?.code;
    const details = { host: this.host, url: this.baseUrl, request, requestId, errorCode: code };
    // A sanitized cause: got's error carries the request options, Authorization header included.
    const cause = new Error(error instanceof Error ? error.message : String(error));
    if (error instanceof AbortError || spec.signal?.aborted) {
      return new ThinkubeImageError('ERR_ABORTED', `Aborted while asking Harbor at ${this.host} to ${spec.what}`, { details, cause });
    }
    if (error instanceof TimeoutError) {
      return new ThinkubeImageError(
        'ERR_TIMEOUT',
        `Harbor at ${this.host} did not answer ${request} (${spec.what}) within ${this.#timeoutMs / 1000} s`,
        { hint: 'Check that Harbor is up and not overloaded, or raise timeoutSeconds', details, cause },
      );
    }
    if (typeof code === 'string' && TLS_CODES.has(code)) {
      return new ThinkubeImageError(
        'ERR_REGISTRY_UNREACHABLE',
        `TLS with Harbor at ${this.baseUrl} failed (${code}: ${cause.message})`,
        {
          hint: code === 'EPROTO' || code === 'ERR_SSL_WRONG_VERSION_NUMBER'
            ? 'The server does not speak TLS on that port: check the URL scheme and port'
            : "Give caFile with the CA that signed Harbor's certificate (or validateCerts: false for a test install only)",
          details,
          cause,
        },
      );
    }
    if (isConnectionError(error) || error instanceof RequestError) {
      return new ThinkubeImageError(
        'ERR_REGISTRY_UNREACHABLE',
        `Cannot reach Harbor at ${this.baseUrl} (${typeof code === 'string' ? code : cause.message})`,
        { hint: 'Check the Harbor host name and port, that Harbor is running, and that this machine can reach it', details, cause },
      );
    }
    return new ThinkubeImageError('ERR_HARBOR', `Request to Harbor at ${this.host} failed: ${request}: ${cause.message}`, { details, cause });
  }

  /** Map a non-expected answer to the right error and throw it. */
  #fail(res: RawResponse, spec: Pick<RequestSpec, 'method' | 'path' | 'what'>): never {
    const who = this.username === undefined ? 'anonymous access' : `user "${this.username}"`;
    if (res.status === 401) {
      throw this.#error(
        'ERR_REGISTRY_AUTH',
        res,
        spec,
        this.username === undefined
          ? `Harbor at ${this.host} needs credentials to ${spec.what}`
          : `Harbor at ${this.host} rejected the credentials of user "${this.username}" (to ${spec.what})`,
        {
          hint: this.username === undefined
            ? 'Pass username and password (a user such as admin, or a robot account such as robot$thinkube with its secret)'
            : `Check the password or robot secret of "${this.username}"${isRobotAccountName(this.username) ? ' (the robot account must exist and not be disabled or expired; quote the $ in shells)' : ''}`,
        },
      );
    }
    if (res.status === 403) {
      throw this.#error('ERR_HARBOR', res, spec, `Harbor at ${this.host} does not allow ${who} to ${spec.what}`, {
        hint: 'Give the account the needed role on the project (or system permission), or use another account',
      });
    }
    if (res.status >= 300 && res.status < 400) {
      const location = header(res, 'location');
      throw this.#error('ERR_HARBOR', res, spec, `Harbor at ${this.host} answered ${spec.method} ${this.#displayPath(spec.path)} with a redirect${location ? ` to ${location}` : ''}`, {
        hint: 'Use the URL Harbor redirects to (usually https://) as the Harbor url',
      });
    }
    if (res.status >= 500) {
      throw this.#error('ERR_HARBOR', res, spec, `Harbor at ${this.host} failed to ${spec.what}`, {
        hint: "Check Harbor's health (/api/v2.0/health) and its core log for the request id",
      });
    }
    throw this.#error('ERR_HARBOR', res, spec, `Harbor at ${this.host} could not ${spec.what}`, {
      hint: 'Read Harbor\'s error above; check the names and the account\'s permissions',
    });
  }

  #error(
    code: ErrorCode,
    res: RawResponse,
    spec: Pick<RequestSpec, 'method' | 'path' | 'what'>,
    message: string,
    options: { hint: string },
  ): ThinkubeImageError {
    const harborErrors = harborErrorsOf(res.body);
    const request = `${spec.method} ${this.#displayPath(spec.path)}`;
    const said = harborErrors.length
      ? harborErrors.map((e) => [e.code, e.message].filter(Boolean).join(': ')).join('; ')
      : snippet(res.body);
    const requestId = header(res, 'x-request-id');
    return new ThinkubeImageError(code, `${message} (${request}: HTTP ${res.status}${said ? `, ${said}` : ''})`, {
      hint: options.hint,
      details: { host: this.host, request, status: res.status, harborErrors, requestId, username: this.username },
    });
  }

  #notHarbor(method: string, path: string, why: string): ThinkubeImageError {
    return new ThinkubeImageError('ERR_HARBOR', `${this.baseUrl} does not answer like Harbor's API (${method} ${this.#displayPath(path)}: ${why})`, {
      hint: 'Check that the URL points at Harbor (its API lives under /api/v2.0)',
      // notHarbor: something answered, but not Harbor's API (preflight then treats the host as a plain registry).
      details: { host: this.host, request: `${method} ${this.#displayPath(path)}`, notHarbor: true },
    });
  }

  #json(res: RawResponse, method: string, path: string): unknown {
    if (!res.body) return undefined;
    try {
      return JSON.parse(res.body);
    } catch {
      throw this.#notHarbor(method, path, `the answer is not JSON: ${snippet(res.body)}`);
    }
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

function header(res: RawResponse, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Harbor's `{"errors":[{"code","message"}]}` body (registry errors use the same shape). */
export function harborErrorsOf(body: string): HarborErrorEntry[] {
  try {
    const parsed = JSON.parse(body) as { errors?: unknown };
    if (!Array.isArray(parsed?.errors)) return [];
    return (parsed.errors as Array<Record<string, unknown>>).map((e) => {
      const out: HarborErrorEntry = {};
      if (typeof e?.code === 'string') out.code = e.code;
      if (typeof e?.message === 'string') out.message = e.message;
      return out;
    });
  } catch {
    return [];
  }
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
