/**
 * A build context shipped through the registry: a one-layer OCI image in a repository of its
 * own (<image repository>-context), tagged ctx-<context digest>. A build pod pulls it with the
 * credentials it pushes with (`buildah from` + `buildah mount` give the folder), so the context
 * has no ConfigMap size limit and needs no `kubectl exec`. The tag is named by the content, so an
 * unchanged context is found by a HEAD and never uploaded again.
 */
import { createHash } from 'node:crypto';
import { packContext, type ContextScan } from '../../source/context.js';
import { contextFileLines } from '../../source/input-digest.js';
import { MEDIA_TYPES, type RegistryClient } from '../../registry/client.js';

export const CONTEXT_TAG_PREFIX = 'ctx-';
/** Bumped when what goes into the context digest (or the layer's layout) changes. */
const CONTEXT_FORMAT = 1;
const LAYER_MEDIA_TYPE = 'application/vnd.oci.image.layer.v1.tar+gzip';
const CONFIG_MEDIA_TYPE = 'application/vnd.oci.image.config.v1+json';

export interface ContextImage {
  registry: string;
  /** <image repository>-context */
  repository: string;
  /** ctx-<first 32 hex characters of the context digest> */
  tag: string;
  /** registry/repository:tag */
  reference: string;
  /** sha256 over the Dockerfile, its name and every file sent (path, type, mode, content). */
  contextDigest: string;
  /** The Dockerfile's path inside the context image's folder. */
  dockerfile: string;
}

export interface ContextImagePush {
  /** The registry already held this context: nothing was (or would be) uploaded. */
  existed: boolean;
  /** Bytes went over the wire (never in dryRun). */
  uploaded: boolean;
  /** Manifest digest, when known (it exists, or it was pushed). */
  manifestDigest?: string;
  /** Compressed size of the layer, when it was packed. */
  layerBytes?: number;
}

export function contextRepository(imageRepository: string): string {
  return `${imageRepository}-context`;
}

/** The context image of a scanned context (no registry call). */
export async function contextImageFor(registry: string, imageRepository: string, scan: ContextScan): Promise<ContextImage> {
  const hash = createHash('sha256');
  hash.update(JSON.stringify({ format: CONTEXT_FORMAT, dockerfileName: scan.dockerfileName, dockerfileOutside: scan.dockerfileOutside, dockerfile: createHash('sha256').update(scan.dockerfile).digest('hex') }));
  for (const line of await contextFileLines(scan)) hash.update(`${line}\n`);
  const contextDigest = `sha256:${hash.digest('hex')}`;
  const repository = contextRepository(imageRepository);
  const tag = `${CONTEXT_TAG_PREFIX}${contextDigest.slice('sha256:'.length, 'sha256:'.length + 32)}`;
  return { registry, repository, tag, reference: `${registry}/${repository}:${tag}`, contextDigest, dockerfile: scan.dockerfileName };
}

async function tarOf(scan: ContextScan): Promise<Buffer> {
  const chunks: Buffer[] = [];
  // Fixed times: the same files give the same layer bytes.
  for await (const chunk of await packContext(scan, { mtime: new Date(0) })) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * Make sure the registry holds the context image: a HEAD when it is there; otherwise (unless
 * dryRun) pack the context, upload layer and config, put the manifest under the tag.
 */
export async function pushContextImage(client: RegistryClient, image: ContextImage, scan: ContextScan, options: { dryRun?: boolean } = {}): Promise<ContextImagePush> {
  const head = await client.headManifest(image.repository, image.tag);
  if (head) return { existed: true, uploaded: false, manifestDigest: head.digest };
  if (options.dryRun) return { existed: false, uploaded: false };
  const tar = await tarOf(scan);
  // zlib on use: the pipeline's command loads this module, and most runs upload no context.
  const layer = (process.getBuiltinModule('node:zlib') as typeof import('node:zlib')).gzipSync(tar);
  const diffId = `sha256:${createHash('sha256').update(tar).digest('hex')}`;
  // A plain filesystem layer: no entrypoint, no environment; the platform is nominal (the files are data).
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [diffId] } }));
  const layerBlob = await client.putBlob(image.repository, layer);
  const configBlob = await client.putBlob(image.repository, config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociManifest,
      config: { mediaType: CONFIG_MEDIA_TYPE, digest: configBlob.digest, size: config.length },
      layers: [{ mediaType: LAYER_MEDIA_TYPE, digest: layerBlob.digest, size: layer.length }],
      annotations: { 'io.thinkube.custom-images.context-digest': image.contextDigest },
    }),
  );
  const put = await client.putManifest(image.repository, image.tag, manifest, MEDIA_TYPES.ociManifest);
  return { existed: false, uploaded: true, manifestDigest: put.digest, layerBytes: layer.length };
}
