/**
 * Image references ([registry[:port]/]repository[:tag][@digest]) parsed and normalised the way
 * the Docker CLI does (distribution/reference ParseNormalizedNamed), so that what a user types
 * names the same image here as in `docker push`.
 */
import { ValidationError } from '../core/errors.js';
import { hostName, isLoopbackHost } from '../http/tls.js';

export interface ImageRef {
  /** host[:port]; 'docker.io' when the reference names none. */
  registry: string;
  /** Path inside the registry, e.g. library/busybox or team/jupyter-ml-cpu. */
  repository: string;
  tag?: string;
  /** algorithm:hex, e.g. sha256:<64 hex>. */
  digest?: string;
}

export const DEFAULT_REGISTRY = 'docker.io';
export const DEFAULT_TAG = 'latest';

const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
// One path component: lowercase alphanumerics joined by '.', '_', '__' or runs of '-'.
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN_LABEL = '[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?';
const REGISTRY = new RegExp(`^(?:${DOMAIN_LABEL}(?:\\.${DOMAIN_LABEL})*|\\[[0-9A-Fa-f:.]+\\])(?::[0-9]{1,5})?$`);
const DIGESTS: Record<string, RegExp> = { sha256: /^[a-f0-9]{64}$/, sha512: /^[a-f0-9]{128}$/ };
const MAX_NAME_LENGTH = 255;

function invalid(ref: string, message: string): ValidationError {
  return new ValidationError('image reference', [{ field: JSON.stringify(ref), message }]);
}

export function isValidTag(tag: string): boolean {
  return TAG.test(tag);
}

export function isValidDigest(digest: string): boolean {
  const colon = digest.indexOf(':');
  if (colon < 0) return false;
  const pattern = DIGESTS[digest.slice(0, colon)];
  return pattern !== undefined && pattern.test(digest.slice(colon + 1));
}

/** A repository path such as library/busybox (lowercase components separated by '/'). */
export function isValidRepository(repository: string): boolean {
  return repository.length > 0 && repository.length <= MAX_NAME_LENGTH && repository.split('/').every((c) => PATH_COMPONENT.test(c));
}

/** host[:port] (DNS name, IPv4 or bracketed IPv6) with a port in range. */
export function isValidRegistry(registry: string): boolean {
  if (!REGISTRY.test(registry)) return false;
  const port = /:(\d+)$/.exec(registry.startsWith('[') ? registry.slice(registry.indexOf(']')) : registry)?.[1];
  return port === undefined || (Number(port) >= 1 && Number(port) <= 65535);
}

/**
 * Parse a reference with Docker's normalisation: the first path component is the registry when it
 * contains '.' or ':', is 'localhost' or has uppercase letters; otherwise the registry is docker.io,
 * where a single-component name gets the 'library/' prefix. No default tag (see withDefaultTag).
 * Throws ValidationError (ERR_INVALID_OPTIONS) naming the reference.
 */
export function parseReference(ref: string): ImageRef {
  if (typeof ref !== 'string' || ref.length === 0) throw invalid(String(ref), 'must be a non-empty image reference');
  if (ref.length > 512) throw invalid(ref.slice(0, 64) + '...', 'is longer than 512 characters');
  if (/\s/.test(ref)) throw invalid(ref, 'must not contain whitespace');

  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!isValidDigest(digest)) throw invalid(ref, `digest "${digest}" must be sha256: followed by 64 lowercase hex characters`);
  }

  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!isValidTag(tag)) throw invalid(ref, `tag "${tag}" must be 1 to 128 characters from [A-Za-z0-9_.-], not starting with . or -`);
  }

  let registry = DEFAULT_REGISTRY;
  let repository = rest;
  const slash = rest.indexOf('/');
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    if (/[.:]/.test(first) || first === 'localhost' || first !== first.toLowerCase()) {
      registry = first;
      repository = rest.slice(slash + 1);
    }
  }
  if (registry !== DEFAULT_REGISTRY && !isValidRegistry(registry)) {
    throw invalid(ref, `registry "${registry}" must be a host name or IP address with an optional port`);
  }
  if (registry === 'index.docker.io') registry = DEFAULT_REGISTRY;
  if (registry === DEFAULT_REGISTRY && !repository.includes('/')) repository = `library/${repository}`;
  if (repository.length === 0) throw invalid(ref, 'has no repository name');
  if (repository !== repository.toLowerCase()) throw invalid(ref, `repository "${repository}" must be lowercase`);
  if (!isValidRepository(repository)) {
    throw invalid(ref, `repository "${repository}" must be path components of lowercase letters and digits separated by '/', joined inside by '.', '_', '__' or '-'`);
  }

  const out: ImageRef = { registry, repository };
  if (tag !== undefined) out.tag = tag;
  if (digest !== undefined) out.digest = digest;
  return out;
}

/** The reference with tag 'latest' when it has neither tag nor digest (Docker's TagNameOnly). */
export function withDefaultTag(ref: ImageRef): ImageRef {
  return ref.tag === undefined && ref.digest === undefined ? { ...ref, tag: DEFAULT_TAG } : { ...ref };
}

/** Fully qualified form: registry/repository[:tag][@digest] (docker.io is kept). */
export function formatReference(ref: ImageRef): string {
  return `${ref.registry}/${ref.repository}${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest !== undefined ? `@${ref.digest}` : ''}`;
}

/** Host part of host[:port], brackets kept for IPv6 ("[::1]:5000" -> "[::1]"). */
export function registryHost(registry: string): string {
  return hostName(registry);
}

/**
 * Loopback registry (localhost, 127.0.0.0/8, ::1), with or without port. Docker talks plain HTTP
 * to these without configuration, and so does RegistryClient (the one loopback test: lib/http).
 */
export function isLoopbackRegistry(host: string): boolean {
  return isLoopbackHost(host);
}
