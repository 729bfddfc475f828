/**
 * A registry client for the options users give (registryTls, auth): the one place that turns
 * them into credentials and a RegistryClient, for every step that talks to a registry.
 */
import { RegistryClient } from './client.js';
import { loadDockerCredentials, type RegistryCredentials } from './docker-config.js';
import type { RetryListener } from '../core/retry.js';
import type { RegistryAuth, RegistryTls, RetryOptions } from '../options/generated/types.js';

/** Resolve credentials: explicit username/password, else the Docker config entry, else anonymous. */
export async function resolveCredentials(registry: string, auth: RegistryAuth | undefined): Promise<RegistryCredentials | undefined> {
  if (auth?.username && auth.password) return { username: auth.username, password: auth.password };
  return loadDockerCredentials(registry, auth?.dockerConfig);
}

/** Retry and cancellation of a registry client's requests (its retries are reported through onRetry). */
export interface RegistryClientHooks {
  retry?: RetryOptions;
  onRetry?: RetryListener;
  signal?: AbortSignal;
  /** Keep what is read by digest (a client of one run: RegistryClientOptions.cacheByDigest). */
  cacheByDigest?: boolean;
}

/** TLS fields left out take the schema's defaults (the client validates them). */
export function registryClientFor(registry: string, credentials: RegistryCredentials | undefined, tls: RegistryTls | undefined, hooks: RegistryClientHooks = {}): RegistryClient {
  return new RegistryClient({
    registry,
    credentials,
    validateCerts: tls?.validateCerts,
    caFile: tls?.caFile,
    plainHttp: tls?.plainHttp,
    timeoutSeconds: tls?.timeoutSeconds,
    retry: hooks.retry,
    onRetry: hooks.onRetry,
    signal: hooks.signal,
    cacheByDigest: hooks.cacheByDigest,
  });
}
