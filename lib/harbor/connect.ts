/**
 * The Harbor API client for a registry as users name it (host, registryTls, its credentials):
 * Harbor serves its API on the registry's host, over the same TLS. One place for the preflight
 * and the pipeline's scan gate.
 */
import { HarborClient } from './client.js';
import type { RegistryCredentials } from '../registry/docker-config.js';
import type { RegistryTls } from '../options/generated/types.js';

export interface HarborTarget {
  registry: string;
  credentials?: RegistryCredentials;
  registryTls?: RegistryTls;
  /** Harbor's base URL when it is not the registry's host. */
  url?: string;
  basePath?: string;
}

export function harborClientFor(target: HarborTarget): HarborClient {
  const { registry, credentials, registryTls: tls } = target;
  const withPassword = credentials?.username !== undefined && credentials.password !== undefined;
  return new HarborClient({
    // A non-loopback registry reached over plain HTTP has its API there too.
    ...(target.url ? { url: target.url } : tls?.plainHttp ? { url: `http://${registry}` } : { host: registry }),
    ...(target.basePath !== undefined ? { basePath: target.basePath } : {}),
    ...(withPassword ? { username: credentials.username as string, password: credentials.password as string } : {}),
    ...(tls?.validateCerts === false ? { validateCerts: false } : {}),
    ...(tls?.caFile ? { caFile: tls.caFile } : {}),
    ...(tls?.timeoutSeconds ? { timeoutSeconds: tls.timeoutSeconds } : {}),
  });
}
