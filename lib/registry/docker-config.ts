/**
 * Registry credentials from a Docker CLI config.json, found the way `docker push` finds them:
 * credHelpers / credsStore helpers first, then the `auths` entries.
 */
import { readFile, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ThinkubeImageError } from '../core/errors.js';

export interface RegistryCredentials {
  username?: string;
  password?: string;
  /** OAuth2 refresh token (Docker's identitytoken), traded at the token realm for access tokens. */
  identityToken?: string;
}

interface AuthEntry {
  auth?: unknown;
  username?: unknown;
  password?: unknown;
  identitytoken?: unknown;
}

interface DockerConfigFile {
  auths?: Record<string, AuthEntry>;
  credsStore?: unknown;
  credHelpers?: Record<string, unknown>;
}

/** The key docker login writes for Docker Hub. */
const DOCKER_HUB_KEY = 'https://index.docker.io/v1/';
const DOCKER_HUB_HOSTS = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);
const HELPER_TIMEOUT_MS = 30_000;

/** Config file to read: explicit path (file, or a directory holding config.json), else $DOCKER_CONFIG/config.json, else ~/.docker/config.json. */
export async function dockerConfigPath(configPath?: string): Promise<string> {
  if (configPath) {
    const info = await stat(configPath).catch(() => undefined);
    return info?.isDirectory() ? path.join(configPath, 'config.json') : configPath;
  }
  const dir = process.env.DOCKER_CONFIG || path.join(os.homedir(), '.docker');
  return path.join(dir, 'config.json');
}

/** Docker's ConvertToHostname: drop the scheme and any path ("https://host:5000/v1/" -> "host:5000"). */
function keyHostname(key: string): string {
  let h = key;
  if (h.startsWith('http://')) h = h.slice(7);
  else if (h.startsWith('https://')) h = h.slice(8);
  const slash = h.indexOf('/');
  return (slash >= 0 ? h.slice(0, slash) : h).toLowerCase();
}

function isDockerHub(registry: string): boolean {
  return DOCKER_HUB_HOSTS.has(registry.toLowerCase());
}

function findEntry<T>(map: Record<string, T> | undefined, registry: string): T | undefined {
  if (!map || typeof map !== 'object') return undefined;
  const hub = isDockerHub(registry);
  if (hub && map[DOCKER_HUB_KEY] !== undefined) return map[DOCKER_HUB_KEY];
  if (map[registry] !== undefined) return map[registry];
  const wanted = registry.toLowerCase();
  for (const [key, value] of Object.entries(map)) {
    const host = keyHostname(key);
    if (host === wanted || (hub && DOCKER_HUB_HOSTS.has(host))) return value;
  }
  return undefined;
}

function credentialsFromEntry(entry: AuthEntry | undefined): RegistryCredentials | undefined {
  if (!entry || typeof entry !== 'object') return undefined;
  const out: RegistryCredentials = {};
  if (typeof entry.auth === 'string' && entry.auth.length > 0) {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    // The password may itself contain ':'; the user name cannot.
    if (colon > 0) {
      out.username = decoded.slice(0, colon);
      out.password = decoded.slice(colon + 1);
    }
  }
  if (typeof entry.username === 'string' && entry.username) out.username = entry.username;
  if (typeof entry.password === 'string' && entry.password) out.password = entry.password;
  if (typeof entry.identitytoken === 'string' && entry.identitytoken) {
    out.identityToken = entry.identitytoken;
    // docker login stores "<token>" as the user for token logins: that is no user name.
    if (out.username === '<token>') delete out.username;
    delete out.password;
  }
  if (!out.password && !out.identityToken) return undefined;
  return out;
}

/**
 * Run `docker-credential-<helper> get` with the server address on stdin. Returns undefined when the
 * helper is not installed or has no entry for the server. Output is never put into messages.
 */
async function fromHelper(helper: string, serverAddress: string): Promise<RegistryCredentials | undefined> {
  if (!/^[A-Za-z0-9._-]+$/.test(helper)) {
    throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `Docker config names an invalid credential helper "${helper.slice(0, 64)}"`, {
      hint: 'Fix credsStore/credHelpers in the Docker config (helper names are like "pass" or "secretservice")',
    });
  }
  const program = `docker-credential-${helper}`;
  const result = await new Promise<{ code: number | null; stdout: string; stderr: string; missing: boolean }>((resolve) => {
    // node:child_process on first use: most runs ask no credential helper.
    const { spawn } = process.getBuiltinModule('node:child_process') as typeof import('node:child_process');
    const child = spawn(program, ['get'], { stdio: ['pipe', 'pipe', 'pipe'] });
    // Our own timer: spawn's `timeout` option is not cleared when the program does not exist.
    const timer = setTimeout(() => child.kill('SIGKILL'), HELPER_TIMEOUT_MS);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve({ code: null, stdout: '', stderr: '', missing: error.code === 'ENOENT' });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, missing: false });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(serverAddress);
  });
  if (result.missing) return undefined;
  if (result.code !== 0) {
    // The helper protocol answers "credentials not found" on stdout for an unknown server.
    if (/credentials not found/i.test(result.stdout + result.stderr)) return undefined;
    const reason = result.code === null ? 'did not finish' : `exited with code ${result.code}`;
    throw new ThinkubeImageError('ERR_REGISTRY_AUTH', `Docker credential helper ${program} ${reason} while looking up ${serverAddress}`, {
      hint: `Run "echo ${serverAddress} | ${program} get" to see what fails, or log in again with docker login`,
      details: { registry: serverAddress, helper: program },
    });
  }
  let parsed: { Username?: unknown; Secret?: unknown };
  try {
    parsed = JSON.parse(result.stdout) as typeof parsed;
  } catch {
    throw new ThinkubeImageError('ERR_REGISTRY_AUTH', `Docker credential helper ${program} printed something that is not JSON for ${serverAddress}`, {
      hint: `Check the helper with "echo ${serverAddress} | ${program} get"`,
      details: { registry: serverAddress, helper: program },
    });
  }
  const secret = typeof parsed.Secret === 'string' ? parsed.Secret : '';
  const username = typeof parsed.Username === 'string' ? parsed.Username : '';
  if (!secret) return undefined;
  if (username === '<token>') return { identityToken: secret };
  return username ? { username, password: secret } : { password: secret };
}

async function readConfig(file: string, explicit: boolean): Promise<DockerConfigFile | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // The CLI treats a missing default config as "no credentials"; a path the caller named must exist.
    if (code === 'ENOENT' && !explicit) return undefined;
    throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `Cannot read Docker config ${file} (${code ?? 'error'})`, {
      hint: code === 'ENOENT' ? 'Check the dockerConfig path, or run docker login to create it' : 'Check the file permissions',
      details: { file },
    });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // JSON.parse messages quote the text around the error: they could show a credential.
    throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `Docker config ${file} is not valid JSON`, {
      hint: 'Fix the file (for example with docker logout/login) or point dockerConfig at another file',
      details: { file },
    });
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `Docker config ${file} is not a JSON object`, {
      hint: 'A Docker config.json holds an object with an "auths" map',
      details: { file },
    });
  }
  return parsed as DockerConfigFile;
}

/**
 * Credentials for `registry` (host[:port], 'docker.io' for Docker Hub) from a Docker CLI config.
 * `configPath` is a config.json or a directory holding one (like `docker --config`); default
 * $DOCKER_CONFIG/config.json, else ~/.docker/config.json. Returns undefined when there is no entry.
 */
export async function loadDockerCredentials(registry: string, configPath?: string): Promise<RegistryCredentials | undefined> {
  const file = await dockerConfigPath(configPath);
  const config = await readConfig(file, configPath !== undefined && configPath !== '');
  if (!config) return undefined;

  const serverAddress = isDockerHub(registry) ? DOCKER_HUB_KEY : registry;
  const helper = findEntry(config.credHelpers, registry) ?? config.credsStore;
  if (typeof helper === 'string' && helper) {
    const found = await fromHelper(helper, serverAddress);
    if (found) return found;
    // Unlike the CLI, fall back to a plain auths entry when the helper has nothing (or is not
    // installed on this machine): a config copied from a desktop often names a helper.
  }
  return credentialsFromEntry(findEntry(config.auths, registry));
}

/**
 * Value of Docker's X-Registry-Auth header: URL-safe base64 (with padding, as the Docker CLI writes
 * it) of the JSON auth config. `{}` when anonymous; Docker 28.3.3+ wants the header even then.
 */
export function registryAuthHeader(creds: RegistryCredentials | undefined, serveraddress: string): string {
  let body: Record<string, string> = {};
  if (creds?.identityToken) body = { identitytoken: creds.identityToken };
  else if (creds?.username !== undefined || creds?.password !== undefined) {
    body = { username: creds.username ?? '', password: creds.password ?? '', serveraddress };
  }
  return Buffer.from(JSON.stringify(body), 'utf8').toString('base64').replace(/\+/g, '-').replace(/\//g, '_');
}
