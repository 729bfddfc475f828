/**
 * Preflight: everything a pipeline run needs, checked before the first 20-minute build instead of
 * after it. The engine answers and its data root has free disk; the registry answers and takes
 * the credentials; on Harbor, it is healthy, says whose credentials they are, and the project
 * exists (or is created on request); every base image the selected images pull from the registry
 * is there (the seed's "Verify base image exists in Harbor"). Against a plain OCI registry the
 * Harbor-only checks are reported as not applicable.
 *
 * Each check is reported, never thrown: a failed check names the thing and says what to do.
 */
import { statfs } from 'node:fs/promises';
import path from 'node:path';
import { BASES_FILE, loadCatalog, type BaseImage, type Catalog } from '../source/catalog.js';
import { checkEngine, connectEngine, engineGet, withEngineTimeout, type Engine } from '../engine/engine.js';
import { ThinkubeImageError, ValidationError, errorCodeOf } from '../core/errors.js';
import type { PreflightOptions } from '../options/generated/types.js';
import type { HarborClient, HarborHealth, HarborIdentity } from '../harbor/client.js';
import { harborClientFor } from '../harbor/connect.js';
import type { Naming } from '../options/naming-types.js';
import { convertNameLight } from '../options/naming.js';
import { emit, type OperationControls } from '../core/progress.js';
import { registryClientFor, resolveCredentials } from '../registry/connect.js';
import type { RegistryCredentials } from '../registry/docker-config.js';
import type { RegistryClient } from '../registry/client.js';
import { formatBytes, describeQuota } from '../harbor/scan-gate.js';
import { validate } from '../options/schema.js';
import { schemaDefault } from '../options/defaults.js';
import pMap from 'p-map';

export type { PreflightOptions };

export type PreflightCheckName = 'engine' | 'disk' | 'registry' | 'harbor-health' | 'harbor-identity' | 'harbor-project' | 'base-images';

/** Every check, in the order they are reported. */
export const PREFLIGHT_CHECKS: readonly PreflightCheckName[] = Object.freeze([
  'engine',
  'disk',
  'registry',
  'harbor-health',
  'harbor-identity',
  'harbor-project',
  'base-images',
]);

export type PreflightStatus = 'ok' | 'failed' | 'warning' | 'not-applicable';

export interface PreflightCheck {
  name: PreflightCheckName;
  status: PreflightStatus;
  /** What was found, naming the host, folder, project or images. */
  message: string;
  /** What to do about it (failed and warning checks). */
  hint?: string;
  details?: Record<string, unknown>;
}

/**
 * What answers at the registry host: Harbor (its API answered /api/v2.0/health), a plain OCI
 * registry (no Harbor API there), or unknown (Harbor's API did not answer, or no Harbor check ran).
 */
export type RegistryKind = 'harbor' | 'registry' | 'unknown';

export interface MissingBaseImage {
  /** Full reference, e.g. harbor.example.com/library/python:3.12-slim. */
  reference: string;
  repository: string;
  /** Tag or sha256 digest. */
  tagOrDigest: string;
  /** 'base': a mirrored base from bases.yaml; 'catalog': an image of the set that is not selected. */
  kind: 'base' | 'catalog' | 'unlisted';
  /** Selected images whose FROM (or COPY --from) needs it. */
  neededBy: string[];
}

export interface PreflightResult {
  /** No check failed (warnings and not-applicable checks do not count). */
  ok: boolean;
  /** True only when the Harbor project was created. */
  changed: boolean;
  registry: string;
  project: string;
  registryKind: RegistryKind;
  checks: PreflightCheck[];
  /** The user the credentials name, 'anonymous', or 'identity token'. */
  identity: string;
  projectCreated: boolean;
  /** Check mode: the project is missing and would be created (createProject). */
  wouldCreateProject: boolean;
  /** Full references of the base images missing from the registry. */
  missingBaseImages: string[];
  durationMs: number;
}

/** Not part of the options schema. */
export interface PreflightControls extends OperationControls {
  /** Run the read-only checks only: a missing project is reported as "would be created". */
  checkMode?: boolean;
  /** How option names are spelled in hints. Default camel. */
  naming?: Naming;
}

const GiB = 1024 ** 3;
const PLAIN_REGISTRY = 'plain OCI registry';
/** Manifest HEADs in flight at once. */
const HEAD_CONCURRENCY = 4;

/** Option name as the caller spells it: createProject, create_project or --create-project. */
function optionName(naming: Naming, ...parts: string[]): string {
  if (naming === 'kebab') return `--${parts.map((p) => convertNameLight(p, 'kebab')).join('-')}`;
  return parts.map((p) => convertNameLight(p, naming)).join('.');
}

function failedFrom(name: PreflightCheckName, error: unknown, fallbackHint: string, details: Record<string, unknown> = {}): PreflightCheck {
  if (error instanceof ThinkubeImageError) {
    return { name, status: 'failed', message: error.message, hint: error.hint ?? fallbackHint, details: { errorCode: error.code, ...details } };
  }
  // Not one of ours: a bug or an unexpected failure; its message is all there is.
  return { name, status: 'failed', message: error instanceof Error ? error.message : String(error), hint: fallbackHint, details };
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new ThinkubeImageError('ERR_ABORTED', 'Preflight was aborted', { details: { reason: String(signal.reason ?? '') } });
}


// ---- engine and disk ----

async function engineChecks(options: PreflightOptions, minFreeGb: number, controls: PreflightControls): Promise<{ engine: PreflightCheck; disk: PreflightCheck }> {
  let engine: Engine;
  try {
    engine = connectEngine(options.engine);
  } catch (error) {
    const failed = failedFrom('engine', error, 'Fix the engine address (engine.host or DOCKER_HOST)');
    return { engine: failed, disk: { name: 'disk', status: 'not-applicable', message: 'Not checked: the engine address is invalid' } };
  }
  let engineCheck: PreflightCheck;
  try {
    const v = await checkEngine(engine);
    engineCheck = {
      name: 'engine',
      status: 'ok',
      message: `The engine at ${engine.address} answers (version ${v.version}, API ${v.apiVersion}, ${v.os}/${v.arch})`,
      details: { engine: engine.address, ...v },
    };
  } catch (error) {
    const failed = failedFrom('engine', error, 'Start dockerd or `podman system service`, or point engine.host / DOCKER_HOST at a running engine', { engine: engine.address });
    return { engine: failed, disk: { name: 'disk', status: 'not-applicable', message: `Not checked: the engine at ${engine.address} did not answer` } };
  }
  throwIfAborted(controls.signal);
  return { engine: engineCheck, disk: await diskCheck(engine, minFreeGb) };
}

async function diskCheck(engine: Engine, minFreeGb: number): Promise<PreflightCheck> {
  let dataRoot: string | undefined;
  try {
    const info = await withEngineTimeout(engine, 'reading its info', (abortSignal) => engineGet<Record<string, unknown>>(engine, '/info', abortSignal));
    dataRoot = typeof info.DockerRootDir === 'string' && info.DockerRootDir ? info.DockerRootDir : undefined;
  } catch (error) {
    return failedFrom('disk', error, 'Check that the engine is running and answers `docker info`', { engine: engine.address });
  }
  if (!dataRoot) {
    return { name: 'disk', status: 'not-applicable', message: `The engine at ${engine.address} does not report its data root (no DockerRootDir in its info)`, details: { engine: engine.address } };
  }
  const minFreeBytes = Math.round(minFreeGb * GiB);
  const base = { engine: engine.address, dataRoot, minFreeBytes };
  if (!engine.address.startsWith('unix://')) {
    return {
      name: 'disk',
      status: 'not-applicable',
      message: `The engine at ${engine.address} runs on another host: free space of its data root ${dataRoot} cannot be measured from here`,
      hint: `Check it on that host (df -h ${dataRoot}); at least ${minFreeGb} GiB should be free`,
      details: base,
    };
  }
  let fsInfo: Awaited<ReturnType<typeof statfs>>;
  try {
    fsInfo = await statfs(dataRoot);
  } catch (error) {
    // A socket forwarded from a VM or another machine: the path is the engine's, not ours.
    return {
      name: 'disk',
      status: 'not-applicable',
      message: `The data root ${dataRoot} of the engine at ${engine.address} is not readable from this host (${errorCodeOf(error) ?? 'error'}): the engine may run in a VM or container`,
      hint: `Check the free space where the engine runs (df -h ${dataRoot}); at least ${minFreeGb} GiB should be free`,
      details: base,
    };
  }
  const freeBytes = Number(fsInfo.bavail) * Number(fsInfo.bsize);
  const totalBytes = Number(fsInfo.blocks) * Number(fsInfo.bsize);
  const details = { ...base, freeBytes, totalBytes };
  if (freeBytes < minFreeBytes) {
    return {
      name: 'disk',
      status: 'failed',
      message: `Only ${formatBytes(freeBytes)} free (of ${formatBytes(totalBytes)}) on the engine's data root ${dataRoot}; at least ${minFreeGb} GiB are needed`,
      hint: 'Free space on that file system (docker system prune / docker builder prune remove unused images, containers and build cache), grow it, or lower minFreeGb',
      details,
    };
  }
  return { name: 'disk', status: 'ok', message: `${formatBytes(freeBytes)} free (of ${formatBytes(totalBytes)}) on the engine's data root ${dataRoot} (at least ${minFreeGb} GiB needed)`, details };
}

// ---- registry ----

interface RegistryAccess {
  credentials: RegistryCredentials | undefined;
  credentialsFrom: 'options' | 'docker-config' | 'none';
  identity: string;
  client: RegistryClient | undefined;
  /** Set when credentials or the client could not be set up. */
  setupError?: unknown;
}

async function registryAccess(options: PreflightOptions, signal: AbortSignal | undefined): Promise<RegistryAccess> {
  const fromOptions = Boolean(options.auth?.username && options.auth.password);
  let credentials: RegistryCredentials | undefined;
  try {
    credentials = await resolveCredentials(options.registry, options.auth);
  } catch (error) {
    return { credentials: undefined, credentialsFrom: 'none', identity: 'anonymous', client: undefined, setupError: error };
  }
  const identity = credentials?.username ?? (credentials?.identityToken ? 'identity token' : 'anonymous');
  const credentialsFrom = fromOptions ? 'options' : credentials ? 'docker-config' : 'none';
  try {
    return { credentials, credentialsFrom, identity, client: registryClientFor(options.registry, credentials, options.registryTls, { signal }) };
  } catch (error) {
    return { credentials, credentialsFrom, identity, client: undefined, setupError: error };
  }
}

function whoText(access: RegistryAccess): string {
  if (access.credentials?.username) return `user "${access.credentials.username}"`;
  return access.credentials?.identityToken ? 'an identity token' : 'anonymous access';
}

async function registryCheck(options: PreflightOptions, access: RegistryAccess, naming: Naming): Promise<PreflightCheck> {
  const details = { registry: options.registry, username: access.credentials?.username, credentialsFrom: access.credentialsFrom };
  if (!access.client) {
    return failedFrom('registry', access.setupError, 'Fix the registry credentials or TLS options', details);
  }
  try {
    const ping = await access.client.ping();
    if (ping.authRequired && !ping.authenticated) {
      return {
        name: 'registry',
        status: 'failed',
        message: `Registry ${options.registry} answers but wants credentials, and none were given`,
        hint: `Pass ${optionName(naming, 'auth', 'username')} and ${optionName(naming, 'auth', 'password')} (for Harbor a user or a robot account such as robot$thinkube), or docker login ${options.registry}`,
        details,
      };
    }
    if (ping.authenticated) {
      return { name: 'registry', status: 'ok', message: `Registry ${options.registry} accepts the credentials of ${whoText(access)}`, details: { ...details, authRequired: true } };
    }
    const unchecked = access.credentials ? ` (it did not ask for credentials, so those of ${whoText(access)} were not checked)` : '';
    return { name: 'registry', status: 'ok', message: `Registry ${options.registry} answers anonymous requests${unchecked}`, details: { ...details, authRequired: false } };
  } catch (error) {
    return failedFrom('registry', error, `Check that ${options.registry} is the registry's host[:port] and that it is running and reachable from here`, details);
  }
}

// ---- Harbor ----

interface HarborOutcome {
  kind: RegistryKind;
  checks: PreflightCheck[];
  projectCreated: boolean;
  wouldCreateProject: boolean;
}


/** Is a failed health request a sign that no Harbor is there (rather than a Harbor in trouble)? */
function notHarborAnswer(error: unknown): boolean {
  if (!(error instanceof ThinkubeImageError)) return false;
  if (error.details.notHarbor === true) return true;
  // Harbor's health endpoint needs no credentials: a registry that wants some there is not Harbor.
  const status = error.details.status;
  return status === 401 || status === 403 || status === 404 || status === 405;
}

function describeHealth(health: HarborHealth, host: string): PreflightCheck {
  const details = { host, status: health.status, components: health.components };
  if (health.healthy) {
    return { name: 'harbor-health', status: 'ok', message: `Harbor at ${host} is healthy (${health.components.length} components)`, details };
  }
  const named = health.unhealthy.length
    ? health.unhealthy
        .map((name) => {
          const error = health.components.find((c) => c.name === name)?.error;
          return error ? `${name} (${error.length > 200 ? `${error.slice(0, 200)}...` : error})` : name;
        })
        .join(', ')
    : `overall status "${health.status}"`;
  return {
    name: 'harbor-health',
    status: 'failed',
    message: `Harbor at ${host} is unhealthy: ${named}`,
    hint: `Fix the named component${health.unhealthy.length === 1 ? '' : 's'} first (on Kubernetes: kubectl -n harbor get pods, and the logs of the failing pod), then run the preflight again`,
    details,
  };
}

function describeIdentity(identity: HarborIdentity, host: string): PreflightCheck {
  const details: Record<string, unknown> = { host, username: identity.username, robot: identity.robot };
  if (identity.robot) {
    const perms = (identity.permissions ?? []).map((p) => `${p.resource}:${p.action}`);
    details.permissions = identity.permissions ?? [];
    return {
      name: 'harbor-identity',
      status: 'ok',
      message: `Harbor at ${host} knows the credentials as robot account ${identity.username}${perms.length ? ` (system permissions: ${perms.join(', ')})` : ''}`,
      details,
    };
  }
  if (identity.sysadmin !== undefined) details.sysadmin = identity.sysadmin;
  return {
    name: 'harbor-identity',
    status: 'ok',
    message: `Harbor at ${host} knows the credentials as user ${identity.username}${identity.sysadmin ? ' (system administrator)' : ''}`,
    details,
  };
}

async function harborChecks(
  options: PreflightOptions,
  access: RegistryAccess,
  want: Set<PreflightCheckName>,
  controls: PreflightControls,
): Promise<HarborOutcome> {
  const naming = controls.naming ?? 'camel';
  const project = options.project ?? schemaDefault('preflight-options.schema.json', 'properties/project');
  const signal = controls.signal;
  const out: HarborOutcome = { kind: 'unknown', checks: [], projectCreated: false, wouldCreateProject: false };
  const notApplicable = (name: PreflightCheckName, message: string): void => {
    if (want.has(name)) out.checks.push({ name, status: 'not-applicable', message });
  };
  if (access.setupError && !access.client) {
    // The credentials or TLS files could not be read: nothing can be asked.
    if (want.has('harbor-health')) out.checks.push(failedFrom('harbor-health', access.setupError, 'Fix the registry credentials or TLS options'));
    notApplicable('harbor-identity', 'Not checked: the registry credentials or TLS options could not be used');
    notApplicable('harbor-project', 'Not checked: the registry credentials or TLS options could not be used');
    return out;
  }
  let client: HarborClient;
  try {
    client = harborClientFor({ registry: options.registry, credentials: access.credentials, registryTls: options.registryTls });
  } catch (error) {
    if (want.has('harbor-health')) out.checks.push(failedFrom('harbor-health', error, 'Fix the registry TLS options (caFile, validateCerts)'));
    notApplicable('harbor-identity', 'Not checked: the Harbor client could not be set up');
    notApplicable('harbor-project', 'Not checked: the Harbor client could not be set up');
    return out;
  }
  const host = client.host;
  let health: HarborHealth;
  try {
    health = await client.health({ signal });
    out.kind = 'harbor';
  } catch (error) {
    throwIfAborted(signal);
    if (notHarborAnswer(error)) {
      out.kind = 'registry';
      const why = `${options.registry} is a ${PLAIN_REGISTRY} (no Harbor API at ${client.baseUrl})`;
      notApplicable('harbor-health', `Not applicable: ${why}`);
      notApplicable('harbor-identity', `Not applicable: ${why}`);
      notApplicable('harbor-project', `Not applicable: ${why}; repositories need no project there`);
      return out;
    }
    // Unreachable, timed out, or a server error: cannot tell whether Harbor is there.
    out.kind = 'unknown';
    if (want.has('harbor-health')) {
      out.checks.push(failedFrom('harbor-health', error, `Check that ${options.registry} is reachable from here and that Harbor (or the registry) is running`, { host }));
    } else {
      // The Harbor checks that were asked for cannot run: say why, as a failure.
      const check = failedFrom('harbor-health', error, `Check that ${options.registry} is reachable from here`, { host });
      for (const name of ['harbor-identity', 'harbor-project'] as const) {
        if (want.has(name)) out.checks.push({ ...check, name, message: `Cannot tell whether ${options.registry} is Harbor: ${check.message}` });
      }
      return out;
    }
    notApplicable('harbor-identity', `Not checked: Harbor's API at ${client.baseUrl} did not answer`);
    notApplicable('harbor-project', `Not checked: Harbor's API at ${client.baseUrl} did not answer`);
    return out;
  }
  if (want.has('harbor-health')) out.checks.push(describeHealth(health, host));

  if (want.has('harbor-identity')) {
    throwIfAborted(signal);
    if (!access.credentials || access.credentials.password === undefined || access.credentials.username === undefined) {
      const tokenOnly = Boolean(access.credentials?.identityToken);
      out.checks.push({
        name: 'harbor-identity',
        status: 'failed',
        message: tokenOnly
          ? `The Docker config holds only an identity token for ${options.registry}; Harbor's API needs a user name and password`
          : `No credentials for Harbor at ${host}: anonymous access cannot push`,
        hint: `Pass ${optionName(naming, 'auth', 'username')} and ${optionName(naming, 'auth', 'password')} (a Harbor user, or a robot account such as robot$thinkube with its secret), or docker login ${options.registry}`,
        details: { host, credentialsFrom: access.credentialsFrom },
      });
    } else {
      try {
        out.checks.push(describeIdentity(await client.currentUser({ signal }), host));
      } catch (error) {
        throwIfAborted(signal);
        out.checks.push(failedFrom('harbor-identity', error, `Check the password or robot secret of "${access.credentials.username}"`, { host, username: access.credentials.username }));
      }
    }
  }

  if (want.has('harbor-project')) {
    throwIfAborted(signal);
    out.checks.push(await projectCheck(client, project, options, access, controls, out));
  }
  return out;
}

async function projectCheck(
  client: HarborClient,
  project: string,
  options: PreflightOptions,
  access: RegistryAccess,
  controls: PreflightControls,
  out: HarborOutcome,
): Promise<PreflightCheck> {
  const naming = controls.naming ?? 'camel';
  const host = client.host;
  const details: Record<string, unknown> = { host, project };
  let exists: boolean;
  try {
    exists = await client.projectExists(project, { signal: controls.signal });
  } catch (error) {
    throwIfAborted(controls.signal);
    return failedFrom('harbor-project', error, `Check that ${whoText(access)} may see project "${project}"`, details);
  }
  if (exists) {
    let about = '';
    if (access.credentials?.password !== undefined && access.credentials.username !== undefined) {
      try {
        const info = await client.getProject(project, { signal: controls.signal });
        details.public = info.public;
        if (info.quota) details.quota = info.quota;
        about = ` (${info.public ? 'public' : 'private'}; ${describeQuota(info, project).replace(/^project \S+ /, '')})`;
      } catch {
        // Visibility and quota are extra information: the project exists, which is what counts.
      }
    }
    return { name: 'harbor-project', status: 'ok', message: `Project "${project}" exists on Harbor at ${host}${about}`, details };
  }
  const visibility = options.projectPublic === false ? 'private' : 'public';
  if (!options.createProject) {
    return {
      name: 'harbor-project',
      status: 'failed',
      message: `Project "${project}" does not exist on Harbor at ${host}`,
      hint: `Create it in Harbor (Projects > New Project), set ${optionName(naming, 'createProject')} to true to let the preflight create it, or correct the project name (${optionName(naming, 'project')})`,
      details,
    };
  }
  if (controls.checkMode) {
    out.wouldCreateProject = true;
    return { name: 'harbor-project', status: 'ok', message: `Project "${project}" does not exist on Harbor at ${host}; it would be created (${visibility}) - check mode, nothing changed`, details: { ...details, wouldCreate: true, public: visibility === 'public' } };
  }
  try {
    const created = await client.createProject(project, { public: visibility === 'public' }, { signal: controls.signal });
    // 409 (created meanwhile by someone else) is fine: it exists now.
    out.projectCreated = created.changed;
    return {
      name: 'harbor-project',
      status: 'ok',
      message: created.changed ? `Created ${visibility} project "${project}" on Harbor at ${host}` : `Project "${project}" exists on Harbor at ${host} (created meanwhile by someone else)`,
      details: { ...details, created: created.changed, public: visibility === 'public', ...(created.location ? { location: created.location } : {}) },
    };
  } catch (error) {
    throwIfAborted(controls.signal);
    return failedFrom('harbor-project', error, `Create project "${project}" in Harbor by hand, or use an account that may create projects`, details);
  }
}

// ---- base images ----

interface NeededBase {
  repository: string;
  reference: string;
  kind: MissingBaseImage['kind'];
  neededBy: Set<string>;
}

function neededBases(catalog: Catalog, selected: Set<string>): Map<string, NeededBase> {
  const needed = new Map<string, NeededBase>();
  for (const image of catalog.images) {
    if (!selected.has(image.name)) continue;
    for (const base of image.baseImages) {
      const kind = baseKind(base, selected);
      if (!kind || !base.parsed) continue;
      const reference = base.parsed.digest ?? base.parsed.tag ?? 'latest';
      const key = `${base.parsed.repository}${reference.includes(':') ? '@' : ':'}${reference}`;
      const entry = needed.get(key) ?? { repository: base.parsed.repository, reference, kind, neededBy: new Set<string>() };
      entry.neededBy.add(image.name);
      needed.set(key, entry);
    }
  }
  return needed;
}

/** What a FROM needs from the registry: mirrored bases, images of the set not being built, and unlisted names on the registry. */
function baseKind(base: BaseImage, selected: Set<string>): MissingBaseImage['kind'] | undefined {
  if (base.kind === 'base') return 'base';
  if (base.kind === 'catalog') return base.image !== undefined && !selected.has(base.image) ? 'catalog' : undefined;
  // Named on the registry but not listed in bases.yaml (lint reports that): the pull still needs it.
  if (base.kind === 'missing') return 'unlisted';
  return undefined;
}

function mirrorHint(registry: string, missing: MissingBaseImage[]): string {
  const parts: string[] = [];
  const bases = missing.filter((m) => m.kind !== 'catalog');
  if (bases.length) {
    const first = bases[0] as MissingBaseImage;
    const sep = first.tagOrDigest.includes(':') ? '@' : ':';
    const upstream = first.repository.startsWith('library/') ? `docker.io/${first.repository}` : `<upstream>/${first.repository.split('/').slice(1).join('/')}`;
    parts.push(
      `Mirror the missing base image${bases.length === 1 ? '' : 's'} into ${registry} before building: with a Harbor replication rule pulling them from their upstream registry, or with skopeo, e.g. skopeo copy docker://${upstream}${sep}${first.tagOrDigest} docker://${registry}/${first.repository}${sep}${first.tagOrDigest}`,
    );
  }
  const images = missing.filter((m) => m.kind === 'catalog');
  if (images.length) {
    parts.push(`Build and push ${images.map((m) => m.repository.split('/').pop()).join(', ')} first, or add ${images.length === 1 ? 'it' : 'them'} to the selected images`);
  }
  return parts.join('; ');
}

async function baseImagesCheck(options: PreflightOptions, access: RegistryAccess, registryFailed: boolean, naming: Naming): Promise<{ check: PreflightCheck; missing: string[] }> {
  const project = options.project ?? schemaDefault('preflight-options.schema.json', 'properties/project');
  if (!options.imagesDir) {
    return { check: { name: 'base-images', status: 'not-applicable', message: `Not checked: no images folder given (${optionName(naming, 'imagesDir')})` }, missing: [] };
  }
  const imagesDir = path.resolve(options.imagesDir);
  let catalog: Catalog;
  try {
    catalog = await loadCatalog(imagesDir, { registry: options.registry, project });
  } catch (error) {
    return { check: failedFrom('base-images', error, `Give ${optionName(naming, 'imagesDir')} as the folder holding one sub-folder per image`, { imagesDir }), missing: [] };
  }
  const known = new Set(catalog.images.map((i) => i.name));
  const unknown = (options.images ?? []).filter((name) => !known.has(name));
  if (unknown.length) {
    const error = new ValidationError(
      'image selection',
      unknown.map((name) => ({ field: optionName(naming, 'images'), message: `"${name}" is not an image of ${imagesDir} (known: ${[...known].join(', ') || 'none'})` })),
    );
    return { check: failedFrom('base-images', error, `Fix ${optionName(naming, 'images')}`, { imagesDir, unknown }), missing: [] };
  }
  const selected = new Set(options.images ?? [...known]);
  const needed = [...neededBases(catalog, selected).values()];
  const details: Record<string, unknown> = { registry: options.registry, imagesDir, selected: [...selected].sort(), checked: needed.length };
  if (needed.length === 0) {
    return { check: { name: 'base-images', status: 'ok', message: `The selected images need no base image from ${options.registry}`, details }, missing: [] };
  }
  if (registryFailed || !access.client) {
    return {
      check: { name: 'base-images', status: 'not-applicable', message: `Not checked: registry ${options.registry} cannot be used (see the registry check); ${needed.length} base image(s) to check`, details },
      missing: [],
    };
  }
  const client = access.client;
  const results = await pMap(needed, async (base) => {
    try {
      const found = await client.headManifest(base.repository, base.reference);
      return { base, found: found !== undefined, digest: found?.digest };
    } catch (error) {
      return { base, found: false, error };
    }
  }, { concurrency: HEAD_CONCURRENCY });
  const describe = (base: NeededBase): MissingBaseImage => ({
    reference: `${options.registry}/${base.repository}${base.reference.includes(':') ? '@' : ':'}${base.reference}`,
    repository: base.repository,
    tagOrDigest: base.reference,
    kind: base.kind,
    neededBy: [...base.neededBy].sort(),
  });
  const shortName = (m: MissingBaseImage): string => m.reference.slice(options.registry.length + 1);
  const missing = results.filter((r) => !r.found && !r.error).map((r) => describe(r.base));
  const unreadable = results.filter((r) => r.error).map((r) => ({ ...describe(r.base), error: r.error }));
  details.present = results.filter((r) => r.found).map((r) => ({ reference: describe(r.base).reference, digest: r.digest }));
  details.missing = missing;
  if (missing.length === 0 && unreadable.length === 0) {
    return {
      check: { name: 'base-images', status: 'ok', message: `All ${needed.length} base image(s) the selected images need are in ${options.registry}: ${results.map((r) => shortName(describe(r.base))).join(', ')}`, details },
      missing: [],
    };
  }
  const sentences: string[] = [];
  if (missing.length) {
    const list = missing
      .map((m) => `${shortName(m)} (${m.kind === 'catalog' ? 'image of the set, not selected; ' : m.kind === 'unlisted' ? `not listed in ${BASES_FILE}; ` : ''}needed by ${m.neededBy.join(', ')})`)
      .join(', ');
    sentences.push(`${missing.length} base image${missing.length === 1 ? ' is' : 's are'} missing from ${options.registry}: ${list}`);
  }
  if (unreadable.length) {
    const list = unreadable.map((u) => `${shortName(u)}: ${u.error instanceof Error ? u.error.message : String(u.error)}`).join('; ');
    sentences.push(`${unreadable.length} base image${unreadable.length === 1 ? '' : 's'} could not be checked: ${list}`);
    details.unreadable = unreadable.map(({ error, ...rest }) => ({ ...rest, errorCode: (error as ThinkubeImageError)?.code }));
  }
  const hints = [missing.length ? mirrorHint(options.registry, missing) : '', unreadable.length ? `Check that ${whoText(access)} may pull from those repositories` : ''].filter(Boolean);
  return {
    check: { name: 'base-images', status: 'failed', message: sentences.join('; '), hint: hints.join('; '), details },
    missing: missing.map((m) => m.reference),
  };
}

// ---- the whole preflight ----

export async function runPreflight(options: PreflightOptions, controls: PreflightControls = {}): Promise<PreflightResult> {
  const valid = validate<PreflightOptions>('preflight-options.schema.json', options, { naming: controls.naming, what: 'preflight options' });
  return runValidatedPreflight(valid, controls);
}

/** The preflight for options already validated (the command layer validates with its own naming). */
export async function runValidatedPreflight(options: PreflightOptions, controls: PreflightControls = {}): Promise<PreflightResult> {
  const started = Date.now();
  const naming = controls.naming ?? 'camel';
  const project = options.project ?? schemaDefault('preflight-options.schema.json', 'properties/project');
  const want = new Set<PreflightCheckName>(options.only ?? PREFLIGHT_CHECKS);
  const minFreeGb = options.minFreeGb ?? schemaDefault('preflight-options.schema.json', 'properties/minFreeGb');
  throwIfAborted(controls.signal);
  const report = (check: PreflightCheck): PreflightCheck => {
    emit(controls, { type: 'info', message: `preflight ${check.name}: ${check.status}: ${check.message}` });
    return check;
  };

  const engineTask = want.has('engine') || want.has('disk') ? engineChecks(options, minFreeGb, controls) : Promise.resolve(undefined);
  const needsRegistry = want.has('registry') || want.has('base-images') || want.has('harbor-health') || want.has('harbor-identity') || want.has('harbor-project');
  const access = needsRegistry ? await registryAccess(options, controls.signal) : undefined;

  const registryTask = (async () => {
    if (!access || !want.has('registry')) return undefined;
    return registryCheck(options, access, naming);
  })();
  const harborTask = (async () => {
    if (!access || !['harbor-health', 'harbor-identity', 'harbor-project'].some((n) => want.has(n as PreflightCheckName))) return undefined;
    return harborChecks(options, access, want, controls);
  })();
  const basesTask = (async () => {
    if (!access || !want.has('base-images')) return undefined;
    const registry = await registryTask;
    return baseImagesCheck(options, access, registry?.status === 'failed', naming);
  })();

  const [engineOut, registryOut, harborOut, basesOut] = await Promise.all([engineTask, registryTask, harborTask, basesTask]);
  throwIfAborted(controls.signal);

  const byName = new Map<PreflightCheckName, PreflightCheck>();
  if (engineOut) {
    byName.set('engine', engineOut.engine);
    byName.set('disk', engineOut.disk);
  }
  if (registryOut) byName.set('registry', registryOut);
  for (const check of harborOut?.checks ?? []) byName.set(check.name, check);
  if (basesOut) byName.set('base-images', basesOut.check);
  const checks = PREFLIGHT_CHECKS.filter((name) => want.has(name) && byName.has(name)).map((name) => report(byName.get(name) as PreflightCheck));

  const projectCreated = harborOut?.projectCreated ?? false;
  return {
    ok: checks.every((c) => c.status !== 'failed'),
    changed: projectCreated,
    registry: options.registry,
    project,
    registryKind: harborOut?.kind ?? 'unknown',
    checks,
    identity: access?.identity ?? 'anonymous',
    projectCreated,
    wouldCreateProject: harborOut?.wouldCreateProject ?? false,
    missingBaseImages: basesOut?.missing ?? [],
    durationMs: Date.now() - started,
  };
}

/** One line for people: what failed (with what to do), or that everything passed. */
export function summarizePreflight(result: PreflightResult): string {
  const where = `${result.registry} (${result.registryKind === 'harbor' ? 'Harbor' : result.registryKind === 'registry' ? PLAIN_REGISTRY : 'registry kind unknown'})`;
  const failed = result.checks.filter((c) => c.status === 'failed');
  const count = (status: PreflightStatus): number => result.checks.filter((c) => c.status === status).length;
  const tally = [`${count('ok')} ok`, `${failed.length} failed`, `${count('warning')} warning(s)`, `${count('not-applicable')} not applicable`].join(', ');
  if (failed.length) {
    return `Preflight of ${where} failed (${tally}): ${failed.map((c) => `${c.name}: ${c.message}${c.hint ? `. ${c.hint}` : ''}`).join(' | ')}`;
  }
  const extra = result.projectCreated ? `; created project "${result.project}"` : result.wouldCreateProject ? `; project "${result.project}" would be created` : '';
  return `Preflight of ${where} passed (${tally})${extra}`;
}
