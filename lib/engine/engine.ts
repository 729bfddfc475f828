/**
 * Connection to a Docker-compatible engine (dockerd or Podman's Docker API), configured the way
 * the Docker CLI is: explicit options first, then DOCKER_HOST / DOCKER_TLS_VERIFY /
 * DOCKER_CERT_PATH, then the local socket.
 *
 * dockerode is imported on the first call that needs it (a build, push, pull or inspect): its
 * import (docker-modem, ssh2, gRPC, protobufjs) costs about 200 ms, most of a no-op run's start-up.
 * The short calls every run makes (/version) go through lib/http's transport instead, except for
 * ssh engines.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type Docker from 'dockerode';
import { ThinkubeImageError, errorCodeOf } from '../core/errors.js';
import type { EngineOptions } from '../options/generated/types.js';
import { schemaDefault } from '../options/defaults.js';
import { exchange } from '../http/transport.js';

export const DEFAULT_ENGINE_HOST = 'unix:///var/run/docker.sock';

export interface Engine {
  /** The address in DOCKER_HOST form, for messages. */
  address: string;
  /** Milliseconds allowed for short API calls (ping, inspect, info). */
  timeoutMs: number;
  /** How to reach it, as dockerode's connection options. */
  connection: Docker.DockerOptions;
  /** The dockerode client, imported and created on the first call (one per engine). */
  client(): Promise<Docker>;
}

export function resolveEngineAddress(options: EngineOptions = {}, env: NodeJS.ProcessEnv = process.env): string {
  return options.host ?? (env.DOCKER_HOST || DEFAULT_ENGINE_HOST);
}

export function connectEngine(options: EngineOptions = {}, env: NodeJS.ProcessEnv = process.env): Engine {
  const address = resolveEngineAddress(options, env);
  const tlsVerify = options.tlsVerify ?? (env.DOCKER_TLS_VERIFY !== undefined && env.DOCKER_TLS_VERIFY !== '' && env.DOCKER_TLS_VERIFY !== '0');
  const certPath = options.certPath ?? (env.DOCKER_CERT_PATH || path.join(os.homedir(), '.docker'));
  const timeoutMs = (options.timeoutSeconds ?? schemaDefault('common.schema.json', 'definitions/engine/properties/timeoutSeconds')) * 1000;
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `Engine address "${address}" is not a URL`, {
      hint: 'Use unix:///path/to/docker.sock, tcp://host:2376 or ssh://user@host (like DOCKER_HOST)',
    });
  }
  let config: Docker.DockerOptions;
  switch (url.protocol) {
    case 'unix:':
      config = { socketPath: url.pathname };
      break;
    case 'tcp:':
    case 'http:':
    case 'https:': {
      const useTls = tlsVerify || url.protocol === 'https:';
      config = { host: url.hostname, port: url.port || (useTls ? 2376 : 2375), protocol: useTls ? 'https' : 'http' };
      if (useTls) {
        try {
          config.ca = readFileSync(path.join(certPath, 'ca.pem'));
          config.cert = readFileSync(path.join(certPath, 'cert.pem'));
          config.key = readFileSync(path.join(certPath, 'key.pem'));
        } catch (error) {
          throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `TLS to the engine at ${address} needs ca.pem, cert.pem and key.pem in ${certPath} (${errorCodeOf(error) ?? 'unreadable'})`, {
            hint: 'Set engine.certPath (or DOCKER_CERT_PATH) to the folder with the client certificates',
          });
        }
      }
      break;
    }
    case 'ssh:':
      config = {
        protocol: 'ssh',
        host: url.hostname,
        port: url.port || 22,
        username: decodeURIComponent(url.username) || os.userInfo().username,
        sshOptions: { agent: env.SSH_AUTH_SOCK },
      } as Docker.DockerOptions;
      break;
    default:
      throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `Engine address "${address}" has an unsupported scheme ${url.protocol}`, {
        hint: 'Use unix://, tcp:// or ssh:// (like DOCKER_HOST)',
      });
  }
  let client: Promise<Docker> | undefined;
  const connection = config;
  return {
    address,
    timeoutMs,
    connection,
    client: () => (client ??= import('dockerode').then(({ default: Dockerode }) => new Dockerode(connection))),
  };
}

/**
 * GET a small JSON answer of the engine's API (/version, /info) without dockerode: one exchange of
 * the library's HTTP transport over the unix socket or TCP (TLS with the client certificates),
 * dockerode only for ssh engines. A failure carries what dockerode's would (a socket error code,
 * or statusCode and json), so engineError words both alike.
 */
export async function engineGet<T>(engine: Engine, apiPath: '/version' | '/info', signal: AbortSignal): Promise<T> {
  const c = engine.connection;
  if (c.protocol === 'ssh') {
    const docker = await engine.client();
    // dockerode takes an abortSignal here; its typings know only the callback form.
    const call = (apiPath === '/version' ? docker.version : docker.info).bind(docker) as unknown as (o: object) => Promise<T>;
    return call({ abortSignal: signal });
  }
  const tls = c.protocol === 'https';
  const response = await exchange({
    method: 'GET',
    url: new URL(c.socketPath ? `http://localhost${apiPath}` : `${tls ? 'https' : 'http'}://${c.host}:${c.port}${apiPath}`),
    headers: { accept: 'application/json' },
    timeoutMs: engine.timeoutMs,
    decompress: false,
    tls: tls ? { ca: c.ca, cert: c.cert, key: c.key } : {},
    socketPath: c.socketPath,
    followRedirect: false,
    signal,
  });
  const text = response.body.toString('utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  if (response.status >= 200 && response.status < 300 && json !== undefined) return json as T;
  throw Object.assign(new Error(`(HTTP code ${response.status}) unexpected - ${text.trim().slice(0, 200)}`), { statusCode: response.status, json });
}

/** Wrap a low-level failure talking to the engine into an error naming the engine. */
export function engineError(engine: Pick<Engine, 'address'>, error: unknown, doing: string): ThinkubeImageError {
  if (error instanceof ThinkubeImageError) return error;
  const code = errorCodeOf(error);
  const statusCode = (error as { statusCode?: number } | null)?.statusCode;
  if (statusCode === undefined && code !== undefined) {
    return new ThinkubeImageError('ERR_ENGINE_UNREACHABLE', `Cannot reach the container engine at ${engine.address} while ${doing} (${code})`, {
      hint: 'Check that dockerd or `podman system service` is running there and that you may use its socket; set DOCKER_HOST or the engine host option to the right address',
      cause: error,
      details: { engine: engine.address },
    });
  }
  const json = (error as { json?: { message?: string } } | null)?.json;
  // docker-modem prefixes "(HTTP code 400) unexpected - " when it did not parse the body (streamed calls).
  const message = (json?.message ?? (error as Error | null)?.message ?? String(error)).replace(/^\(HTTP code \d+\) [a-z ]*- /, '');
  return new ThinkubeImageError('ERR_ENGINE', `The container engine at ${engine.address} failed while ${doing}: ${message.trim()}`, {
    cause: error,
    details: { engine: engine.address, statusCode, message: message.trim() },
  });
}

/** Run a short engine call with the engine's timeout; errors name the engine. */
export async function withEngineTimeout<T>(engine: Engine, doing: string, call: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), engine.timeoutMs);
  try {
    return await call(controller.signal);
  } catch (error) {
    if (controller.signal.aborted) {
      throw new ThinkubeImageError('ERR_ENGINE_UNREACHABLE', `The container engine at ${engine.address} did not answer within ${engine.timeoutMs / 1000}s while ${doing}`, {
        hint: 'Check that the engine is running and not overloaded; raise engine.timeoutSeconds if it is just slow',
        details: { engine: engine.address },
      });
    }
    throw engineError(engine, error, doing);
  } finally {
    clearTimeout(timer);
  }
}

export interface EngineProduct {
  /** podman: Podman's Docker-compatible service; docker: dockerd (or anything else that answers). */
  name: 'docker' | 'podman';
  version: string;
}

const products = new WeakMap<Engine, Promise<EngineProduct>>();

function productOf(version: Docker.DockerVersion): EngineProduct {
  const podman = version.Components?.find((c) => /podman/i.test(c.Name));
  return podman ? { name: 'podman', version: podman.Version } : { name: 'docker', version: version.Version };
}

/** Ping the engine: resolves to its version info, or throws ERR_ENGINE_UNREACHABLE naming the address. */
export async function checkEngine(engine: Engine): Promise<{ version: string; apiVersion: string; os: string; arch: string }> {
  return withEngineTimeout(engine, 'checking the engine', async (abortSignal) => {
    const version = await engineGet<Docker.DockerVersion>(engine, '/version', abortSignal);
    // The same answer tells which engine this is: a build then need not ask again.
    if (!products.has(engine)) products.set(engine, Promise.resolve(productOf(version)));
    return { version: version.Version ?? 'unknown', apiVersion: version.ApiVersion ?? 'unknown', os: version.Os ?? 'linux', arch: version.Arch ?? 'amd64' };
  });
}

/**
 * Which engine answers at this connection, asked once (Podman's service lists a "Podman Engine"
 * component in /version). Builds need it: buildah's registry layer cache exists only on Podman.
 */
export function engineProduct(engine: Engine): Promise<EngineProduct> {
  let product = products.get(engine);
  if (!product) {
    product = engineGet<Docker.DockerVersion>(engine, '/version', AbortSignal.timeout(engine.timeoutMs)).then(
      productOf,
      (error: unknown) => {
        products.delete(engine);
        throw engineError(engine, error, 'asking the engine for its version');
      },
    );
    products.set(engine, product);
  }
  return product;
}
