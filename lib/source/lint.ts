/**
 * Checks that catch a broken image definition in milliseconds instead of after a 20-minute build:
 * pins, ARG HARBOR_REGISTRY before the FROM lines that use it, no template syntax, every COPY/ADD
 * source present in the context after .dockerignore, metadata valid, exactly one default image,
 * and the same package pinned differently in an image and the image it builds on.
 *
 * Severity: errors make `ok` false (the build would fail or not be reproducible); warnings do not.
 * A pin that differs from a base image's pin is a warning: pip simply replaces the base's version
 * (which may or may not break the base's other packages; the message says upgrade or downgrade,
 * by PEP 440 order). Two different pins of one package in one requirements file are an error: pip
 * refuses them; pins of one version written differently (1.0 and 1.0.0) are a repeat, a warning.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ThinkubeImageError } from '../core/errors.js';
import { createIgnoreMatcher, scanContext, type ContextScan } from './context.js';
import { argDeclarations, copySources, expandVariables, isRemoteSource, shellWords, type Instruction, type ParsedDockerfile } from './dockerfile.js';
import { ancestors, displayPath, loadCatalog, type Catalog, type CatalogImage, type CatalogOptions, type LintProblem } from './catalog.js';
import { checkRequirement, installEffect, normalizePackageName, parseRequirements, sameVersion, type Pin } from './requirements.js';

export { formatProblem, type LintProblem, type Severity } from './catalog.js';

export interface LintOptions extends CatalogOptions {
  /** Refuse build contexts larger than this (bytes of regular files). Default: maxContextBytes of build-options.schema.json. */
  maxContextBytes?: number;
}

export interface LintResult {
  /** True when there is no error (warnings allowed). */
  ok: boolean;
  /** Names of the images checked, alphabetical. */
  images: string[];
  problems: LintProblem[];
  errorCount: number;
  warningCount: number;
  catalog: Catalog;
  /**
   * The build contexts the checks scanned (of the images with COPY or ADD), by image name: a caller
   * that builds the images next (the pipeline) uses them instead of walking each context again.
   */
  contexts: Map<string, ContextScan>;
}

const REGISTRY_ARG = 'HARBOR_REGISTRY';

/** Run every check on an images folder. Throws only when the folder cannot be read (ERR_CATALOG) or options are invalid. */
export async function lintImages(imagesDir: string, options: LintOptions = {}): Promise<LintResult> {
  const catalog = await loadCatalog(imagesDir, options);
  const problems: LintProblem[] = [...catalog.problems];
  const pins = new Map<string, Pin[]>();
  const contexts = new Map<string, ContextScan>();
  for (const image of catalog.images) {
    const out: LintProblem[] = [];
    const imagePins: Pin[] = [];
    if (image.dockerfile) {
      const scan = await checkDockerfile(catalog, image, image.dockerfile, out, imagePins, options.maxContextBytes);
      if (scan) contexts.set(image.name, scan);
    }
    await checkRequirementFiles(catalog, image, out, imagePins);
    pins.set(image.name, imagePins);
    problems.push(...out.map((p) => ({ ...p, image: image.name })));
  }
  problems.push(...checkDefault(catalog));
  problems.push(...checkPinConflicts(catalog, pins));
  problems.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : (a.line ?? 0) - (b.line ?? 0) || (a.rule < b.rule ? -1 : a.rule > b.rule ? 1 : 0)));
  const errorCount = problems.filter((p) => p.severity === 'error').length;
  return { ok: errorCount === 0, images: catalog.images.map((i) => i.name), problems, errorCount, warningCount: problems.length - errorCount, catalog, contexts };
}

function rel(catalog: Catalog, file: string): string {
  return displayPath(file, catalog.relativeTo);
}

/** The Dockerfile's checks; resolves to the scan of the build context when its COPY sources were checked. */
async function checkDockerfile(catalog: Catalog, image: CatalogImage, parsed: ParsedDockerfile, out: LintProblem[], pins: Pin[], maxContextBytes: number | undefined): Promise<ContextScan | undefined> {
  const file = rel(catalog, image.dockerfilePath);
  const text = parsed.source;
  text.split(/\r?\n/).forEach((line, i) => {
    if (/\{\{|\{%/.test(line)) {
      out.push({ severity: 'error', file, line: i + 1, rule: 'jinja', message: 'template syntax ({{ }} / {% %}) in the Dockerfile', hint: `Dockerfiles here are built as they are: use ARG ${REGISTRY_ARG} and \${${REGISTRY_ARG}} instead of a template variable` });
    }
  });
  checkFromLines(catalog, image, parsed, file, out);
  for (const ins of parsed.instructions) {
    if (ins.heredocs.length > 0) {
      out.push({ severity: 'error', file, line: ins.line, rule: 'heredoc', message: `${ins.keyword} with a heredoc (<<${ins.heredocs[0]}) is not supported`, hint: 'the classic builder cannot run heredocs and these checks cannot see inside them: chain commands with && or COPY a script file' });
    }
    if (ins.keyword === 'RUN') checkPipInstall(ins, parsed, file, out, pins);
  }
  return checkCopySources(catalog, image, parsed, file, out, maxContextBytes);
}

function checkFromLines(catalog: Catalog, image: CatalogImage, parsed: ParsedDockerfile, file: string, out: LintProblem[]): void {
  const decls = argDeclarations(parsed);
  const stageNames: string[] = [];
  for (const stage of image.stages) {
    const base = image.baseImages.find((b) => b.via === 'FROM' && b.line === stage.line);
    const isStage = base?.kind === 'stage' || stageNames.includes(stage.image.toLowerCase());
    if (stage.name) stageNames.push(stage.name);
    if (stage.image === '') {
      out.push({ severity: 'error', file, line: stage.line, rule: 'dockerfile-syntax', message: 'FROM names no image', hint: `write FROM \${${REGISTRY_ARG}}/${catalog.project}/<image>:<tag>` });
      continue;
    }
    if (isStage || base?.kind === 'scratch') continue;
    if (/\{\{|\{%/.test(parsed.instructions.find((i) => i.line === stage.line)?.args ?? '')) continue; // reported by the jinja rule
    // Only ARGs declared before the first FROM are visible to FROM; ${VAR:-default} needs no ARG.
    const visible = decls.filter((d) => d.global && d.line < stage.line);
    const values: Record<string, string | undefined> = {};
    for (const d of visible) values[d.name] = catalog.buildArgs[d.name] ?? d.defaultValue ?? (d.name === REGISTRY_ARG ? REGISTRY_ARG : undefined);
    const { unresolved } = expandVariables(stage.image, values, parsed.escape);
    for (const name of [...new Set(unresolved)]) {
      if (!visible.some((d) => d.name === name)) {
        const later = decls.find((d) => d.name === name);
        out.push({
          severity: 'error',
          file,
          line: stage.line,
          rule: 'from-arg',
          message: `FROM ${stage.image} uses ${name}, which is not declared with ARG before the first FROM${later ? ` (the ARG on line ${later.line} comes too late: an ARG after FROM is not visible to FROM)` : ''}`,
          hint: `add ARG ${name} as the first line of the Dockerfile`,
        });
      } else {
        out.push({ severity: 'error', file, line: stage.line, rule: 'from-arg', message: `FROM ${stage.image} uses ${name}, which has no default and is not given as a build arg`, hint: `give it a default (ARG ${name}=<value>) or pass it as a build arg` });
      }
    }
    if (!/^\$(\{HARBOR_REGISTRY\}|HARBOR_REGISTRY)\//.test(stage.image)) {
      const suggestion = base?.parsed ? `\${${REGISTRY_ARG}}/${base.parsed.repository}${base.parsed.tag ? `:${base.parsed.tag}` : ''}` : `\${${REGISTRY_ARG}}/${catalog.project}/<image>:<tag>`;
      out.push({ severity: 'error', file, line: stage.line, rule: 'from-harbor', message: `FROM ${stage.image} does not pull from Harbor through \${${REGISTRY_ARG}}`, hint: `Thinkube nodes pull bases from Harbor (mirror the base there first): write FROM ${suggestion}` });
    }
  }
}

/** Go filepath.Match semantics, as the builder uses for COPY sources: * and ? never match '/'. */
export function globToRegExp(pattern: string): RegExp {
  let out = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] as string;
    if (c === '*') out += '[^/]*';
    else if (c === '?') out += '[^/]';
    else if (c === '[') {
      const close = pattern.indexOf(']', i + 2);
      if (close < 0) {
        out += '\\[';
        continue;
      }
      let body = pattern.slice(i + 1, close);
      if (body.startsWith('^') || body.startsWith('!')) body = `^${body.slice(1)}`;
      out += `[${body.replace(/\\/g, '\\\\')}]`;
      i = close;
    } else if (c === '\\' && i + 1 < pattern.length) out += `\\${pattern[++i] as string}`.replace(/^\\([A-Za-z0-9])$/, '$1');
    else out += c.replace(/[.+^${}()|\]\\/]/g, '\\$&');
  }
  return new RegExp(`^${out}$`);
}

async function checkCopySources(catalog: Catalog, image: CatalogImage, parsed: ParsedDockerfile, file: string, out: LintProblem[], maxBytes: number | undefined): Promise<ContextScan | undefined> {
  const copies = copySources(parsed);
  if (copies.length === 0) return undefined;
  let scan: ContextScan | undefined;
  try {
    scan = await scanContext(image.dir, { dockerfile: image.dockerfilePath, maxBytes });
  } catch (error) {
    if (!(error instanceof ThinkubeImageError)) throw error;
    out.push({ severity: 'error', file: rel(catalog, image.dir), rule: 'context', message: error.message, hint: error.hint ?? 'fix the build context' });
    return undefined;
  }
  const entries = new Set(scan.entries.map((e) => e.path));
  const matcher = createIgnoreMatcher(scan.ignorePatterns);
  const decls = argDeclarations(parsed);
  const contextName = rel(catalog, image.dir);
  for (const copy of copies) {
    const ins = copy.instruction;
    const words = copy.sources.length + (copy.destination === undefined ? 0 : 1);
    if (copy.shellOperators.length > 0) {
      out.push({
        severity: 'error',
        file,
        line: ins.line,
        rule: 'copy-shell',
        message: `${copy.keyword} runs no shell: "${copy.shellOperators.join(' ')}" and what follows are taken as file names`,
        hint: `a ${copy.keyword} cannot be made optional: put the files in the image folder, or remove the ${copy.keyword}`,
      });
    }
    if (words < 2) {
      out.push({ severity: 'error', file, line: ins.line, rule: 'dockerfile-syntax', message: `${copy.keyword} needs at least one source and a destination`, hint: `write ${copy.keyword} <source> <destination>` });
      continue;
    }
    if (copy.from !== undefined) continue; // from a stage or an image, not from the context
    const vars: Record<string, string> = {};
    for (const d of decls) if (d.line < ins.line && (d.defaultValue !== undefined || catalog.buildArgs[d.name] !== undefined)) vars[d.name] = catalog.buildArgs[d.name] ?? (d.defaultValue as string);
    for (const source of copy.sources) {
      if (copy.keyword === 'ADD' && isRemoteSource(source)) continue;
      const expanded = expandVariables(source, vars, parsed.escape);
      if (expanded.unresolved.length > 0) {
        out.push({ severity: 'warning', file, line: ins.line, rule: 'copy-source', message: `cannot check ${copy.keyword} source ${source}: ${expanded.unresolved.join(', ')} has no value here`, hint: 'give the ARG a default so the source can be checked' });
        continue;
      }
      const normal = path.posix.normalize(expanded.value.replace(/^\/+/, '') || '.').replace(/\/+$/, '') || '.';
      if (normal === '..' || normal.startsWith('../')) {
        out.push({ severity: 'error', file, line: ins.line, rule: 'copy-source', message: `${copy.keyword} source ${source} is outside the build context ${contextName}`, hint: 'the builder only sees the image folder: move the file into it' });
        continue;
      }
      if (normal === '.') continue;
      if (/[*?[]/.test(normal)) {
        const re = globToRegExp(normal);
        if (![...entries].some((e) => re.test(e))) {
          out.push({ severity: 'error', file, line: ins.line, rule: 'copy-source', message: `${copy.keyword} source ${source} matches no file in the build context ${contextName}`, hint: 'add a matching file to the image folder, fix the pattern, or check .dockerignore' });
        }
        continue;
      }
      if (entries.has(normal)) continue;
      const onDisk = existsSync(path.join(image.dir, normal));
      if (onDisk && matcher.ignores(normal)) {
        out.push({ severity: 'error', file, line: ins.line, rule: 'copy-source', message: `${copy.keyword} source ${source} is excluded by ${contextName}/.dockerignore`, hint: `remove the .dockerignore pattern that matches ${normal}, or add !${normal} after it` });
      } else {
        out.push({ severity: 'error', file, line: ins.line, rule: 'copy-source', message: `${copy.keyword} source ${source} is not in the build context ${contextName}`, hint: `create ${contextName}/${normal}, or remove the ${copy.keyword}` });
      }
    }
  }
  return scan;
}

/** pip options that take a value (the value is not a requirement). */
const PIP_VALUE_OPTIONS = new Set([
  '-r', '--requirement', '-c', '--constraint', '-i', '--index-url', '--extra-index-url', '-f', '--find-links',
  '-t', '--target', '--prefix', '--root', '--platform', '--python-version', '--implementation', '--abi',
  '--trusted-host', '--src', '--upgrade-strategy', '--progress-bar', '-C', '--config-settings', '--global-option',
  '--no-binary', '--only-binary', '--cache-dir', '--log', '--timeout', '--retries', '--proxy', '--cert',
  '--client-cert', '--exists-action', '--report', '--root-user-action', '--python', '--use-feature',
]);

function checkPipInstall(ins: Instruction, parsed: ParsedDockerfile, file: string, out: LintProblem[], pins: Pin[]): void {
  const words = ins.json ?? shellWords(ins.args, parsed.escape);
  const commands: string[][] = [[]];
  for (const w of words) {
    if (w === '&&' || w === '||' || w === ';' || w === '|') commands.push([]);
    else (commands[commands.length - 1] as string[]).push(w);
  }
  for (const cmd of commands) {
    let i = cmd.findIndex((w, k) => (/(^|\/)pip(3(\.\d+)?)?$/.test(w) && cmd.slice(k + 1).find((x) => !x.startsWith('-')) === 'install') || (/(^|\/)python(3(\.\d+)?)?$/.test(w) && cmd[k + 1] === '-m' && cmd[k + 2] === 'pip'));
    if (i < 0) continue;
    if (cmd[i + 1] === '-m') i += 2;
    const installAt = cmd.indexOf('install', i + 1);
    if (installAt < 0) continue;
    const args = cmd.slice(installAt + 1);
    if (!cmd.includes('--no-cache-dir')) {
      out.push({ severity: 'warning', file, line: ins.line, rule: 'pip-cache', message: 'pip install without --no-cache-dir keeps its download cache in the image layer', hint: 'add --no-cache-dir' });
    }
    for (let k = 0; k < args.length; k++) {
      const arg = args[k] as string;
      if (arg.startsWith('-')) {
        if (arg.includes('=')) continue;
        if (arg === '-e' || arg === '--editable') {
          k++;
          continue;
        }
        if (PIP_VALUE_OPTIONS.has(arg)) k++;
        continue;
      }
      // A variable cannot be checked here (e.g. an optional commit passed as a build arg).
      if (arg.includes('$') || arg === '.' || /^(\.{1,2}\/|\/)/.test(arg)) continue;
      const { entry, problem } = checkRequirement(arg, ins.line);
      if (problem) out.push({ severity: 'error', file, line: ins.line, rule: problem.rule, message: `RUN pip install: ${problem.message}`, hint: problem.hint });
      if (entry?.name && entry.pinned) pins.push({ name: entry.name, key: normalizePackageName(entry.name), version: entry.pinned, line: ins.line, file: parsed.file });
    }
  }
}

async function checkRequirementFiles(catalog: Catalog, image: CatalogImage, out: LintProblem[], pins: Pin[]): Promise<void> {
  if (!image.requirementsPath) {
    out.push({ severity: 'warning', file: rel(catalog, image.dir), rule: 'requirements-missing', message: `image folder ${image.name} has no requirements.txt`, hint: 'list the Python packages the image installs, each pinned name==version' });
  }
  const queue = [...image.requirementsFiles];
  const seen = new Set<string>();
  while (queue.length > 0) {
    const current = queue.shift() as string;
    if (seen.has(current)) continue;
    seen.add(current);
    const file = rel(catalog, current);
    // Small files, read whole with one call (see readText in catalog.ts).
    const text = readFileSync(current, 'utf8');
    const parsed = parseRequirements(text, current);
    for (const p of parsed.problems) out.push({ severity: 'error', file, line: p.line, rule: p.rule, message: p.message, hint: p.hint });
    for (const include of parsed.includes) {
      const target = path.resolve(path.dirname(current), include.path);
      if (!existsSync(target)) {
        out.push({ severity: 'error', file, line: include.line, rule: 'requirements-include', message: `${include.kind === 'constraint' ? '-c' : '-r'} ${include.path} names a file that does not exist`, hint: `create ${rel(catalog, target)} or remove the line` });
      } else if (path.relative(image.dir, target).startsWith('..')) {
        out.push({ severity: 'error', file, line: include.line, rule: 'requirements-include', message: `${include.path} is outside the image folder, so it is not in the build context`, hint: 'keep included requirement files inside the image folder' });
      } else if (include.kind === 'requirement') queue.push(target);
    }
    const byKey = new Map<string, Pin>();
    for (const pin of parsed.pins) {
      const earlier = byKey.get(pin.key);
      if (!earlier) {
        byKey.set(pin.key, pin);
        continue;
      }
      if (!sameVersion(earlier.version, pin.version)) {
        out.push({ severity: 'error', file, line: pin.line, rule: 'pin-duplicate', message: `${pin.name}==${pin.version} conflicts with ${earlier.name}==${earlier.version} on line ${earlier.line}`, hint: 'pip refuses two versions of one package in one install: keep one line' });
      } else {
        out.push({ severity: 'warning', file, line: pin.line, rule: 'pin-duplicate', message: `${pin.name}==${pin.version} is already pinned on line ${earlier.line}`, hint: 'remove the repeated line' });
      }
    }
    pins.push(...parsed.pins);
  }
}

/** JupyterHub offers the Jupyter images of a set with one of them preselected: exactly one is the default. */
function checkDefault(catalog: Catalog): LintProblem[] {
  const defaults = catalog.images.filter((i) => i.metadata?.metadata?.default === true);
  const jupyter = catalog.images.filter((i) => i.metadata?.category === 'jupyter');
  if (defaults.length === 1 || (jupyter.length === 0 && defaults.length === 0)) return [];
  if (defaults.length === 0) {
    return [{ severity: 'error', file: rel(catalog, catalog.dir), rule: 'default', message: `no image of ${rel(catalog, catalog.dir)} has metadata.default: true`, hint: 'exactly one image is the default: set metadata.default: true in one image.yaml' }];
  }
  const names = defaults.map((i) => i.name).join(', ');
  return defaults.map((image) => ({
    severity: 'error' as const,
    file: rel(catalog, image.metadataPath),
    line: lineOf(image.metadataPath, /^\s+default\s*:\s*true\b/),
    rule: 'default',
    image: image.name,
    message: `${defaults.length} images have metadata.default: true (${names})`,
    hint: 'exactly one image is the default: set default: false in all but one',
  }));
}

function lineOf(file: string, pattern: RegExp): number | undefined {
  try {
    // A small file already read once by the loader; a sync read keeps this helper simple.
    const lines = readFileSync(file, 'utf8').split(/\r?\n/);
    const index = lines.findIndex((l) => pattern.test(l));
    return index >= 0 ? index + 1 : undefined;
  } catch {
    return undefined;
  }
}

function checkPinConflicts(catalog: Catalog, pins: Map<string, Pin[]>): LintProblem[] {
  const out: LintProblem[] = [];
  for (const image of catalog.images) {
    let bases: string[];
    try {
      bases = ancestors(catalog, image.name);
    } catch {
      continue;
    }
    const own = pins.get(image.name) ?? [];
    const reported = new Set<string>();
    for (const base of bases) {
      const basePins = new Map((pins.get(base) ?? []).map((p) => [p.key, p]));
      for (const pin of own) {
        const theirs = basePins.get(pin.key);
        if (!theirs || sameVersion(theirs.version, pin.version) || reported.has(pin.key)) continue;
        reported.add(pin.key);
        const effect = installEffect(pin.version, theirs.version);
        out.push({
          severity: 'warning',
          file: rel(catalog, pin.file ?? image.dockerfilePath),
          line: pin.line,
          rule: 'pin-conflict',
          image: image.name,
          message: `${pin.name}==${pin.version} differs from ${theirs.name}==${theirs.version} in ${base} (${rel(catalog, theirs.file ?? '')}:${theirs.line}), which this image builds on; installing it ${effect} the base's ${theirs.name}`,
          hint: `use ${theirs.name}==${theirs.version} as the base does, or change both images together`,
        });
      }
    }
  }
  return out;
}
