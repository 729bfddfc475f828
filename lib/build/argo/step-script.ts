/**
 * The exact shell a build pod runs, as Thinkube's CI runs Buildah: one function per kind of step,
 * whose output the rendered Workflow carries and the local step runner (tests) executes, so a test
 * runs the very command a pod would. Values that change per run (a base's digest known only once
 * an earlier task pushed it, the file the digest goes to) come from environment variables.
 */

/** Where a pod finds its registry credentials (the dockerconfigjson Secret, mounted read-only). */
export const REGISTRY_AUTH_DIR = '/var/run/secrets/thinkube.io/registry';
/** Where a step writes the digest it pushed (Argo reads it as the step's output parameter). */
export const DIGEST_FILE = '/tmp/thinkube-digest';

/** POSIX shell single quoting. */
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

function tlsFlag(tlsVerify: boolean): string[] {
  // Only ever false for a loopback registry (tests): a cluster registry is verified.
  return tlsVerify ? [] : ['--tls-verify=false'];
}

export interface BuildStep {
  /** The context image (registry/repository:ctx-<digest>). */
  contextImage: string;
  /** The Dockerfile's path inside the context. */
  dockerfile: string;
  /** Pushed to (registry/repository:tag). */
  destination: string;
  /** Layer cache repository (registry/repository/cache), read and written; unset: no registry cache. */
  cacheRepository?: string;
  /** Build without any cache (the pipeline's noCache). */
  noCache?: boolean;
  /** linux/<arch>[/variant]; unset: the node's own platform. */
  platform?: string;
  buildArgs: Record<string, string>;
  labels: Record<string, string>;
  target?: string;
  /** Name of an environment variable holding the image that replaces the first FROM (a base built by the same Workflow). */
  fromVariable?: string;
  /** false only for a loopback registry. */
  tlsVerify: boolean;
}

/** pull the context image, mount it, buildah build, buildah push --digestfile. */
export function buildStepScript(step: BuildStep): string {
  const tls = tlsFlag(step.tlsVerify);
  const build = [
    'buildah', 'build', '--isolation', 'chroot', '--storage-driver', 'overlay', '--layers',
    ...(step.noCache ? ['--no-cache'] : step.cacheRepository ? ['--cache-from', step.cacheRepository, '--cache-to', step.cacheRepository] : []),
    ...(step.platform ? ['--platform', step.platform] : []),
    ...tls,
    ...Object.entries(step.buildArgs).sort(([a], [b]) => a.localeCompare(b)).flatMap(([k, v]) => ['--build-arg', `${k}=${v}`]),
    ...Object.entries(step.labels).sort(([a], [b]) => a.localeCompare(b)).flatMap(([k, v]) => ['--label', `${k}=${v}`]),
    ...(step.target ? ['--target', step.target] : []),
  ].map(shellQuote);
  if (step.fromVariable) build.push('--from', `"$${step.fromVariable}"`);
  build.push('-f', `"$dir"/${shellQuote(step.dockerfile)}`, '-t', shellQuote(step.destination), '"$dir"');
  return [
    'set -eu',
    `ctx=$(buildah from --quiet --pull=always ${[...tls, `docker://${step.contextImage}`].map(shellQuote).join(' ')})`,
    'dir=$(buildah mount "$ctx")',
    build.join(' '),
    `buildah push --retry 3 ${[...tls].map(shellQuote).join(' ')} --digestfile "$DIGEST_FILE" ${shellQuote(step.destination)} ${shellQuote(`docker://${step.destination}`)}`.replace(/  +/g, ' '),
    'buildah umount "$ctx" >/dev/null && buildah rm "$ctx" >/dev/null',
    'echo "pushed ' + step.destination.replace(/["$`\\]/g, '') + '@$(cat "$DIGEST_FILE")"',
    '',
  ].join('\n');
}

export interface IndexStep {
  /** The repository (registry/repository) the platform images are in. */
  repository: string;
  /** Environment variables holding each platform image's digest, in index order. */
  digestVariables: string[];
  /** Pushed to (registry/repository:tag). */
  destination: string;
  tlsVerify: boolean;
}

/** Join the platform images (already in the registry) into an OCI index and push only the index. */
export function indexStepScript(step: IndexStep): string {
  const tls = tlsFlag(step.tlsVerify).map(shellQuote).join(' ');
  return [
    'set -eu',
    'buildah manifest create thinkube-index >/dev/null',
    ...step.digestVariables.map((v) => `buildah manifest add ${tls} thinkube-index ${shellQuote(`docker://${step.repository}`)}@"$${v}" >/dev/null`.replace(/  +/g, ' ')),
    `buildah manifest push --format oci ${tls} --digestfile "$DIGEST_FILE" thinkube-index ${shellQuote(`docker://${step.destination}`)}`.replace(/  +/g, ' '),
    'echo "pushed ' + step.destination.replace(/["$`\\]/g, '') + '@$(cat "$DIGEST_FILE")"',
    '',
  ].join('\n');
}
