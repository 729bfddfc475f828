/**
 * OCI distribution (registry v2 API) client: manifest HEAD/GET/PUT, blob existence, tag listing and
 * registry-side re-tagging, with Docker-style token (Bearer) and Basic authentication. Push
 * verification, idempotent re-tagging, Harbor preflight and multi-arch index creation build on it.
 */
import { createHash } from 'node:crypto';
import LinkHeader from 'http-link-header';
import { ThinkubeImageError, ValidationError, type ErrorCode } from '../core/errors.js';
import type { RetryListener, RetryOptions } from '../core/retry.js';
import { validate } from '../options/schema.js';
import type { RegistryTls } from '../options/generated/types.js';
import { HttpClient, type HttpResponse, type Method } from '../http/client.js';
import { registryErrorsOf, summarizeErrors, type RegistryErrorEntry } from '../http/errors.js';
import type { RegistryCredentials } from './docker-config.js';
import { isLoopbackRegistry, isValidDigest, isValidRegistry, isValidRepository, isValidTag } from './reference.js';

export type { RegistryCredentials } from './docker-config.js';

export const MEDIA_TYPES = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
} as const;

/** Without these a registry may answer with a schema1 manifest whose digest differs. */
const MANIFEST_ACCEPT = [MEDIA_TYPES.ociManifest, MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerManifest, MEDIA_TYPES.dockerManifestList].join(', ');


export type { RegistryErrorEntry };

export interface RegistryClientOptions {
  /** host[:port] of the registry, e.g. harbor.example.com or localhost:5000. 'docker.io' means Docker Hub. */
  registry: string;
  credentials?: RegistryCredentials;
  /** Verify the registry's TLS certificate (registryTls.validateCerts; the schema's default: true). */
  validateCerts?: boolean | undefined;
  /** PEM bundle of extra CAs to trust (added to Node's built-in roots). */
  caFile?: string | undefined;
  /** Plain HTTP to a registry that is not on loopback (loopback registries always use HTTP, like Docker). */
  plainHttp?: boolean | undefined;
  /** Time limit of each attempt, in seconds (registryTls.timeoutSeconds; the schema's default applies). */
  timeoutSeconds?: number | undefined;
  /** The same in milliseconds (the former option); wins over timeoutSeconds. */
  timeoutMs?: number | undefined;
  userAgent?: string;
  /** The schema's retry option (limit, delays, total time); its defaults come from the schema. */
  retry?: RetryOptions | undefined;
  /** Told about every retry before its wait (a `retry` progress event). */
  onRetry?: RetryListener;
  /** Cancels requests and waits between retries. */
  signal?: AbortSignal;
  /**
   * Keep manifests and blobs read by digest for the client's life (content named by its digest
   * never changes; a delete through this client forgets it). For a client that lives one run.
   */
  cacheByDigest?: boolean;
}

export interface ManifestInfo {
  /** sha256:<hex> of the manifest bytes. */
  digest: string;
  mediaType: string;
  size: number;
}

export interface PingResult {
  /** The registry answered /v2/ with 401: it wants credentials. */
  authRequired: boolean;
  /** Our credentials were sent and accepted (false when the registry did not ask for any). */
  authenticated: boolean;
}

export interface AuthChallenge {
  /** Lowercase scheme: 'bearer', 'basic', ... */
  scheme: string;
  /** Lowercase parameter names, unquoted values. */
  params: Record<string, string>;
}

const TOKEN_CHARS = /[!#$%&'*+.^_`|~0-9A-Za-z-]+/y;

/**
 * Parse a WWW-Authenticate header (RFC 7235): one or more challenges, each a scheme followed by
 * comma-separated params whose values may be quoted strings holding commas and escaped quotes.
 * Node joins repeated headers with ", ", which this also handles.
 */
export function parseAuthChallenges(header: string): AuthChallenge[] {
  const out: AuthChallenge[] = [];
  let current: AuthChallenge | undefined;
  let i = 0;
  const n = header.length;
  const skip = (re: RegExp): void => {
    while (i < n && re.test(header[i]!)) i++;
  };
  while (i < n) {
    skip(/[\s,]/);
    if (i >= n) break;
    TOKEN_CHARS.lastIndex = i;
    const m = TOKEN_CHARS.exec(header);
    if (!m) {
      i++; // stray character: skip it rather than give up on the whole header
      continue;
    }
    const token = m[0];
    i += token.length;
    const afterToken = i;
    skip(/[ \t]/);
    if (header[i] === '=' && current && header[i + 1] !== '=') {
      i++;
      skip(/[ \t]/);
      let value = '';
      if (header[i] === '"') {
        i++;
        while (i < n && header[i] !== '"') {
          if (header[i] === '\\' && i + 1 < n) i++;
          value += header[i];
          i++;
        }
        i++; // closing quote
      } else {
        const start = i;
        while (i < n && header[i] !== ',' && !/\s/.test(header[i]!)) i++;
        value = header.slice(start, i);
      }
      current.params[token.toLowerCase()] = value;
    } else if (header[i] === '=') {
      // token68 credentials such as "Negotiate abc==": not a parameter, nothing to keep
      skip(/=/);
    } else {
      i = afterToken;
      current = { scheme: token.toLowerCase(), params: {} };
      out.push(current);
    }
  }
  return out;
}

export function sha256Digest(body: Buffer): string {
  return `sha256:${createHash('sha256').update(body).digest('hex')}`;
}

function invalidArgument(field: string, message: string): ValidationError {
  return new ValidationError('registry request', [{ field, message }]);
}

function checkRepository(repository: string): void {
  if (typeof repository !== 'string' || !isValidRepository(repository)) {
    throw invalidArgument('repository', `"${String(repository)}" is not a repository name (lowercase path such as library/busybox)`);
  }
}

function checkReference(reference: string): void {
  if (typeof reference !== 'string' || !(isValidTag(reference) || isValidDigest(reference))) {
    throw invalidArgument('reference', `"${String(reference)}" is neither a tag nor a sha256 digest`);
  }
}

/** "application/json; charset=utf-8" -> "application/json" */
function bareMediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]!.trim();
}

interface CachedToken {
  token: string;
  expiresAt: number;
}

interface SendOptions {
  /** Token scopes this request needs (repository:<name>:pull ...); none for /v2/. */
  scope?: string;
  headers?: Record<string, string>;
  body?: Buffer;
  /** What the request is for, in error messages: "manifest library/busybox:1.36". */
  what: string;
  /** Do not authenticate after a 401: return it (ping without credentials). */
  anonymousProbe?: boolean;
}

export class RegistryClient {
  readonly registry: string;
  /** scheme://host[:port] the API is reached at. */
  readonly baseUrl: string;
  private readonly credentials: RegistryCredentials | undefined;
  private readonly plainHttp: boolean;
  private readonly http: HttpClient;
  /** Learned from the last 401; used up front on later requests to skip the anonymous round trip. */
  private challenge: AuthChallenge | undefined;
  private readonly tokens = new Map<string, Promise<CachedToken>>();
  /** cacheByDigest: "<repository>@<digest>" -> the manifest, "blob <repository>@<digest>" -> the blob. */
  private readonly byDigest: Map<string, Promise<unknown>> | undefined;

  constructor(options: RegistryClientOptions) {
    if (!options || typeof options !== 'object') throw invalidArgument('(options)', 'must be an object');
    const { registry } = options;
    if (typeof registry !== 'string' || !(registry === 'docker.io' || isValidRegistry(registry))) {
      throw invalidArgument('registry', `"${String(registry)}" must be host[:port] such as harbor.example.com or localhost:5000`);
    }
    const { timeoutMs } = options;
    if (timeoutMs !== undefined && (!Number.isFinite(timeoutMs) || timeoutMs <= 0)) throw invalidArgument('timeoutMs', 'must be a positive number of milliseconds');
    // The registryTls part of the options, validated: its defaults come from the schema.
    const given: Record<string, unknown> = { validateCerts: options.validateCerts, caFile: options.caFile, plainHttp: options.plainHttp, timeoutSeconds: timeoutMs === undefined ? options.timeoutSeconds : timeoutMs / 1000 };
    for (const key of Object.keys(given)) if (given[key] === undefined) delete given[key];
    const tls = validate<Required<Pick<RegistryTls, 'validateCerts' | 'plainHttp' | 'timeoutSeconds'>> & RegistryTls>('common.schema.json', given, {
      definition: 'registryTls',
      what: 'registry client options',
    });
    this.registry = registry;
    this.credentials = options.credentials;
    this.byDigest = options.cacheByDigest ? new Map() : undefined;
    this.plainHttp = tls.plainHttp;
    const host = registry === 'docker.io' ? 'registry-1.docker.io' : registry;
    const scheme = this.plainHttp || isLoopbackRegistry(registry) ? 'http' : 'https';
    this.baseUrl = `${scheme}://${host}`;
    const username = options.credentials?.username;
    this.http = new HttpClient({
      service: {
        name: `registry ${registry}`,
        codes: { unreachable: 'ERR_REGISTRY_UNREACHABLE', auth: 'ERR_REGISTRY_AUTH', failed: 'ERR_REGISTRY' },
        hints: {
          protocol: 'The registry may speak plain HTTP: set registryTls.plainHttp, or check the port',
          timeout: 'Check that the registry is healthy and reachable, or raise the timeout (registryTls.timeoutSeconds)',
        },
        details: { registry, ...(username ? { username } : {}) },
      },
      timeoutSeconds: tls.timeoutSeconds,
      validateCerts: tls.validateCerts,
      caFile: tls.caFile,
      plainHttp: tls.plainHttp,
      retry: options.retry,
      ...(options.userAgent ? { headers: { 'user-agent': options.userAgent } } : {}),
      // Blob and token redirects are normal here; credentials are not sent to another host.
      followRedirect: true,
      // Registries serve manifests uncompressed; asking for identity keeps the bytes the digest covers.
      decompress: false,
      secrets: [
        { secret: options.credentials?.password, username },
        { secret: options.credentials?.identityToken },
      ],
      signal: options.signal,
      onRetry: options.onRetry,
    });
  }

  /** GET /v2/: is the registry there, does it want credentials, and do ours work. */
  async ping(): Promise<PingResult> {
    const probe = await this.send('GET', '/v2/', { what: 'API version check', anonymousProbe: true });
    if (probe.status === 401) {
      if (!this.hasCredentials()) return { authRequired: true, authenticated: false };
      const response = await this.send('GET', '/v2/', { what: 'API version check' });
      this.expectOk(response);
      return { authRequired: true, authenticated: true };
    }
    this.expectOk(probe);
    // Credentials are sent proactively once a challenge is known; they were used if so.
    return { authRequired: false, authenticated: false };
  }

  /** HEAD a manifest by tag or digest; undefined when the registry does not have it. */
  async headManifest(repository: string, reference: string): Promise<ManifestInfo | undefined> {
    checkRepository(repository);
    checkReference(reference);
    const path = `/v2/${repository}/manifests/${reference}`;
    const what = `manifest ${repository}${reference.includes(':') ? '@' : ':'}${reference}`;
    const response = await this.send('HEAD', path, { scope: `repository:${repository}:pull`, headers: { accept: MANIFEST_ACCEPT }, what });
    if (response.status === 404) return undefined;
    this.expectOk(response);
    const digest = response.header('docker-content-digest');
    if (!digest || !isValidDigest(digest)) {
      // Some registries omit the digest on HEAD: the bytes are the authority.
      const full = await this.getManifest(repository, reference);
      return { digest: full.digest, mediaType: full.mediaType, size: full.size };
    }
    return {
      digest,
      mediaType: bareMediaType(response.header('content-type')),
      size: Number(response.header('content-length') ?? 0),
    };
  }

  /** GET a manifest with its exact bytes (re-PUT them and the digest stays the same). */
  async getManifest(repository: string, reference: string): Promise<ManifestInfo & { body: Buffer }> {
    checkRepository(repository);
    checkReference(reference);
    if (this.byDigest && isValidDigest(reference)) return this.cached(`${repository}@${reference}`, () => this.fetchManifest(repository, reference));
    const found = await this.fetchManifest(repository, reference);
    this.byDigest?.set(`${repository}@${found.digest}`, Promise.resolve(found));
    return found;
  }

  /**
   * getManifest, but undefined when the registry does not have it: one request where a HEAD
   * followed by a GET would take two.
   */
  async findManifest(repository: string, reference: string): Promise<(ManifestInfo & { body: Buffer }) | undefined> {
    try {
      return await this.getManifest(repository, reference);
    } catch (error) {
      if (error instanceof ThinkubeImageError && error.code === 'ERR_MANIFEST_NOT_FOUND') return undefined;
      throw error;
    }
  }

  private async fetchManifest(repository: string, reference: string): Promise<ManifestInfo & { body: Buffer }> {
    const path = `/v2/${repository}/manifests/${reference}`;
    const what = `manifest ${repository}${reference.includes(':') ? '@' : ':'}${reference}`;
    const response = await this.send('GET', path, { scope: `repository:${repository}:pull`, headers: { accept: MANIFEST_ACCEPT }, what });
    if (response.status === 404) {
      throw new ThinkubeImageError('ERR_MANIFEST_NOT_FOUND', `Registry ${this.registry} has no ${what}`, {
        hint: 'Check the repository name and tag, and that the image was pushed',
        details: { registry: this.registry, repository, reference, status: 404, registryErrors: registryErrorsOf(response.body) },
      });
    }
    this.expectOk(response);
    const body = response.body;
    const digest = sha256Digest(body);
    const announced = response.header('docker-content-digest');
    const expected = isValidDigest(reference) ? reference : announced?.startsWith('sha256:') ? announced : undefined;
    if (expected && expected !== digest) {
      throw new ThinkubeImageError('ERR_DIGEST_MISMATCH', `Registry ${this.registry} sent ${what} whose bytes hash to ${digest}, not ${expected}`, {
        hint: 'A proxy between here and the registry may be altering responses; retry, or talk to the registry directly',
        details: { registry: this.registry, repository, reference, expected, actual: digest },
      });
    }
    return { digest, mediaType: bareMediaType(response.header('content-type')), size: body.length, body };
  }

  /** cacheByDigest: the first read of a key is the only one (also for reads at the same time); a failure is not kept. */
  private cached<T>(key: string, read: () => Promise<T>): Promise<T> {
    const cache = this.byDigest as Map<string, Promise<unknown>>;
    let pending = cache.get(key) as Promise<T> | undefined;
    if (!pending) {
      pending = read();
      cache.set(key, pending);
      pending.catch(() => cache.delete(key));
    }
    return pending;
  }

  /** PUT a manifest (or index) under a tag or digest; checks the registry stored exactly these bytes. */
  async putManifest(repository: string, reference: string, body: Buffer, mediaType: string): Promise<{ digest: string }> {
    checkRepository(repository);
    checkReference(reference);
    if (!Buffer.isBuffer(body) || body.length === 0) throw invalidArgument('body', 'must be a non-empty Buffer holding the manifest');
    if (typeof mediaType !== 'string' || !/^[\w.+-]+\/[\w.+-]+$/.test(mediaType)) throw invalidArgument('mediaType', `"${String(mediaType)}" is not a media type`);
    const path = `/v2/${repository}/manifests/${reference}`;
    const what = `manifest ${repository}${reference.includes(':') ? '@' : ':'}${reference}`;
    const response = await this.send('PUT', path, {
      scope: `repository:${repository}:pull,push`,
      headers: { 'content-type': mediaType },
      body,
      what,
    });
    this.expectOk(response);
    const digest = sha256Digest(body);
    const stored = response.header('docker-content-digest');
    if (stored && stored !== digest) {
      throw new ThinkubeImageError('ERR_DIGEST_MISMATCH', `Registry ${this.registry} stored ${what} as ${stored}, but the bytes sent hash to ${digest}`, {
        hint: 'The registry rewrote the manifest (an old registry converting formats?); use a registry that keeps OCI/Docker v2 manifests as sent',
        details: { registry: this.registry, repository, reference, expected: digest, actual: stored },
      });
    }
    return { digest };
  }

  async blobExists(repository: string, digest: string): Promise<boolean> {
    checkRepository(repository);
    if (typeof digest !== 'string' || !isValidDigest(digest)) throw invalidArgument('digest', `"${String(digest)}" is not a sha256 digest`);
    const path = `/v2/${repository}/blobs/${digest}`;
    const what = `blob ${repository}@${digest}`;
    const response = await this.send('HEAD', path, { scope: `repository:${repository}:pull`, what });
    if (response.status === 404) return false;
    this.expectOk(response);
    return true;
  }

  /**
   * Upload a blob in one request (POST an upload session, PUT the bytes with their digest), unless
   * the repository already has it. For small blobs (a config, a build context layer): the body is
   * held in memory. Returns its digest and whether bytes went over the wire.
   */
  async putBlob(repository: string, body: Buffer): Promise<{ digest: string; uploaded: boolean }> {
    checkRepository(repository);
    if (!Buffer.isBuffer(body)) throw invalidArgument('body', 'must be a Buffer');
    const digest = sha256Digest(body);
    if (await this.blobExists(repository, digest)) return { digest, uploaded: false };
    const what = `blob upload to ${repository}`;
    const scope = `repository:${repository}:pull,push`;
    const started = await this.send('POST', `/v2/${repository}/blobs/uploads/`, { scope, what });
    if (started.status !== 202) this.expectOk(started);
    const location = started.header('location');
    if (!location) throw this.failure('ERR_REGISTRY', `Registry ${this.registry} started the ${what} without a Location`, 'Check that the address points at an OCI registry', {});
    const url = new URL(location, this.baseUrl);
    // Credentials go only to the registry itself.
    if (url.origin !== new URL(this.baseUrl).origin) {
      throw this.failure('ERR_REGISTRY', `Registry ${this.registry} sent the ${what} to another host (${url.origin})`, 'Upload through a registry that keeps uploads on its own address', {});
    }
    url.searchParams.set('digest', digest);
    const put = await this.send('PUT', url.pathname + url.search, { scope, what, body, headers: { 'content-type': 'application/octet-stream' } });
    this.expectOk(put);
    return { digest, uploaded: true };
  }

  /**
   * GET a small blob (an image config) whole, checking its digest. Refuses blobs over `maxBytes`:
   * layers are never fetched through this client.
   */
  async getBlob(repository: string, digest: string, maxBytes = 4 * 1024 * 1024): Promise<Buffer> {
    checkRepository(repository);
    if (typeof digest !== 'string' || !isValidDigest(digest)) throw invalidArgument('digest', `"${String(digest)}" is not a sha256 digest`);
    if (this.byDigest) return this.cached(`blob ${repository}@${digest}`, () => this.fetchBlob(repository, digest, maxBytes));
    return this.fetchBlob(repository, digest, maxBytes);
  }

  private async fetchBlob(repository: string, digest: string, maxBytes: number): Promise<Buffer> {
    const path = `/v2/${repository}/blobs/${digest}`;
    const what = `blob ${repository}@${digest}`;
    const response = await this.send('GET', path, { scope: `repository:${repository}:pull`, what });
    if (response.status === 404) {
      throw new ThinkubeImageError('ERR_MANIFEST_NOT_FOUND', `Registry ${this.registry} has no ${what}`, {
        hint: 'The image in the registry is incomplete; push it again',
        details: { registry: this.registry, repository, digest },
      });
    }
    this.expectOk(response);
    if (response.body.length > maxBytes) throw this.failure('ERR_REGISTRY', `${what} is larger than ${maxBytes} bytes`, 'Only small blobs (image configs) are read through the API', {});
    const actual = sha256Digest(response.body);
    if (digest.startsWith('sha256:') && actual !== digest) {
      throw new ThinkubeImageError('ERR_DIGEST_MISMATCH', `Registry ${this.registry} sent ${what} whose bytes hash to ${actual}`, {
        hint: 'A proxy may be altering responses; retry',
        details: { registry: this.registry, repository, expected: digest, actual },
      });
    }
    return response.body;
  }

  /** All tags of a repository (following pagination); [] when the repository does not exist. */
  async listTags(repository: string): Promise<string[]> {
    checkRepository(repository);
    const what = `tag list of ${repository}`;
    const tags: string[] = [];
    let path: string | undefined = `/v2/${repository}/tags/list?n=1000`;
    for (let page = 0; path && page < 1000; page++) {
      const response = await this.send('GET', path, { scope: `repository:${repository}:pull`, what });
      if (response.status === 404) return tags;
      this.expectOk(response);
      let parsed: { tags?: unknown };
      try {
        parsed = JSON.parse(response.body.toString('utf8')) as { tags?: unknown };
      } catch {
        throw this.failure('ERR_REGISTRY', `Registry ${this.registry} answered the ${what} with something that is not JSON`, 'Check that the address points at an OCI registry', {});
      }
      if (Array.isArray(parsed.tags)) tags.push(...parsed.tags.filter((t): t is string => typeof t === 'string'));
      const link = response.header('link');
      let next: string | undefined;
      try {
        next = link ? LinkHeader.parse(link).rel('next')[0]?.uri : undefined;
      } catch {
        throw this.failure('ERR_REGISTRY', `Registry ${this.registry} answered the ${what} with a malformed Link header (pagination): ${link}`, 'A proxy between here and the registry may be altering responses; retry, or talk to the registry directly', {});
      }
      path = undefined;
      if (next) {
        const url = new URL(next, this.baseUrl);
        // Only follow pagination on the same registry: credentials must not go elsewhere.
        if (url.origin === new URL(this.baseUrl).origin) path = url.pathname + url.search;
      }
    }
    return tags;
  }

  /**
   * DELETE a manifest by digest (the distribution API deletes by digest only, which removes every
   * tag naming it). 'deleted' (202), 'missing' (404: already gone), or 'unsupported' when the
   * registry refuses deletes (405, or its UNSUPPORTED error: distribution without
   * storage.delete.enabled).
   */
  async deleteManifest(repository: string, digest: string): Promise<'deleted' | 'missing' | 'unsupported'> {
    checkRepository(repository);
    if (typeof digest !== 'string' || !isValidDigest(digest)) throw invalidArgument('digest', `"${String(digest)}" is not a sha256 digest (manifests are deleted by digest)`);
    const what = `manifest ${repository}@${digest}`;
    this.byDigest?.delete(`${repository}@${digest}`);
    const response = await this.send('DELETE', `/v2/${repository}/manifests/${digest}`, { scope: `repository:${repository}:delete`, what });
    if (response.status === 404) return 'missing';
    if (response.status === 405 || registryErrorsOf(response.body).some((e) => e.code === 'UNSUPPORTED')) return 'unsupported';
    this.expectOk(response);
    return 'deleted';
  }

  /**
   * Registry-side re-tag: GET the source manifest and PUT the same bytes under `newTag`. No layer
   * is moved. changed=false when `newTag` already points at that digest.
   */
  async retag(repository: string, sourceReference: string, newTag: string): Promise<{ digest: string; changed: boolean }> {
    checkRepository(repository);
    checkReference(sourceReference);
    if (typeof newTag !== 'string' || !isValidTag(newTag)) {
      throw invalidArgument('newTag', `"${String(newTag)}" must be 1 to 128 characters from [A-Za-z0-9_.-], not starting with . or -`);
    }
    const source = await this.getManifest(repository, sourceReference);
    const current = await this.headManifest(repository, newTag);
    if (current?.digest === source.digest) return { digest: source.digest, changed: false };
    const { digest } = await this.putManifest(repository, newTag, source.body, source.mediaType || MEDIA_TYPES.dockerManifest);
    return { digest, changed: true };
  }

  // ---- transport and authentication ----

  private hasCredentials(): boolean {
    const c = this.credentials;
    return Boolean(c && (c.identityToken || c.password !== undefined));
  }

  private who(): string {
    const c = this.credentials;
    if (!c || !this.hasCredentials()) return 'anonymous';
    if (c.username) return `user "${c.username}"`;
    return c.identityToken ? 'an identity token' : 'a password without user name';
  }

  private basicHeader(): string | undefined {
    const c = this.credentials;
    if (!c || c.password === undefined) return undefined;
    return `Basic ${Buffer.from(`${c.username ?? ''}:${c.password}`, 'utf8').toString('base64')}`;
  }

  /** Authorization header for a request under the known challenge; undefined when none applies. */
  private async authorizationFor(scope: string | undefined, challenge: AuthChallenge | undefined, fresh: boolean): Promise<string | undefined> {
    if (!challenge) return undefined;
    if (challenge.scheme === 'basic') return this.basicHeader();
    if (challenge.scheme === 'bearer') {
      const scopes = [...new Set([scope, challenge.params.scope].filter((s): s is string => Boolean(s)))].sort();
      const token = await this.token(challenge, scopes, fresh);
      return `Bearer ${token}`;
    }
    return undefined;
  }

  private async send(method: Method, path: string, options: SendOptions): Promise<HttpResponse> {
    const url = `${this.baseUrl}${path}`;
    let authorization = options.anonymousProbe ? undefined : await this.authorizationFor(options.scope, this.challenge, false);
    for (let attempt = 0; ; attempt++) {
      const headers: Record<string, string> = { ...options.headers };
      if (authorization) headers.authorization = authorization;
      const response = await this.http.request({ method, url, headers, what: options.what, ...(options.body ? { body: options.body } : {}) });
      if (response.status !== 401) return response;
      if (options.anonymousProbe) {
        this.rememberChallenge(response);
        return response;
      }
      if (attempt > 0) throw this.authFailure(response);
      const challenge = this.rememberChallenge(response);
      if (!challenge) throw this.authFailure(response);
      const next = await this.authorizationFor(options.scope, challenge, true);
      // Sending the same thing again cannot succeed.
      if (!next || next === authorization) throw this.authFailure(response);
      authorization = next;
    }
  }

  private rememberChallenge(response: HttpResponse): AuthChallenge | undefined {
    const header = response.header('www-authenticate');
    const challenges = header ? parseAuthChallenges(header) : [];
    const chosen = challenges.find((c) => c.scheme === 'bearer' && c.params.realm) ?? challenges.find((c) => c.scheme === 'basic');
    if (chosen) this.challenge = chosen;
    return chosen;
  }

  private async token(challenge: AuthChallenge, scopes: string[], fresh: boolean): Promise<string> {
    const key = `${challenge.params.realm ?? ''} ${challenge.params.service ?? ''} ${scopes.join(' ')}`;
    const cached = this.tokens.get(key);
    if (cached && !fresh) {
      try {
        const t = await cached;
        if (t.expiresAt > Date.now()) return t.token;
      } catch {
        // a failed fetch is not cached: fetch again below
      }
    }
    const pending = this.fetchToken(challenge, scopes);
    this.tokens.set(key, pending);
    try {
      return (await pending).token;
    } catch (error) {
      this.tokens.delete(key);
      throw error;
    }
  }

  private async fetchToken(challenge: AuthChallenge, scopes: string[]): Promise<CachedToken> {
    const realmText = challenge.params.realm ?? '';
    let realm: URL;
    try {
      realm = new URL(realmText);
      if (realm.protocol !== 'https:' && realm.protocol !== 'http:') throw new Error('scheme');
      // Userinfo in a realm would end up in messages; credentials go in headers only.
      realm.username = '';
      realm.password = '';
    } catch {
      throw this.failure('ERR_REGISTRY_AUTH', `Registry ${this.registry} names a token service "${realmText.slice(0, 200)}" that is not an http(s) URL`, 'Check the registry\'s token service configuration (Harbor: external_url)', {});
    }
    if (realm.protocol === 'http:' && this.hasCredentials() && !this.plainHttp && !isLoopbackRegistry(realm.host)) {
      throw this.failure('ERR_REGISTRY_AUTH', `Registry ${this.registry} asks for credentials at ${realm.origin}${realm.pathname} over plain HTTP`, 'Refusing to send credentials unencrypted: fix the registry\'s external URL to https, or set plainHttp for a registry you trust on this network', { realm: `${realm.origin}${realm.pathname}` });
    }
    const service = challenge.params.service;
    const c = this.credentials;
    let response: HttpResponse;
    const what = `token for ${scopes.join(' ') || 'the registry'}`;
    if (c?.identityToken) {
      // OAuth2 refresh-token grant, as the Docker CLI does with an identity token.
      const form: Record<string, string> = { grant_type: 'refresh_token', refresh_token: c.identityToken, client_id: 'thinkube-custom-images' };
      if (service) form.service = service;
      if (scopes.length) form.scope = scopes.join(' ');
      response = await this.http.request({ method: 'POST', url: realm, form, what });
    } else {
      for (const [k, v] of [...(service ? [['service', service]] : []), ...scopes.map((s) => ['scope', s])] as [string, string][]) realm.searchParams.append(k, v);
      const basic = this.basicHeader();
      response = await this.http.request({ method: 'GET', url: realm, headers: basic ? { authorization: basic } : {}, what });
    }
    const realmName = `${realm.origin}${realm.pathname}`;
    if (response.status === 401 || response.status === 403) {
      throw this.http.error(response, {
        message: `Token service ${realmName} of registry ${this.registry} refused ${this.who()} (HTTP ${response.status})`,
        hint: this.hasCredentials() ? 'Check the user name and password (Harbor robot accounts are named like robot$name)' : 'The registry needs credentials: pass username/password or log in with docker login',
        details: { realm: realmName },
      });
    }
    if (response.status < 200 || response.status >= 300) {
      throw this.http.error(response, {
        message: `Token service ${realmName} of registry ${this.registry} answered HTTP ${response.status}`,
        hint: "Check that the registry's token service is healthy",
        details: { realm: realmName },
      });
    }
    let parsed: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      parsed = (response.json() ?? {}) as typeof parsed;
    } catch {
      parsed = {};
    }
    const token = typeof parsed.token === 'string' && parsed.token ? parsed.token : typeof parsed.access_token === 'string' ? parsed.access_token : '';
    if (!token) {
      throw this.failure('ERR_REGISTRY', `Token service ${realmName} of registry ${this.registry} answered without a token`, 'Check that the realm in the registry\'s WWW-Authenticate header points at its token service', { realm: realmName });
    }
    // Distribution's default lifetime is 60 s; renew a little early.
    const seconds = typeof parsed.expires_in === 'number' && parsed.expires_in > 0 ? parsed.expires_in : 60;
    return { token, expiresAt: Date.now() + Math.max(1, seconds - 10) * 1000 };
  }

  private expectOk(response: HttpResponse): void {
    const status = response.status;
    if (status >= 200 && status < 300) return;
    if (status === 401) throw this.authFailure(response);
    const what = response.what ?? `${response.method} ${response.display}`;
    const summary = summarizeErrors(registryErrorsOf(response.body));
    if (status === 403) {
      // A full quota is recognised (and worded) by the HTTP layer: ERR_QUOTA_EXCEEDED.
      throw this.http.error(response, {
        message: `Registry ${this.registry} denied ${this.who()} access to ${what} (HTTP 403${summary ? `: ${summary}` : ''})`,
        hint: 'Give the account pull/push permission on the project (Harbor: project members or robot account permissions)',
      });
    }
    throw this.http.error(response, {
      message: `Registry ${this.registry} answered HTTP ${status} to ${response.method} ${what}${summary ? `: ${summary}` : ''}${response.retries ? ` (after ${response.retries + 1} attempts${response.gaveUp ? `; ${response.gaveUp}` : ''})` : ''}`,
      ...(status >= 500 ? {} : { hint: 'Check the request against the registry (repository name, media type, permissions)' }),
    });
  }

  private authFailure(response: HttpResponse): ThinkubeImageError {
    const summary = summarizeErrors(registryErrorsOf(response.body));
    const what = response.what ?? `${response.method} ${response.display}`;
    return this.http.error(response, {
      message: this.hasCredentials()
        ? `Registry ${this.registry} rejected ${this.who()} for ${what} (HTTP ${response.status}${summary ? `: ${summary}` : ''})`
        : `Registry ${this.registry} requires credentials for ${what} (HTTP ${response.status}${summary ? `: ${summary}` : ''})`,
      hint: this.hasCredentials()
        ? "Check the user name and password for this registry (Harbor robot accounts are named like robot$name) and the account's permissions"
        : 'The registry needs credentials: pass username/password or log in with docker login',
    });
  }

  private failure(code: ErrorCode, message: string, hint: string, details: Record<string, unknown>): ThinkubeImageError {
    return this.http.errors.make(code, message, { hint, details });
  }
}
