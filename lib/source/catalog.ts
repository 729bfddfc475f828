/**
 * The image catalog: a folder of image folders (images/<name>/{Dockerfile, requirements.txt,
 * image.yaml}) loaded as data, with the dependency graph between them and a build order.
 *
 * Dependency rule: an image depends on another image of the set when one of its FROM lines (or a
 * `COPY --from=<image>`) resolves to `<harbor>/<project>/<name>[:tag]`, where <harbor> is the value
 * of HARBOR_REGISTRY and <name> is a folder of the set. Every other FROM on Harbor must name a base
 * image that Thinkube mirrors into Harbor, listed in `<imagesDir>/bases.yaml` (or the `bases`
 * option) as `project/repository[:tag]`; anything else is reported as a missing image (the typo or
 * the forgotten folder is caught before a 20-minute build fails on a pull).
 */
import { readFileSync } from 'node:fs';
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import yaml from 'js-yaml';
import { ThinkubeImageError, ValidationError, errorCodeOf, type FieldProblem } from '../core/errors.js';
import type { ImageMetadata } from '../options/generated/types.js';
import { validate } from '../options/schema.js';
import { copySources, expandVariables, globalArgs, parseDockerfile, stages, type ParsedDockerfile, type Stage } from './dockerfile.js';
import { isValidRegistry, isValidRepository, isValidTag, parseReference, type ImageRef } from '../registry/reference.js';
import { schemaDefault } from '../options/defaults.js';

export type Severity = 'error' | 'warning';

export interface LintProblem {
  severity: Severity;
  /** File the problem is in, relative to `relativeTo` (default: the working directory) when inside it. */
  file: string;
  /** 1-based line, when the problem has one. */
  line?: number;
  /** Stable rule id, e.g. pin, from-arg, copy-source. */
  rule: string;
  /** What is wrong, without the file:line prefix. */
  message: string;
  /** What to do about it. */
  hint: string;
  /** Image (folder name) the problem belongs to. */
  image?: string;
}

/** `file:line: message; hint` — the form printed to people. */
export function formatProblem(problem: LintProblem): string {
  const where = problem.line ? `${problem.file}:${problem.line}` : problem.file;
  return `${where}: ${problem.message}${problem.hint ? `; ${problem.hint}` : ''}`;
}

export interface CatalogOptions {
  /** Harbor host (HARBOR_REGISTRY), e.g. harbor.example.com. Unset: dependencies are still found; references keep ${HARBOR_REGISTRY}. */
  registry?: string;
  /** Harbor project the images of the set are pushed to. Default library. */
  project?: string;
  /** Build args used to resolve FROM lines (HARBOR_REGISTRY comes from `registry`). */
  buildArgs?: Record<string, string>;
  /** Extra mirrored bases (project/repository[:tag]) besides those in <imagesDir>/bases.yaml. */
  bases?: string[];
  /** Folder that problem file names are relative to. Default: process.cwd(). */
  relativeTo?: string;
}

export type BaseKind = 'catalog' | 'base' | 'missing' | 'external' | 'stage' | 'scratch' | 'invalid';

export interface BaseImage {
  /** FROM or COPY --from. */
  via: 'FROM' | 'COPY --from';
  line: number;
  /** Image as written, e.g. ${HARBOR_REGISTRY}/library/jupyter-ml-cpu:latest. */
  from: string;
  /** With variables substituted; `${HARBOR_REGISTRY}` is kept when no registry was given. */
  reference: string;
  kind: BaseKind;
  /** Name of the image of the set (kind catalog) or of the stage (kind stage). */
  image?: string;
  parsed?: ImageRef;
}

export interface CatalogImage {
  /** Folder name, which must equal metadata.name. */
  name: string;
  dir: string;
  dockerfilePath: string;
  dockerfile: ParsedDockerfile | undefined;
  metadataPath: string;
  /** Validated metadata (schema defaults applied); undefined when missing or invalid (see problems). */
  metadata: ImageMetadata | undefined;
  /** The folder's requirements.txt, when present. */
  requirementsPath: string | undefined;
  /** Every requirements*.txt of the folder (absolute paths, sorted). */
  requirementsFiles: string[];
  stages: Stage[];
  baseImages: BaseImage[];
  /** Images of the set this one builds on (direct), sorted. */
  dependsOn: string[];
}

export interface Catalog {
  dir: string;
  registry: string | undefined;
  project: string;
  buildArgs: Record<string, string>;
  /** Mirrored bases (project/repository[:tag]) from bases.yaml and the bases option. */
  bases: string[];
  basesFile: string | undefined;
  images: CatalogImage[];
  /** Problems found while loading (files, YAML, schema, graph). lintImages adds the other checks. */
  problems: LintProblem[];
  relativeTo: string;
}

export const METADATA_FILE = 'image.yaml';
export const BASES_FILE = 'bases.yaml';
export const DEFAULT_PROJECT = schemaDefault('catalog-options.schema.json', 'properties/project');
// A syntactically valid stand-in for an unknown Harbor host (.invalid never resolves).
const PLACEHOLDER_REGISTRY = 'harbor-registry.invalid';
const REGISTRY_VARIABLE = '${HARBOR_REGISTRY}';

export function displayPath(file: string, relativeTo: string = process.cwd()): string {
  const rel = path.relative(relativeTo, file);
  const out = rel === '' ? '.' : rel.startsWith('..') || path.isAbsolute(rel) ? file : rel;
  return out.split(path.sep).join('/');
}

function checkOptions(options: CatalogOptions): void {
  const problems: FieldProblem[] = [];
  if (options.registry !== undefined && (typeof options.registry !== 'string' || !isValidRegistry(options.registry))) problems.push({ field: 'registry', message: 'must be a host name or IP address with an optional port, without scheme' });
  if (options.project !== undefined && (typeof options.project !== 'string' || !/^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/.test(options.project))) problems.push({ field: 'project', message: 'must be a Harbor project name (lowercase letters, digits, . _ -)' });
  for (const [key, value] of Object.entries(options.buildArgs ?? {})) {
    if (typeof value !== 'string') problems.push({ field: `buildArgs.${key}`, message: 'must be a string' });
  }
  (options.bases ?? []).forEach((base, i) => {
    if (typeof base !== 'string' || baseEntryProblem(base)) problems.push({ field: `bases[${i}]`, message: 'must be project/repository[:tag], e.g. library/python:3.12-slim' });
  });
  if (problems.length > 0) throw new ValidationError('catalog options', problems);
}

function baseEntryProblem(entry: string): string | undefined {
  const colon = entry.lastIndexOf(':');
  const repo = colon > entry.lastIndexOf('/') ? entry.slice(0, colon) : entry;
  const tag = colon > entry.lastIndexOf('/') ? entry.slice(colon + 1) : undefined;
  if (!repo.includes('/') || !isValidRepository(repo)) return `"${entry}" is not project/repository[:tag]`;
  if (tag !== undefined && !isValidTag(tag)) return `"${entry}" has an invalid tag`;
  return undefined;
}

/** 1-based line of a dotted field (e.g. metadata.mem_limit, tags[1]) in simple block YAML; best effort. */
export function yamlFieldLine(text: string, field: string): number | undefined {
  const lines = text.split(/\r?\n/);
  const keys = field.split('.').map((k) => k.replace(/\[\d+\]$/, '')).filter((k) => k !== '' && k !== '(options)');
  let from = 0;
  let parentIndent = -1;
  let found: number | undefined;
  for (const key of keys) {
    let hit: number | undefined;
    for (let i = from; i < lines.length; i++) {
      const line = lines[i] ?? '';
      if (/^\s*(#.*)?$/.test(line)) continue;
      const indent = /^\s*/.exec(line)?.[0].length ?? 0;
      if (found !== undefined && indent <= parentIndent) break;
      const m = /^(\s*)(["']?)([^"':#]+)\2\s*:/.exec(line);
      if (m && m[3] === key && indent > parentIndent) {
        hit = i;
        parentIndent = indent;
        break;
      }
    }
    if (hit === undefined) break;
    found = hit;
    from = hit + 1;
  }
  return found === undefined ? undefined : found + 1;
}

/**
 * A small definition file (Dockerfile, image.yaml, bases.yaml), read with one synchronous call:
 * a promise-based read is four thread pool round trips, several times the CPU of the read.
 */
async function readText(file: string): Promise<string | undefined> {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    if (errorCodeOf(error) === 'ENOENT') return undefined;
    throw error;
  }
}

async function loadBases(catalog: Catalog): Promise<void> {
  const file = path.join(catalog.dir, BASES_FILE);
  let text: string | undefined;
  try {
    text = await readText(file);
  } catch (error) {
    catalog.problems.push({ severity: 'error', file: displayPath(file, catalog.relativeTo), rule: 'bases-file', message: `cannot read ${BASES_FILE} (${errorCodeOf(error) ?? 'error'})`, hint: 'make it readable' });
    return;
  }
  if (text === undefined) return;
  catalog.basesFile = file;
  const shown = displayPath(file, catalog.relativeTo);
  let doc: unknown;
  try {
    doc = yaml.load(text, { schema: yaml.CORE_SCHEMA, filename: file });
  } catch (error) {
    const mark = (error as { mark?: { line?: number } }).mark;
    catalog.problems.push({ severity: 'error', file: shown, line: mark?.line === undefined ? undefined : mark.line + 1, rule: 'bases-file', message: `${BASES_FILE} is not valid YAML: ${(error as { reason?: string }).reason ?? 'syntax error'}`, hint: 'write bases: followed by a list of project/repository:tag entries' });
    return;
  }
  const list = doc === null || doc === undefined ? [] : (doc as { bases?: unknown }).bases;
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc) || !Array.isArray(list) || Object.keys(doc).some((k) => k !== 'bases')) {
    catalog.problems.push({ severity: 'error', file: shown, line: 1, rule: 'bases-file', message: `${BASES_FILE} must hold exactly one key, bases, with a list`, hint: 'write bases: followed by entries such as - library/python:3.12-slim' });
    return;
  }
  list.forEach((entry, i) => {
    const problem = typeof entry !== 'string' ? `entry ${i + 1} is not a string` : baseEntryProblem(entry);
    if (problem) {
      const line = text.split(/\r?\n/).findIndex((l) => typeof entry === 'string' && l.includes(entry));
      catalog.problems.push({ severity: 'error', file: shown, line: line >= 0 ? line + 1 : undefined, rule: 'bases-file', message: problem, hint: 'write project/repository[:tag], e.g. library/python:3.12-slim' });
    } else catalog.bases.push(entry as string);
  });
}

function baseListed(bases: string[], ref: ImageRef): boolean {
  return bases.some((entry) => {
    const colon = entry.lastIndexOf(':');
    const hasTag = colon > entry.lastIndexOf('/');
    const repo = hasTag ? entry.slice(0, colon) : entry;
    return repo === ref.repository && (!hasTag || entry.slice(colon + 1) === (ref.tag ?? 'latest'));
  });
}

async function loadImage(catalog: Catalog, name: string, dir: string, buildArgs: Record<string, string>): Promise<CatalogImage> {
  const rel = (file: string): string => displayPath(file, catalog.relativeTo);
  const push = (problem: Omit<LintProblem, 'image'>): void => {
    catalog.problems.push({ ...problem, image: name });
  };
  const dockerfilePath = path.join(dir, 'Dockerfile');
  const metadataPath = path.join(dir, METADATA_FILE);
  const entries = (await readdir(dir)).sort();
  const requirementsFiles = entries.filter((f) => /^requirements.*\.txt$/.test(f)).map((f) => path.join(dir, f));
  const image: CatalogImage = {
    name,
    dir,
    dockerfilePath,
    dockerfile: undefined,
    metadataPath,
    metadata: undefined,
    requirementsPath: entries.includes('requirements.txt') ? path.join(dir, 'requirements.txt') : undefined,
    requirementsFiles,
    stages: [],
    baseImages: [],
    dependsOn: [],
  };

  const dockerText = await readText(dockerfilePath);
  if (dockerText === undefined) {
    push({ severity: 'error', file: rel(dir), rule: 'image-dir', message: `image folder ${name} has no Dockerfile`, hint: `add ${rel(dockerfilePath)}, or move the folder out of ${rel(catalog.dir)}` });
  } else {
    const parsed = parseDockerfile(dockerText, dockerfilePath);
    image.dockerfile = parsed;
    image.stages = stages(parsed);
    for (const p of parsed.problems) push({ severity: 'error', file: rel(dockerfilePath), line: p.line, rule: p.rule, message: p.message, hint: p.hint });
    if (image.stages.length === 0) push({ severity: 'error', file: rel(dockerfilePath), rule: 'dockerfile-syntax', message: 'the Dockerfile has no FROM', hint: 'start it with ARG HARBOR_REGISTRY and FROM ${HARBOR_REGISTRY}/library/<base>:<tag>' });
    image.baseImages = classifyBases(catalog, parsed, image.stages, buildArgs);
  }

  const metaText = await readText(metadataPath);
  if (metaText === undefined) {
    push({ severity: 'error', file: rel(dir), rule: 'metadata-missing', message: `image folder ${name} has no ${METADATA_FILE}`, hint: `add ${rel(metadataPath)} with name, display_name, description, category and metadata (node bin/new-image.js writes one)` });
  } else {
    let doc: unknown;
    let yamlOk = true;
    try {
      doc = yaml.load(metaText, { schema: yaml.CORE_SCHEMA, filename: metadataPath });
    } catch (error) {
      yamlOk = false;
      const mark = (error as { mark?: { line?: number } }).mark;
      push({ severity: 'error', file: rel(metadataPath), line: mark?.line === undefined ? undefined : mark.line + 1, rule: 'metadata-yaml', message: `not valid YAML: ${(error as { reason?: string }).reason ?? 'syntax error'}`, hint: 'fix the YAML syntax (indentation, quotes, duplicate keys)' });
    }
    if (yamlOk) {
      try {
        image.metadata = validate<ImageMetadata>('image-metadata.schema.json', doc ?? null, { what: `image metadata ${rel(metadataPath)}` });
      } catch (error) {
        if (!(error instanceof ValidationError)) throw error;
        for (const p of error.problems) {
          const field = p.field === '(options)' ? '' : p.field;
          push({
            severity: 'error',
            file: rel(metadataPath),
            line: field ? yamlFieldLine(metaText, field) : undefined,
            rule: 'metadata-schema',
            message: field ? `${field} ${p.message.replace('is not a known option', 'is not a known field')}` : `the metadata ${p.message}`,
            hint: 'see schemas/image-metadata.schema.json for the fields and their formats',
          });
        }
      }
      const docName = (doc as { name?: unknown } | null)?.name;
      if (typeof docName === 'string' && docName !== name) {
        push({ severity: 'error', file: rel(metadataPath), line: yamlFieldLine(metaText, 'name'), rule: 'name-mismatch', message: `name is ${docName} but the folder is ${name}`, hint: `the folder name is the repository name: rename the folder to ${docName} or set name: ${name}` });
      }
    }
  }
  if (!isValidRepository(`${catalog.project}/${name}`)) {
    push({ severity: 'error', file: rel(dir), rule: 'repository-name', message: `${catalog.project}/${name} is not a valid repository name`, hint: 'use lowercase letters and digits separated by single ., _, __ or dashes' });
  }
  return image;
}

function classifyBases(catalog: Catalog, parsed: ParsedDockerfile, imageStages: Stage[], buildArgs: Record<string, string>): BaseImage[] {
  const registry = catalog.registry ?? PLACEHOLDER_REGISTRY;
  const given = { ...buildArgs, HARBOR_REGISTRY: registry };
  // HARBOR_REGISTRY is provided even when the ARG is missing: that defect is reported by lint, and
  // should not also hide the dependency.
  const vars: Record<string, string> = { HARBOR_REGISTRY: registry, ...globalArgs(parsed, given) };
  const out: BaseImage[] = [];
  const seenStages: string[] = [];
  const classify = (via: BaseImage['via'], line: number, from: string): BaseImage => {
    const resolved = expandVariables(from, vars, parsed.escape).value;
    const shown = catalog.registry === undefined ? resolved.split(PLACEHOLDER_REGISTRY).join(REGISTRY_VARIABLE) : resolved;
    const base: BaseImage = { via, line, from, reference: shown, kind: 'external' };
    const lower = resolved.toLowerCase();
    if (lower === 'scratch') return { ...base, kind: 'scratch' };
    if (seenStages.includes(lower) || (via === 'COPY --from' && /^\d+$/.test(resolved))) return { ...base, kind: 'stage', image: lower };
    let ref: ImageRef;
    try {
      ref = parseReference(resolved);
    } catch {
      return { ...base, kind: 'invalid' };
    }
    base.parsed = ref;
    if (ref.registry !== registry) return base;
    const prefix = `${catalog.project}/`;
    const inSetName = ref.repository.startsWith(prefix) ? ref.repository.slice(prefix.length) : undefined;
    if (inSetName !== undefined && catalog.images.some((i) => i.name === inSetName)) return { ...base, kind: 'catalog', image: inSetName };
    if (baseListed(catalog.bases, ref)) return { ...base, kind: 'base' };
    return { ...base, kind: 'missing' };
  };
  for (const stage of imageStages) {
    if (stage.image !== '') out.push(classify('FROM', stage.line, stage.image));
    if (stage.name) seenStages.push(stage.name);
  }
  for (const copy of copySources(parsed)) {
    if (copy.from === undefined) continue;
    out.push(classify('COPY --from', copy.instruction.line, copy.from));
  }
  return out;
}

/**
 * Load every image folder of `imagesDir` (each subfolder not starting with '.' or '_'). Never throws
 * for a broken image: problems are collected in `catalog.problems` (lintImages reports them with
 * the other checks). Throws ERR_CATALOG when the folder itself cannot be read, ValidationError for
 * bad options.
 */
export async function loadCatalog(imagesDir: string, options: CatalogOptions = {}): Promise<Catalog> {
  checkOptions(options);
  const dir = path.resolve(imagesDir);
  const relativeTo = options.relativeTo ?? process.cwd();
  let names: string[];
  try {
    const st = await stat(dir);
    if (!st.isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
    const all = await readdir(dir, { withFileTypes: true });
    names = all.filter((d) => d.isDirectory() && !d.name.startsWith('.') && !d.name.startsWith('_')).map((d) => d.name).sort();
  } catch (error) {
    throw new ThinkubeImageError('ERR_CATALOG', `Cannot read the images folder ${displayPath(dir, relativeTo)} (${errorCodeOf(error) ?? 'error'})`, {
      hint: 'Give the folder that holds one subfolder per image (e.g. images/)',
      details: { imagesDir: dir },
    });
  }
  const buildArgs = { ...(options.buildArgs ?? {}) };
  const registry = options.registry ?? buildArgs.HARBOR_REGISTRY;
  const catalog: Catalog = {
    dir,
    registry,
    project: options.project ?? DEFAULT_PROJECT,
    buildArgs,
    bases: [...(options.bases ?? [])],
    basesFile: undefined,
    images: [],
    problems: [],
    relativeTo,
  };
  await loadBases(catalog);
  // Names first: classification needs to know every image of the set.
  catalog.images = names.map((name) => ({ name }) as CatalogImage);
  const images: CatalogImage[] = [];
  for (const name of names) images.push(await loadImage(catalog, name, path.join(dir, name), buildArgs));
  catalog.images = images;
  for (const image of images) {
    image.dependsOn = [...new Set(image.baseImages.filter((b) => b.kind === 'catalog').map((b) => b.image as string))].sort();
    for (const base of image.baseImages) {
      if (base.kind === 'missing') {
        catalog.problems.push({
          severity: 'error',
          file: displayPath(image.dockerfilePath, relativeTo),
          line: base.line,
          rule: 'from-missing',
          image: image.name,
          message: `${base.via} ${base.from} names ${base.parsed?.repository}${base.parsed?.tag ? `:${base.parsed.tag}` : ''}, which is neither an image of ${displayPath(dir, relativeTo)} nor a mirrored base listed in ${BASES_FILE}`,
          hint: `fix the name, add the folder ${displayPath(path.join(dir, base.parsed?.repository.split('/').pop() ?? ''), relativeTo)}, or mirror the base into Harbor and list ${base.parsed?.repository}:${base.parsed?.tag ?? 'latest'} in ${displayPath(path.join(dir, BASES_FILE), relativeTo)}`,
        });
      }
      // A template placeholder in FROM is reported once, by lintImages' jinja rule.
      if (base.kind === 'invalid' && !/\{\{|\{%/.test(base.from)) {
        catalog.problems.push({
          severity: 'error',
          file: displayPath(image.dockerfilePath, relativeTo),
          line: base.line,
          rule: 'from-invalid',
          image: image.name,
          message: `${base.via} ${base.from} does not resolve to a valid image reference (got "${base.reference}")`,
          hint: 'check the variables it uses: declare them with ARG before the first FROM, with a default or a build arg',
        });
      }
    }
  }
  for (const cycle of findCycles(catalog)) {
    const first = catalog.images.find((i) => i.name === cycle[0]);
    catalog.problems.push({
      severity: 'error',
      file: first ? displayPath(first.dockerfilePath, relativeTo) : displayPath(dir, relativeTo),
      line: first?.baseImages.find((b) => b.kind === 'catalog' && b.image === cycle[1])?.line,
      rule: 'cycle',
      image: cycle[0],
      message: `dependency cycle: ${cycle.join(' -> ')} (each image builds FROM the next)`,
      hint: 'an image cannot build on itself, directly or through others: change one of these FROM lines',
    });
  }
  return catalog;
}

function graph(catalog: Catalog, members: Set<string>): Map<string, string[]> {
  const edges = new Map<string, string[]>();
  for (const image of catalog.images) {
    if (members.has(image.name)) edges.set(image.name, image.dependsOn.filter((d) => members.has(d)));
  }
  return edges;
}

/**
 * Cycles found by a depth-first search, each as [a, b, ..., a] where every image builds FROM the
 * next, rotated to start at its alphabetically first name.
 */
export function findCycles(catalog: Catalog, selected?: string[]): string[][] {
  const members = new Set(selected ?? catalog.images.map((i) => i.name));
  const edges = graph(catalog, members);
  const state = new Map<string, 'active' | 'done'>();
  const stack: string[] = [];
  const found = new Map<string, string[]>();
  const visit = (name: string): void => {
    state.set(name, 'active');
    stack.push(name);
    for (const dep of edges.get(name) ?? []) {
      if (state.get(dep) === 'active') {
        const cycle = stack.slice(stack.indexOf(dep));
        const start = cycle.indexOf([...cycle].sort()[0] as string);
        const rotated = [...cycle.slice(start), ...cycle.slice(0, start)];
        // Edges point from an image to its base: a -> b means a builds FROM b.
        found.set([...rotated].sort().join(','), [...rotated, rotated[0] as string]);
      } else if (!state.has(dep)) visit(dep);
    }
    stack.pop();
    state.set(name, 'done');
  };
  for (const name of [...members].sort()) if (!state.has(name)) visit(name);
  return [...found.values()];
}

export interface BuildOrder {
  /** Names in build order: every image after the images of the selection it builds on. */
  names: string[];
  /** The same names in waves: images of one wave only build on images of earlier waves. */
  levels: string[][];
  images: CatalogImage[];
  /** Selected images that build on an image of the set that is not selected: that base is pulled from the registry as it is. */
  fromRegistry: Array<{ image: string; base: string }>;
}

/** Throws a ValidationError naming every name that is not an image of the catalog. */
export function checkImageNames(catalog: Catalog, names: string[], field: string): void {
  const known = new Set(catalog.images.map((i) => i.name));
  const problems = names.flatMap((n, i) => (known.has(n) ? [] : [{ field: `${field}[${i}]`, message: `"${n}" is not an image of ${displayPath(catalog.dir, catalog.relativeTo)} (known: ${[...known].join(', ') || 'none'})` }]));
  if (problems.length > 0) throw new ValidationError('image selection', problems);
}

/**
 * Topological build order of the catalog, or of `selected` only (nothing extra is pulled in):
 * first every image that builds on no other selected image, alphabetically, then every image
 * whose bases are all in the first wave, and so on (stable). Throws ThinkubeImageError
 * ERR_LINT naming the images of a cycle, or an image whose FROM names a missing image or is not a
 * valid reference. Other defects are not checked here: run lintImages first.
 */
export function order(catalog: Catalog, selected?: string[]): BuildOrder {
  if (selected) checkImageNames(catalog, selected, 'selected');
  const members = new Set(selected ?? catalog.images.map((i) => i.name));
  const cycles = findCycles(catalog, [...members]);
  if (cycles.length > 0) {
    throw new ThinkubeImageError('ERR_LINT', `Dependency cycle between images: ${cycles.map((c) => c.join(' -> ')).join('; ')} (each image builds FROM the next)`, {
      hint: 'An image cannot build on itself, directly or through others: change one of the FROM lines named',
      details: { cycles },
    });
  }
  const missing = catalog.images
    .filter((i) => members.has(i.name))
    .flatMap((i) => i.baseImages.filter((b) => b.kind === 'missing' || b.kind === 'invalid').map((b) => ({ image: i.name, line: b.line, from: b.from, file: displayPath(i.dockerfilePath, catalog.relativeTo) })));
  if (missing.length > 0) {
    throw new ThinkubeImageError('ERR_LINT', `FROM names an image that is neither in ${displayPath(catalog.dir, catalog.relativeTo)} nor a listed base, or is not a valid reference: ${missing.map((m) => `${m.file}:${m.line} (${m.image}: ${m.from})`).join('; ')}`, {
      hint: `Fix the name, add the image folder, or list the mirrored base in ${BASES_FILE}; node bin/lint.js shows every problem`,
      details: { missing },
    });
  }
  const edges = graph(catalog, members);
  const remaining = new Map([...edges].map(([name, deps]) => [name, new Set(deps)]));
  const levels: string[][] = [];
  while (remaining.size > 0) {
    // Waves: every image whose bases are built, alphabetical. No cycle was found, so a wave is never empty.
    const ready = [...remaining].filter(([, deps]) => deps.size === 0).map(([name]) => name).sort();
    levels.push(ready);
    for (const name of ready) remaining.delete(name);
    for (const deps of remaining.values()) for (const name of ready) deps.delete(name);
  }
  const names = levels.flat();
  const byName = new Map(catalog.images.map((i) => [i.name, i]));
  const fromRegistry = names.flatMap((name) => (byName.get(name)?.dependsOn ?? []).filter((d) => !members.has(d)).map((base) => ({ image: name, base })));
  return { names, levels, images: names.map((n) => byName.get(n) as CatalogImage), fromRegistry };
}

/** Images that build on `name`, directly or through others, in build order. */
export function dependants(catalog: Catalog, name: string): string[] {
  checkImageNames(catalog, [name], 'name');
  const out = new Set<string>();
  let frontier = [name];
  while (frontier.length > 0) {
    const next: string[] = [];
    for (const image of catalog.images) {
      if (!out.has(image.name) && image.name !== name && image.dependsOn.some((d) => frontier.includes(d))) {
        out.add(image.name);
        next.push(image.name);
      }
    }
    frontier = next;
  }
  if (out.size === 0) return [];
  // Order them as they would be built (cycles were reported elsewhere; fall back to alphabetical).
  try {
    return order(catalog, [...out]).names;
  } catch {
    return [...out].sort();
  }
}

/** Images `name` builds on, directly or through others (nearest first, then alphabetical). */
export function ancestors(catalog: Catalog, name: string): string[] {
  checkImageNames(catalog, [name], 'name');
  const byName = new Map(catalog.images.map((i) => [i.name, i]));
  const out: string[] = [];
  let frontier = [name];
  while (frontier.length > 0) {
    const next: string[] = [];
    for (const current of frontier) {
      for (const dep of byName.get(current)?.dependsOn ?? []) {
        if (dep !== name && !out.includes(dep)) {
          out.push(dep);
          next.push(dep);
        }
      }
    }
    frontier = next.sort();
  }
  return out;
}

export interface ScaffoldOptions {
  /** Repository name of the new image; also its folder name. */
  name: string;
  /** Folder holding the image folders (must exist). */
  imagesDir: string;
  /**
   * Base image: `${HARBOR_REGISTRY}/project/repo:tag`, `project/repo:tag` (in Harbor), or the name of
   * an image of the set. Default ${HARBOR_REGISTRY}/library/python:3.12-slim.
   */
  from?: string;
  displayName?: string;
  description?: string;
  /** Default jupyter (then tags [jupyter-compatible] and metadata.purpose jupyter). */
  category?: string;
  gpu?: boolean;
  /** False for a base without Python: requirements.txt is then copied into the image, not installed. Default true. */
  python?: boolean;
  /** Harbor project of the images of the set. Default library. */
  project?: string;
}

export interface ScaffoldResult {
  name: string;
  dir: string;
  /** Files written, relative to `dir`. */
  files: string[];
  /** The FROM line's image. */
  from: string;
  /** catalog: an image of the set; base: a listed mirrored base; added: a base now listed in bases.yaml. */
  baseKind: 'catalog' | 'base' | 'added';
  /** The entry added to bases.yaml, when one was. */
  baseAdded: string | undefined;
  /** metadata.default of the new image (true only when it is the first image of the folder). */
  isDefault: boolean;
  template: 'derived' | 'python' | 'no-python';
}

export const JUPYTERLAB_VERSION = '4.2.5';
export const DEFAULT_SCAFFOLD_BASE = '${HARBOR_REGISTRY}/library/python:3.12-slim';

const HEALTHCHECK_LINES = [
  '# For Docker/Podman (Kubernetes uses its own probes). Under JupyterHub the server lives below',
  '# JUPYTERHUB_SERVICE_PREFIX; /api answers without a token.',
  'HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \\',
  "  CMD python -c \"import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:8888' + os.environ.get('JUPYTERHUB_SERVICE_PREFIX', '/') + 'api', timeout=4)\" || exit 1",
];

function scaffoldInvalid(field: string, message: string): ValidationError {
  return new ValidationError('new image options', [{ field, message }]);
}

/**
 * Write a new image folder that passes lintImages: Dockerfile (ARG HARBOR_REGISTRY + FROM),
 * pinned requirements.txt, image.yaml, .dockerignore. A Harbor base that is neither an image of the
 * set nor listed is added to bases.yaml. Refuses an invalid name or an existing folder.
 */
export async function scaffoldImage(options: ScaffoldOptions): Promise<ScaffoldResult> {
  const project = options.project ?? DEFAULT_PROJECT;
  const name = options.name;
  if (typeof name !== 'string' || !/^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/.test(name) || name.length > 128 || !isValidRepository(`${project}/${name}`)) {
    throw scaffoldInvalid('name', `"${String(name)}" must be a repository name: lowercase letters and digits, separated by single '.', '_', '__' or dashes`);
  }
  const category = options.category ?? schemaDefault('new-image-options.schema.json', 'properties/category');
  if (!/^[a-z0-9][a-z0-9-]*$/.test(category) || category.length > 64) throw scaffoldInvalid('category', 'must be lowercase letters, digits and dashes, e.g. jupyter');
  const catalog = await loadCatalog(options.imagesDir, { project });
  const dir = path.join(catalog.dir, name);
  const shownDir = displayPath(dir, catalog.relativeTo);
  try {
    await stat(dir);
    throw new ThinkubeImageError('ERR_CATALOG', `${shownDir} already exists`, { hint: 'Choose another name, or edit the existing image folder', details: { dir } });
  } catch (error) {
    if (error instanceof ThinkubeImageError) throw error;
  }

  // Normalise the base to ${HARBOR_REGISTRY}/project/repository[:tag].
  const rawFrom = (options.from ?? DEFAULT_SCAFFOLD_BASE).trim();
  let harborPath: string;
  const variable = /^\$(?:\{HARBOR_REGISTRY\}|HARBOR_REGISTRY)\/(.+)$/.exec(rawFrom);
  if (variable) harborPath = variable[1] as string;
  else if (catalog.images.some((i) => i.name === rawFrom)) harborPath = `${project}/${rawFrom}:latest`;
  else {
    const first = rawFrom.split('/')[0] ?? '';
    if (rawFrom.includes('/') && (/[.:]/.test(first) || first === 'localhost')) {
      throw scaffoldInvalid('from', `"${rawFrom}" names another registry; Thinkube builds pull bases from Harbor: mirror it into Harbor and give it as project/repository:tag (e.g. library/python:3.12-slim)`);
    }
    harborPath = rawFrom.includes('/') ? rawFrom : `${project}/${rawFrom}`;
  }
  const from = `\${HARBOR_REGISTRY}/${harborPath}`;
  let ref: ImageRef;
  try {
    ref = parseReference(`${PLACEHOLDER_REGISTRY}/${harborPath}`);
  } catch {
    throw scaffoldInvalid('from', `"${rawFrom}" is not an image reference such as library/python:3.12-slim`);
  }
  const inSet = ref.repository.startsWith(`${project}/`) ? catalog.images.find((i) => i.name === ref.repository.slice(project.length + 1)) : undefined;
  let baseKind: ScaffoldResult['baseKind'] = inSet ? 'catalog' : baseListed(catalog.bases, ref) ? 'base' : 'added';
  const baseAdded = baseKind === 'added' ? `${ref.repository}:${ref.tag ?? 'latest'}` : undefined;
  if (inSet && inSet.name === name) throw scaffoldInvalid('from', 'an image cannot build on itself');

  const python = options.python ?? schemaDefault('new-image-options.schema.json', 'properties/python');
  const template: ScaffoldResult['template'] = !python ? 'no-python' : inSet ? 'derived' : 'python';
  const displayName = options.displayName ?? name.split(/[-_.]+/).map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join(' ');
  const description = options.description ?? `${displayName} image`;
  const baseMeta = inSet?.metadata?.metadata;
  const gpu = options.gpu ?? baseMeta?.gpu_required ?? false;
  const isDefault = catalog.images.length === 0;
  const metadata: Record<string, unknown> = {
    name,
    display_name: displayName,
    description,
    category,
    ...(category === 'jupyter' ? { tags: ['jupyter-compatible'] } : {}),
    metadata: {
      gpu_required: gpu,
      cpu_limit: baseMeta?.cpu_limit ?? (gpu ? 8 : 2),
      mem_limit: baseMeta?.mem_limit ?? (gpu ? '16G' : '4G'),
      default: isDefault,
      ...(category === 'jupyter' ? { purpose: 'jupyter' } : {}),
    },
  };
  // Checked now so that a bad --display-name fails before anything is written.
  validate('image-metadata.schema.json', metadata, { what: 'new image metadata', naming: 'snake' });

  const target = `/opt/image/${name}/requirements.txt`;
  const header = [`# ${displayName}: ${description}`.replace(/\s+/g, ' ')];
  let body: string[];
  if (template === 'derived') {
    body = [
      `# Builds on ${inSet?.name} (folder ../${inSet?.name}), which provides jovyan, the virtual`,
      '# environment, JupyterLab, the health check and the command; this image only adds packages.',
      'ARG HARBOR_REGISTRY',
      `FROM ${from}`,
      '',
      `COPY --chown=jovyan:users requirements.txt ${target}`,
      `RUN pip install --no-cache-dir -r ${target}`,
    ];
  } else if (template === 'python') {
    body = [
      '# The base must have python3 with the venv module and useradd (Debian/Ubuntu Python images do).',
      'ARG HARBOR_REGISTRY',
      `FROM ${from}`,
      '',
      'ENV PYTHONUNBUFFERED=1 \\',
      '    PIP_DISABLE_PIP_VERSION_CHECK=1 \\',
      '    VIRTUAL_ENV=/opt/venv \\',
      '    PATH=/opt/venv/bin:$PATH',
      '',
      '# jovyan (uid 1000, group users) owns the virtual environment so that notebooks can pip install.',
      'RUN useradd --create-home --shell /bin/bash --uid 1000 --gid 100 jovyan \\',
      ' && python3 -m venv /opt/venv \\',
      ' && chown -R jovyan:users /opt/venv',
      '',
      'USER jovyan',
      'WORKDIR /home/jovyan',
      '',
      '# Requirements before anything else is copied: this layer is rebuilt only when the pins change.',
      `COPY --chown=jovyan:users requirements.txt ${target}`,
      `RUN pip install --no-cache-dir -r ${target}`,
      '',
      'EXPOSE 8888',
      ...HEALTHCHECK_LINES,
      'CMD ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser"]',
    ];
  } else {
    body = [
      '# Scaffolded with --no-python: the base has no Python, so requirements.txt is only copied into',
      `# the image (${target}), not installed. Add the install steps your base supports.`,
      'ARG HARBOR_REGISTRY',
      `FROM ${from}`,
      '',
      `COPY requirements.txt ${target}`,
      'USER 1000',
    ];
  }
  const files: Record<string, string> = {
    Dockerfile: [...header, ...body, ''].join('\n'),
    'requirements.txt': ['# Every line pinned to one exact version (name==X.Y.Z): node bin/lint.js checks it.', `jupyterlab==${JUPYTERLAB_VERSION}`, ''].join('\n'),
    [METADATA_FILE]: yaml.dump(metadata, { lineWidth: -1, noRefs: true }),
    '.dockerignore': ['# Only what the Dockerfile copies matters; metadata edits must not change the build context.', METADATA_FILE, 'README.md', '**/__pycache__', '**/*.pyc', ''].join('\n'),
  };

  await mkdir(dir); // not recursive: fails if the folder appeared meanwhile
  try {
    for (const [file, content] of Object.entries(files)) await writeFile(path.join(dir, file), content, { flag: 'wx' });
    if (baseAdded) await addBase(catalog, baseAdded);
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw new ThinkubeImageError('ERR_CATALOG', `Cannot write ${shownDir} (${errorCodeOf(error) ?? 'error'})`, { hint: 'Check that the images folder is writable', cause: error });
  }
  if (baseKind === 'added' && !baseAdded) baseKind = 'base';
  return { name, dir, files: Object.keys(files).sort(), from, baseKind, baseAdded, isDefault, template };
}

async function addBase(catalog: Catalog, entry: string): Promise<void> {
  const file = path.join(catalog.dir, BASES_FILE);
  const text = await readText(file);
  if (text !== undefined && /^bases:\s*(#.*)?$/m.test(text) && !/^bases:\s*\[/m.test(text)) {
    await writeFile(file, `${text}${text.endsWith('\n') ? '' : '\n'}  - ${entry}\n`);
    return;
  }
  const entries = [...catalog.bases, entry];
  const header = [
    '# Base images that Thinkube mirrors from public registries into Harbor (they are not built here).',
    '# A FROM on ${HARBOR_REGISTRY}/<project>/<name> must name an image folder of this directory or one',
    '# of these entries (project/repository[:tag]). Mirror them into Harbor before building.',
  ];
  await writeFile(file, `${header.join('\n')}\nbases:\n${[...new Set(entries)].map((e) => `  - ${e}`).join('\n')}\n`);
}
