/**
 * The plan as one Argo Workflow (a DAG): a Buildah build task per image and platform, pinned to
 * a node of that architecture, an index task per multi-architecture image, and the images built
 * on another waiting for it. A pure function of the plan: nothing here talks to a cluster.
 *
 * A base built by the same Workflow has no digest before its task ran: the dependant's task
 * takes it from the base's task output (an Argo parameter) and builds FROM <repository>@<digest>
 * (buildah build --from, which replaces the first FROM). Such a dependant's input digest is not
 * known either (it includes the base's digest): it pushes under build-<workflow uid>-<platform>,
 * and the run names it in-<digest> registry-side once the base is published (docs/DEVELOPING.md).
 */
import type { IWorkflow } from '@kubernetes-models/argo-workflows/argoproj.io/v1alpha1/Workflow';
import type { IComGithubArgoprojArgoWorkflowsV4PkgApisWorkflowV1alpha1Template as Template } from '@kubernetes-models/argo-workflows/argoproj.io/v1alpha1/Template';
import type { IComGithubArgoprojArgoWorkflowsV4PkgApisWorkflowV1alpha1DAGTask as DAGTask } from '@kubernetes-models/argo-workflows/argoproj.io/v1alpha1/DAGTask';
import type { IIoK8sApiCoreV1EnvVar as EnvVar } from 'kubernetes-models/v1/EnvVar';
import { ThinkubeImageError } from '../../core/errors.js';
import { isLoopbackRegistry } from '../../registry/reference.js';
import type { ContextImage } from './context-image.js';
import { DIGEST_FILE, REGISTRY_AUTH_DIR, buildStepScript, indexStepScript } from './step-script.js';
import type { KubernetesExecutorOptions } from '../../options/generated/types.js';

export type { IWorkflow };
export type WorkflowTemplate = Template;

/** Argo substitutes this in a running Workflow (tags of builds whose inputs are not known before). */
export const WORKFLOW_UID = '{{workflow.uid}}';

/** An image of the run that another image builds FROM. */
export interface WorkflowBase {
  /** Image name (of this run). */
  image: string;
  /** registry/project/name (no tag). */
  repository: string;
  /** Its manifest (or index) digest when it is not rebuilt by the Workflow; unset: from its task. */
  digest?: string;
}

export interface WorkflowBuild {
  image: string;
  /** registry/project/name (no tag). */
  repository: string;
  /** os/arch[/variant]; unset: a single-platform image built for the node's own platform. */
  platform?: string;
  /** The input tag (registry/repository:in-<digest>); unset: not known before the base is built. */
  inputTag?: string;
  inputDigest?: string;
  context: ContextImage;
  buildArgs: Record<string, string>;
  labels: Record<string, string>;
  target?: string;
  /** The image of this run the first FROM names, when there is one. */
  from?: WorkflowBase;
  /** The registry layer cache (registry/repository/cache); unset: none. */
  cache?: string;
  noCache?: boolean;
  /** From image.yaml: cpu_limit (cores) and mem_limit (e.g. 8G). */
  resources?: { cpu?: number; memory?: string };
}

export interface WorkflowIndex {
  image: string;
  repository: string;
  /** Every platform of the image; digest set when that platform is not rebuilt. */
  platforms: Array<{ platform: string; digest?: string }>;
}

export interface WorkflowPlan {
  /** The registry every image goes to. */
  registry: string;
  builds: WorkflowBuild[];
  indexes: WorkflowIndex[];
  /** Validated kubernetes options (schema defaults applied). */
  settings: Required<Omit<KubernetesExecutorOptions, 'registryAuthSecret' | 'connection'>> & { registryAuthSecret: { name: string; key: string }; connection?: KubernetesExecutorOptions['connection'] };
}

/** linux/arm64/v8 -> arm64-v8 (task and tag names). */
function platformSlug(platform: string | undefined): string {
  return platform ? platform.split('/').slice(1).join('-') : 'native';
}

export function buildTaskName(image: string, platform: string | undefined): string {
  return `build-${image}${platform ? `-${platformSlug(platform)}` : ''}`;
}

export function indexTaskName(image: string): string {
  return `index-${image}`;
}

/** The task whose `digest` output names the image others build on. */
function publishingTask(plan: WorkflowPlan, image: string): string | undefined {
  if (plan.indexes.some((i) => i.image === image && i.platforms.some((p) => !p.digest))) return indexTaskName(image);
  const build = plan.builds.find((b) => b.image === image);
  return build ? buildTaskName(image, build.platform) : undefined;
}

/** Tags of pushes whose input digest is not known before the Workflow runs. */
export function workflowTag(platform?: string | null): string {
  return `build-${WORKFLOW_UID}${platform === null ? '' : `-${platformSlug(platform)}`}`;
}

/** Where a build task pushes: its input tag, or a Workflow tag when its inputs are not known before. */
export function buildDestination(build: Pick<WorkflowBuild, 'inputTag' | 'repository' | 'platform'>): string {
  return build.inputTag ?? `${build.repository}:${workflowTag(build.platform)}`;
}

function noTemplateMarkers(where: string, values: Record<string, string>): void {
  for (const [key, value] of Object.entries(values)) {
    if (value.includes('{{') || key.includes('{{')) {
      throw new ThinkubeImageError('ERR_WORKFLOW', `${where}: "${key}" holds "{{", which Argo would read as one of its template expressions`, {
        hint: 'Remove "{{" from build arguments and labels built on the cluster, or build this image with executor local',
      });
    }
  }
}

const TASK_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** The Workflow of a plan (undefined when nothing is to be built). */
export function renderWorkflow(plan: WorkflowPlan): IWorkflow | undefined {
  if (plan.builds.length === 0) return undefined;
  const s = plan.settings;
  const tlsVerify = !isLoopbackRegistry(plan.registry);
  const builder = s.builderImage.replace(/\{registry\}/g, plan.registry);
  const labels = { 'thinkube.io/app-name': s.appName, 'app.kubernetes.io/part-of': 'thinkube', 'app.kubernetes.io/managed-by': 'thinkube-custom-images' };
  const env = (extra: EnvVar[]): EnvVar[] => [
    { name: 'REGISTRY_AUTH_FILE', value: `${REGISTRY_AUTH_DIR}/config.json` },
    { name: 'DIGEST_FILE', value: DIGEST_FILE },
    ...extra,
  ];
  const mounts = [
    { name: 'registry-auth', mountPath: REGISTRY_AUTH_DIR, readOnly: true },
    // Image layers on an emptyDir: overlay cannot stack on the container's own overlay root.
    { name: 'containers-storage', mountPath: '/var/lib/containers' },
  ];
  // As Thinkube's CI pods: root with SYS_ADMIN, AppArmor unconfined, not privileged.
  const securityContext = { runAsUser: 0, privileged: false, capabilities: { add: ['SYS_ADMIN'] }, appArmorProfile: { type: 'Unconfined' as const } };
  const outputs = { parameters: [{ name: 'digest', valueFrom: { path: DIGEST_FILE } }] };

  const templates: Template[] = [];
  const tasks: DAGTask[] = [];
  for (const b of plan.builds) {
    const name = buildTaskName(b.image, b.platform);
    if (!TASK_NAME.test(name)) throw new ThinkubeImageError('ERR_WORKFLOW', `Task name "${name}" of ${b.repository} is not a valid Argo task name`, { hint: 'Use image names of lowercase letters, digits and "-", at most 40 characters' });
    noTemplateMarkers(`${b.repository} build arguments`, b.buildArgs);
    noTemplateMarkers(`${b.repository} labels`, b.labels);
    const fromTask = b.from && !b.from.digest ? publishingTask(plan, b.from.image) : undefined;
    if (b.from && !b.from.digest && !fromTask) {
      throw new ThinkubeImageError('ERR_WORKFLOW', `${b.repository} builds on ${b.from.image}, which has neither a digest nor a task in the Workflow`, { hint: 'Report this: the plan should give the base a digest or a build task' });
    }
    const fromImage = b.from?.repository;
    const destination = buildDestination(b);
    const script = buildStepScript({
      contextImage: b.context.reference,
      dockerfile: b.context.dockerfile,
      destination,
      cacheRepository: b.cache,
      noCache: b.noCache,
      platform: b.platform,
      buildArgs: b.buildArgs,
      labels: b.labels,
      target: b.target,
      fromVariable: b.from ? 'BASE_IMAGE' : undefined,
      tlsVerify,
    });
    const resources: Record<string, string> = {};
    if (b.resources?.cpu !== undefined) resources.cpu = String(b.resources.cpu);
    if (b.resources?.memory !== undefined) resources.memory = b.resources.memory;
    const arch = (b.platform ?? s.nativePlatform).split('/')[1] as string;
    templates.push({
      name,
      metadata: { labels: { ...labels, 'thinkube.io/image': b.image } },
      nodeSelector: { [s.nodeSelectorKey]: arch },
      ...(fromTask ? { inputs: { parameters: [{ name: 'base-image' }] } } : {}),
      outputs,
      container: {
        name: 'main',
        image: builder,
        command: ['/bin/sh', '-c'],
        args: [script],
        env: env(b.from ? [{ name: 'BASE_IMAGE', value: fromTask ? '{{inputs.parameters.base-image}}' : `${fromImage}@${b.from.digest}` }] : []),
        ...(Object.keys(resources).length ? { resources: { requests: resources, limits: resources } } : {}),
        securityContext,
        volumeMounts: mounts,
      },
    });
    tasks.push({
      name,
      template: name,
      ...(fromTask
        ? { dependencies: [fromTask], arguments: { parameters: [{ name: 'base-image', value: `${fromImage}@{{tasks.${fromTask}.outputs.parameters.digest}}` }] } }
        : {}),
    });
  }
  for (const index of plan.indexes) {
    const rebuilt = index.platforms.filter((p) => !p.digest);
    if (rebuilt.length === 0) continue;
    const name = indexTaskName(index.image);
    const variables = index.platforms.map((p) => `DIGEST_${platformSlug(p.platform).toUpperCase().replace(/-/g, '_')}`);
    templates.push({
      name,
      metadata: { labels: { ...labels, 'thinkube.io/image': index.image } },
      inputs: { parameters: rebuilt.map((p) => ({ name: `digest-${platformSlug(p.platform)}` })) },
      outputs,
      container: {
        name: 'main',
        image: builder,
        command: ['/bin/sh', '-c'],
        args: [indexStepScript({ repository: index.repository, digestVariables: variables, destination: `${index.repository}:${workflowTag(null)}`, tlsVerify })],
        env: env(index.platforms.map((p, i) => ({ name: variables[i] as string, value: p.digest ?? `{{inputs.parameters.digest-${platformSlug(p.platform)}}}` }))),
        resources: { requests: { cpu: '100m', memory: '256Mi' }, limits: { cpu: '1', memory: '1Gi' } },
        securityContext,
        volumeMounts: mounts,
      },
    });
    tasks.push({
      name,
      template: name,
      dependencies: rebuilt.map((p) => buildTaskName(index.image, p.platform)),
      arguments: { parameters: rebuilt.map((p) => ({ name: `digest-${platformSlug(p.platform)}`, value: `{{tasks.${buildTaskName(index.image, p.platform)}.outputs.parameters.digest}}` })) },
    });
  }
  return {
    apiVersion: 'argoproj.io/v1alpha1',
    kind: 'Workflow',
    metadata: { generateName: 'thinkube-images-', namespace: s.namespace, labels },
    spec: {
      entrypoint: 'images',
      serviceAccountName: s.serviceAccount,
      podMetadata: { labels },
      ttlStrategy: { secondsAfterCompletion: s.ttlSecondsAfterFinished },
      podGC: { strategy: s.podGcStrategy },
      volumes: [
        { name: 'registry-auth', secret: { secretName: s.registryAuthSecret.name, items: [{ key: s.registryAuthSecret.key, path: 'config.json' }] } },
        { name: 'containers-storage', emptyDir: {} },
      ],
      // failFast off: an image whose build fails fails alone; unrelated builds still start (Argo's DAG default stops scheduling).
      templates: [{ name: 'images', dag: { failFast: false, tasks } }, ...templates],
    },
  };
}
