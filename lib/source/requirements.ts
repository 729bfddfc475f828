/**
 * requirements.txt (pip) parsing for the pin check: every requirement must name one exact version
 * (`name==1.2.3`, extras and environment markers allowed), a direct URL must carry a hash and a VCS
 * URL a full commit. Options pip accepts in a requirements file (-r, -c, --index-url,
 * --extra-index-url, ...) are allowed; anything else pip would reject is reported.
 *
 * Decisions: `===` (arbitrary equality) is an exact pin and accepted; `==1.2.*` is a range and
 * rejected; a requirement with several clauses (`==1.0,<2`) is rejected (say one version); local
 * paths (./wheels/x.whl) are accepted: they come from the build context and are versioned with it.
 *
 * Versions and specifier clauses are PEP 440, as pip reads them (@renovatebot/pep440): `==abc` is
 * not a version (pip refuses it; `===abc` is the way to pin one), and two pins are the same version
 * when PEP 440 says so (`1.0` and `1.0.0`, `1.0RC1` and `1.0rc1`). Names, extras, URLs and markers
 * (PEP 508) are parsed here: the library covers versions and specifiers only.
 */
import { RANGE_PATTERN, compare, explain, validRange } from '@renovatebot/pep440';

export interface Pin {
  /** Name as written. */
  name: string;
  /** PEP 503 normalised name (lower case, runs of -_. as one -). */
  key: string;
  version: string;
  line: number;
  file: string | undefined;
}

export interface RequirementProblem {
  line: number;
  rule: 'pin' | 'requirement-syntax' | 'pip-option' | 'jinja';
  message: string;
  hint: string;
}

export interface RequirementEntry {
  line: number;
  /** The requirement text without comment and per-requirement options. */
  text: string;
  name: string | undefined;
  extras: string[];
  /** Version clauses as written, e.g. ['==1.2.3'] or ['>=1', '<2']. */
  specifiers: string[];
  url: string | undefined;
  marker: string | undefined;
  /** The exact version when the requirement is pinned. */
  pinned: string | undefined;
}

export interface RequirementOption {
  line: number;
  name: string;
  value: string | undefined;
}

export interface ParsedRequirements {
  file: string | undefined;
  entries: RequirementEntry[];
  options: RequirementOption[];
  /** Files named by -r/--requirement and -c/--constraint, as written. */
  includes: Array<{ line: number; kind: 'requirement' | 'constraint'; path: string }>;
  pins: Pin[];
  problems: RequirementProblem[];
}

/** Options pip accepts in a requirements file, and whether they take a value. */
const FILE_OPTIONS: Record<string, boolean> = {
  '-r': true, '--requirement': true, '-c': true, '--constraint': true,
  '-i': true, '--index-url': true, '--extra-index-url': true, '--no-index': false,
  '-f': true, '--find-links': true, '--pre': false, '--prefer-binary': false,
  '--require-hashes': false, '--trusted-host': true, '--use-feature': true,
  '--no-binary': true, '--only-binary': true, '-e': true, '--editable': true,
};
/** Options pip accepts after a requirement on the same line. */
const PER_REQUIREMENT_OPTIONS = /\s--(hash|config-settings|global-option|install-option)(=\S+|\s+\S+)/g;

const NAME = /^([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)/;
/** One PEP 440 clause: operator, then a version (with `.*` as prefix) or, for ===, any string (legacy). */
const CLAUSE = new RegExp(`^${RANGE_PATTERN}$`, 'i');

export function normalizePackageName(name: string): string {
  return name.toLowerCase().replace(/[-_.]+/g, '-');
}

function stripComment(line: string): string {
  // pip: a comment starts at '#' at the line start or after whitespace ('#' inside a URL fragment stays).
  const m = /(^|\s)#/.exec(line);
  return (m ? line.slice(0, m.index) : line).trim();
}

function isVcs(url: string): boolean {
  return /^(git|hg|svn|bzr)\+/i.test(url);
}

function isPathLike(text: string): boolean {
  return /^(\.{1,2}\/|\/|file:)/.test(text) || /\.(whl|tar\.gz|zip)$/i.test(text) && !/:\/\//.test(text);
}

/** Check a URL requirement: VCS needs @<40-hex commit>, other URLs a #sha256= (or other) hash. */
function urlProblem(display: string, url: string): { message: string; hint: string } | undefined {
  if (url.startsWith('file:')) return undefined;
  const clean = url.replace(/#egg=[^&]*/, '').replace(/[#&]subdirectory=[^&]*/, '');
  if (isVcs(url)) {
    // host/path@ref: the ref is after the last '@' of the path (an '@' in the host part is a user).
    const afterScheme = clean.replace(/^[a-z]+\+[a-z]+:\/\//i, '');
    const slash = afterScheme.indexOf('/');
    const pathPart = slash >= 0 ? afterScheme.slice(slash) : '';
    const at = pathPart.lastIndexOf('@');
    const ref = at >= 0 ? pathPart.slice(at + 1).replace(/#.*$/, '') || undefined : undefined;
    if (!ref) return { message: `${display} is a VCS URL without a ref`, hint: 'pin a full 40-character commit: append @<commit> to the URL' };
    if (!/^[0-9a-f]{40}$/.test(ref)) return { message: `${display} uses the ref "${ref}", which can move`, hint: `pin a full 40-character commit instead of "${ref}": ...@<commit>` };
    return undefined;
  }
  if (/#(sha256|sha384|sha512)=[0-9a-f]+/i.test(url)) return undefined;
  return { message: `${display} is a URL without a hash`, hint: 'add #sha256=<digest of the file> to the URL, or pin name==version from the index' };
}

export interface CheckedRequirement {
  entry: RequirementEntry | undefined;
  problem: { rule: RequirementProblem['rule']; message: string; hint: string } | undefined;
}

/**
 * Parse and check one requirement specifier (the text of one line without comment/options, or
 * one argument of `pip install`).
 */
export function checkRequirement(text: string, line = 0): CheckedRequirement {
  const entry: RequirementEntry = { line, text, name: undefined, extras: [], specifiers: [], url: undefined, marker: undefined, pinned: undefined };
  let rest = text.trim();
  // A bare URL or path (pip accepts these; the name comes from #egg= or the file).
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(rest) || isPathLike(rest)) {
    const semi = /\s;/.exec(rest)?.index;
    if (semi !== undefined) {
      entry.marker = rest.slice(semi).replace(/^\s*;/, '').trim();
      rest = rest.slice(0, semi);
    }
    entry.url = rest;
    const egg = /#egg=([^&\s]+)/.exec(rest)?.[1];
    entry.name = egg;
    if (isPathLike(rest) && !/:\/\//.test(rest)) return { entry, problem: undefined };
    const p = urlProblem(egg ?? rest, rest);
    return { entry, problem: p ? { rule: 'pin', ...p } : undefined };
  }
  const nameMatch = NAME.exec(rest);
  if (!nameMatch) return { entry: undefined, problem: { rule: 'requirement-syntax', message: `"${text}" is not a requirement`, hint: 'write name==version, e.g. numpy==1.26.4' } };
  const name = nameMatch[1] as string;
  entry.name = name;
  rest = rest.slice(name.length).trim();
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close < 0) return { entry, problem: { rule: 'requirement-syntax', message: `${name}: the extras list is not closed`, hint: `write ${name}[extra]==version` } };
    entry.extras = rest.slice(1, close).split(',').map((s) => s.trim()).filter(Boolean);
    rest = rest.slice(close + 1).trim();
  }
  // PEP 508: after a URL the marker needs whitespace before ';' (a URL may hold a ';').
  const semi = rest.startsWith('@') ? /\s;/.exec(rest)?.index : rest.indexOf(';');
  if (semi !== undefined && semi >= 0) {
    entry.marker = rest.slice(semi).replace(/^\s*;/, '').trim();
    rest = rest.slice(0, semi).trim();
  }
  const display = `${name}${entry.extras.length ? `[${entry.extras.join(',')}]` : ''}`;
  if (rest.startsWith('@')) {
    // PEP 508 URL form.
    entry.url = rest.slice(1).trim();
    const p = urlProblem(`${name} @ ${entry.url}`, entry.url);
    return { entry, problem: p ? { rule: 'pin', ...p } : undefined };
  }
  if (rest.startsWith('(') && rest.endsWith(')')) rest = rest.slice(1, -1).trim();
  if (rest === '') return { entry, problem: { rule: 'pin', message: `${name} is not pinned`, hint: `pin an exact version: ${display}==X.Y.Z` } };
  entry.specifiers = rest.split(',').map((s) => s.trim()).filter(Boolean);
  const clauses = entry.specifiers.map((s) => CLAUSE.exec(s)?.groups);
  // validRange is PEP 440's judgement: ==abc, ~=1 and >=1.0+local are not specifiers pip takes.
  const bad = clauses.findIndex((c, i) => !c || !validRange(entry.specifiers[i] as string));
  if (bad >= 0) return { entry, problem: { rule: 'requirement-syntax', message: `${display}: "${entry.specifiers[bad]}" is not a version specifier`, hint: `write ${display}==X.Y.Z` } };
  const written = `${display}${rest.replace(/\s+/g, '')}`;
  if (clauses.length === 1) {
    const { operator: op, version, legacy, prefix } = clauses[0] as Record<string, string | undefined>;
    if ((op === '==' || op === '===') && !prefix) {
      entry.pinned = version ?? legacy;
      return { entry, problem: undefined };
    }
    const why = op === '==' ? `${written} is a wildcard, not an exact pin` : `${written} is a range (${op}), not an exact pin`;
    return { entry, problem: { rule: 'pin', message: why, hint: `pin an exact version: ${display}==X.Y.Z` } };
  }
  return { entry, problem: { rule: 'pin', message: `${written} combines several clauses, not one exact pin`, hint: `pin one exact version: ${display}==X.Y.Z` } };
}

/** Parse a requirements file and check every line. Never throws. */
export function parseRequirements(text: string, file?: string): ParsedRequirements {
  const out: ParsedRequirements = { file, entries: [], options: [], includes: [], pins: [], problems: [] };
  const physical = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  for (let i = 0; i < physical.length; i++) {
    const line = i + 1;
    let logical = physical[i] ?? '';
    // pip joins lines ending in a backslash before anything else.
    while (/\\$/.test(logical) && i + 1 < physical.length) logical = logical.slice(0, -1) + (physical[++i] ?? '');
    const content = stripComment(logical);
    if (content === '') continue;
    if (/\{\{|\{%/.test(content)) {
      out.problems.push({ line, rule: 'jinja', message: `template syntax in "${content}"`, hint: 'requirements files are read by pip as they are: write the literal name==version' });
      continue;
    }
    if (content.startsWith('-')) {
      const m = /^(--?[A-Za-z][A-Za-z0-9-]*)(?:[=\s]\s*(.*))?$/.exec(content);
      const name = m?.[1] ?? content;
      const value = m?.[2]?.trim() || undefined;
      if (!(name in FILE_OPTIONS)) {
        out.problems.push({ line, rule: 'pip-option', message: `pip does not accept the option ${name} in a requirements file`, hint: 'use -r, -c, --index-url, --extra-index-url, --find-links or a requirement name==version' });
        continue;
      }
      if (FILE_OPTIONS[name] && !value) {
        out.problems.push({ line, rule: 'pip-option', message: `the option ${name} needs a value`, hint: `write ${name} <value>` });
        continue;
      }
      out.options.push({ line, name, value });
      if ((name === '-r' || name === '--requirement' || name === '-c' || name === '--constraint') && value) {
        out.includes.push({ line, kind: name === '-c' || name === '--constraint' ? 'constraint' : 'requirement', path: value });
      }
      if ((name === '-e' || name === '--editable') && value) addRequirement(out, value, line);
      continue;
    }
    addRequirement(out, content.replace(PER_REQUIREMENT_OPTIONS, '').trim(), line);
  }
  return out;
}

function addRequirement(out: ParsedRequirements, text: string, line: number): void {
  const { entry, problem } = checkRequirement(text, line);
  if (entry) out.entries.push(entry);
  if (problem) out.problems.push({ line, ...problem });
  if (entry?.name && entry.pinned) out.pins.push({ name: entry.name, key: normalizePackageName(entry.name), version: entry.pinned, line, file: out.file });
}

/** PEP 440 ordering of two versions (-1, 0, 1); undefined when either is not a PEP 440 version (an === pin). */
export function compareVersions(a: string, b: string): number | undefined {
  if (!explain(a) || !explain(b)) return undefined;
  return Math.sign(compare(a, b));
}

/** The same version: PEP 440 equal (1.0 and 1.0.0), or the same string where either is not PEP 440 (=== pins). */
export function sameVersion(a: string, b: string): boolean {
  return compareVersions(a, b) === 0 || a.toLowerCase() === b.toLowerCase();
}

/**
 * What installing `version` over an installed `installed` does, in words: upgrades or downgrades
 * by PEP 440 order; replaces when the order says nothing (versions that differ only in their
 * local label, such as 2.5.1+cpu and 2.5.1, are other builds of one release; === pins).
 */
export function installEffect(version: string, installed: string): 'upgrades' | 'downgrades' | 'replaces' {
  const a = explain(version);
  const b = explain(installed);
  const cmp = a && b ? compareVersions(a.public, b.public) : undefined;
  return !cmp ? 'replaces' : cmp > 0 ? 'upgrades' : 'downgrades';
}
