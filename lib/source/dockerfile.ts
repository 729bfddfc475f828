/**
 * A Dockerfile parser good enough for checks and dependency graphs: instructions with 1-based line
 * numbers, parser directives (`# escape=`, `# syntax=`), line continuations, comments, JSON and
 * shell forms, leading `--flags`, build stages and ARG/variable substitution the way the builder
 * does it for FROM. Heredocs (`RUN <<EOF`) are recognised and their bodies skipped so that line
 * numbers stay right, but their content is not interpreted (lint reports them).
 */

export const INSTRUCTIONS = [
  'ADD', 'ARG', 'CMD', 'COPY', 'ENTRYPOINT', 'ENV', 'EXPOSE', 'FROM', 'HEALTHCHECK', 'LABEL',
  'MAINTAINER', 'ONBUILD', 'RUN', 'SHELL', 'STOPSIGNAL', 'USER', 'VOLUME', 'WORKDIR',
] as const;
export type InstructionKeyword = (typeof INSTRUCTIONS)[number];
const KNOWN = new Set<string>(INSTRUCTIONS);

export interface InstructionFlag {
  name: string;
  /** Value after `=`, or undefined for a bare `--flag`. */
  value: string | undefined;
}

export interface Instruction {
  /** Upper-case keyword as written (unknown keywords are kept; see DockerfileProblem). */
  keyword: string;
  /** 1-based line of the keyword. */
  line: number;
  /** Last physical line (continuations and heredoc bodies included). */
  endLine: number;
  /** Everything after the keyword with continuations joined, flags included. */
  rest: string;
  /** Leading `--name[=value]` flags (FROM, COPY, ADD, RUN, HEALTHCHECK). */
  flags: InstructionFlag[];
  /** Text after the flags. */
  args: string;
  /** The arguments when written in JSON (exec) form, e.g. CMD ["jupyter", "lab"]. */
  json: string[] | undefined;
  /** Heredoc delimiters opened by this instruction (`<<EOF`), when any. */
  heredocs: string[];
}

export interface DockerfileProblem {
  line: number;
  message: string;
  hint: string;
  rule: 'dockerfile-syntax' | 'heredoc';
}

export interface ParsedDockerfile {
  file: string | undefined;
  /** The text parsed. */
  source: string;
  /** Escape character from the `# escape=` directive: backslash (default) or backtick. */
  escape: '\\' | '`';
  /** Parser directives (lower-case names), e.g. { syntax: 'docker/dockerfile:1' }. */
  directives: Record<string, string>;
  instructions: Instruction[];
  problems: DockerfileProblem[];
}

const DIRECTIVE = /^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.*?)\s*$/;
const HEREDOC = /<<(-?)\s*(["']?)([A-Za-z_][A-Za-z0-9_]*)\2/g;
const FLAG_INSTRUCTIONS = new Set(['FROM', 'COPY', 'ADD', 'RUN', 'HEALTHCHECK']);

/**
 * Parse Dockerfile text. Never throws: syntax problems are returned in `problems` with their line.
 */
export function parseDockerfile(text: string, file?: string): ParsedDockerfile {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  const directives: Record<string, string> = {};
  const problems: DockerfileProblem[] = [];
  let escape: '\\' | '`' = '\\';

  // Parser directives: only at the very top, before any comment, blank line or instruction.
  let index = 0;
  for (; index < lines.length; index++) {
    const m = DIRECTIVE.exec(lines[index] ?? '');
    if (!m) break;
    const name = (m[1] ?? '').toLowerCase();
    if (name in directives) break; // a repeated directive is an ordinary comment
    directives[name] = m[2] ?? '';
    if (name === 'escape') {
      if (m[2] === '`' || m[2] === '\\') escape = m[2];
      else problems.push({ line: index + 1, rule: 'dockerfile-syntax', message: `invalid escape directive "${m[2]}"`, hint: 'Use # escape=\\ or # escape=`' });
    }
  }

  const continuation = new RegExp(`${escape === '\\' ? '\\\\' : '`'}[ \\t]*$`);
  const instructions: Instruction[] = [];
  for (let i = 0; i < lines.length; i++) {
    const physical = lines[i] ?? '';
    const trimmed = physical.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const startLine = i + 1;
    let logical = '';
    let current = physical;
    for (;;) {
      if (continuation.test(current)) {
        logical += current.replace(continuation, '');
        // Comment and blank lines inside a continued instruction are dropped, as the builder does.
        let next = i + 1;
        while (next < lines.length && /^\s*(#.*)?$/.test(lines[next] ?? '')) next++;
        if (next >= lines.length) {
          i = lines.length - 1;
          break;
        }
        i = next;
        current = lines[i] ?? '';
        continue;
      }
      logical += current;
      break;
    }
    const m = /^\s*(\S+)(?:\s+([\s\S]*))?$/.exec(logical);
    if (!m) continue;
    const keyword = (m[1] ?? '').toUpperCase();
    const rest = (m[2] ?? '').trim();
    if (!KNOWN.has(keyword)) {
      problems.push({ line: startLine, rule: 'dockerfile-syntax', message: `unknown instruction ${m[1]}`, hint: `Use one of ${INSTRUCTIONS.join(', ')} (a line ending in ${escape} continues on the next line)` });
    }
    const { flags, args } = FLAG_INSTRUCTIONS.has(keyword) ? splitFlags(rest) : { flags: [], args: rest };
    const heredocs: string[] = [];
    if (keyword === 'RUN' || keyword === 'COPY' || keyword === 'ADD') {
      for (const h of args.matchAll(HEREDOC)) heredocs.push(`${h[1] ?? ''}${h[3] ?? ''}`);
    }
    // Skip heredoc bodies so that the following instructions keep their real line numbers.
    for (const delimiter of heredocs) {
      const strip = delimiter.startsWith('-');
      const word = strip ? delimiter.slice(1) : delimiter;
      let found = false;
      for (let j = i + 1; j < lines.length; j++) {
        const body = lines[j] ?? '';
        if ((strip ? body.replace(/^\t+/, '') : body) === word) {
          i = j;
          found = true;
          break;
        }
      }
      if (!found) {
        problems.push({ line: startLine, rule: 'heredoc', message: `heredoc <<${word} is never closed`, hint: `End it with a line holding only ${word}` });
        i = lines.length - 1;
      }
    }
    instructions.push({ keyword, line: startLine, endLine: i + 1, rest, flags, args, json: parseJsonForm(args), heredocs: heredocs.map((d) => d.replace(/^-/, '')) });
  }
  return { file, source: text, escape, directives, instructions, problems };
}

function splitFlags(rest: string): { flags: InstructionFlag[]; args: string } {
  const flags: InstructionFlag[] = [];
  let remaining = rest;
  for (;;) {
    const m = /^--([A-Za-z][A-Za-z0-9-]*)(?:=("[^"]*"|'[^']*'|\S*))?(?:\s+|$)/.exec(remaining);
    if (!m) break;
    const raw = m[2];
    flags.push({ name: m[1] ?? '', value: raw === undefined ? undefined : raw.replace(/^(["'])(.*)\1$/, '$2') });
    remaining = remaining.slice(m[0].length);
  }
  return { flags, args: remaining.trim() };
}

function parseJsonForm(args: string): string[] | undefined {
  if (!args.startsWith('[')) return undefined;
  try {
    const value: unknown = JSON.parse(args);
    return Array.isArray(value) && value.every((v) => typeof v === 'string') ? (value as string[]) : undefined;
  } catch {
    // Not valid JSON: the builder then treats it as shell form.
    return undefined;
  }
}

export function flagValue(instruction: Instruction, name: string): string | undefined {
  return instruction.flags.find((f) => f.name === name)?.value;
}

/**
 * Split shell-form text into words the way a POSIX shell would for simple cases: whitespace
 * separates, single and double quotes group, the escape character escapes. Variables are kept as
 * written. Operators such as `&&`, `||`, `;` and `|` come out as their own words.
 */
export function shellWords(text: string, escape: '\\' | '`' = '\\'): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (quote === "'") {
      if (c === "'") quote = undefined;
      else word += c;
      continue;
    }
    if (quote === '"') {
      if (c === '"') quote = undefined;
      else if (c === escape && i + 1 < text.length && '"$`\\'.includes(text[i + 1] as string)) word += text[++i];
      else word += c;
      continue;
    }
    if (c === "'" || c === '"') {
      quote = c;
      inWord = true;
      continue;
    }
    if (c === escape && i + 1 < text.length) {
      word += text[++i];
      inWord = true;
      continue;
    }
    if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
      continue;
    }
    const two = text.slice(i, i + 2);
    if (two === '&&' || two === '||' || c === ';' || c === '|') {
      if (inWord) words.push(word);
      words.push(two === '&&' || two === '||' ? two : c);
      if (two === '&&' || two === '||') i++;
      word = '';
      inWord = false;
      continue;
    }
    word += c;
    inWord = true;
  }
  if (inWord) words.push(word);
  return words;
}

export interface ArgDeclaration {
  name: string;
  /** Default value, undefined when the ARG has none. */
  defaultValue: string | undefined;
  line: number;
  /** True when declared before the first FROM (a global ARG, the only kind FROM can use). */
  global: boolean;
}

/** Every ARG declaration in order (one ARG instruction may declare several). */
export function argDeclarations(parsed: ParsedDockerfile): ArgDeclaration[] {
  const out: ArgDeclaration[] = [];
  let seenFrom = false;
  for (const ins of parsed.instructions) {
    if (ins.keyword === 'FROM') seenFrom = true;
    if (ins.keyword !== 'ARG') continue;
    for (const word of shellWords(ins.args, parsed.escape)) {
      const eq = word.indexOf('=');
      out.push({ name: eq < 0 ? word : word.slice(0, eq), defaultValue: eq < 0 ? undefined : word.slice(eq + 1), line: ins.line, global: !seenFrom });
    }
  }
  return out;
}

/**
 * Values of the global ARGs (declared before the first FROM): a build arg wins over the default.
 * As with the builder, build args for undeclared ARGs are not visible; an ARG with neither a
 * default nor a build arg is absent from the result.
 */
export function globalArgs(parsed: ParsedDockerfile, buildArgs: Record<string, string | undefined> = {}): Record<string, string> {
  const out: Record<string, string> = {};
  for (const decl of argDeclarations(parsed)) {
    if (!decl.global) continue;
    const given = Object.prototype.hasOwnProperty.call(buildArgs, decl.name) ? buildArgs[decl.name] : undefined;
    const value = given ?? (decl.defaultValue === undefined ? undefined : expandVariables(decl.defaultValue, out).value);
    if (value !== undefined) out[decl.name] = value;
  }
  return out;
}

export interface Expansion {
  value: string;
  /** Variables that were used but had no value (substituted with an empty string, as the builder does). */
  unresolved: string[];
  /** Every variable name referenced. */
  used: string[];
}

/**
 * Substitute `$VAR`, `${VAR}`, `${VAR:-default}` and `${VAR:+alternative}` like the builder does
 * for FROM and other instructions. An escaped `\$` stays a literal dollar.
 */
export function expandVariables(text: string, vars: Record<string, string | undefined>, escape: '\\' | '`' = '\\'): Expansion {
  const unresolved: string[] = [];
  const used: string[] = [];
  const lookup = (name: string): string | undefined => (Object.prototype.hasOwnProperty.call(vars, name) ? vars[name] : undefined);
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (c === escape && text[i + 1] === '$') {
      out += '$';
      i++;
      continue;
    }
    if (c !== '$') {
      out += c;
      continue;
    }
    if (text[i + 1] === '{') {
      const close = text.indexOf('}', i + 2);
      if (close < 0) {
        out += text.slice(i);
        break;
      }
      const body = text.slice(i + 2, close);
      const m = /^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+])([\s\S]*))?$/.exec(body);
      if (!m) {
        out += text.slice(i, close + 1);
        i = close;
        continue;
      }
      const name = m[1] as string;
      used.push(name);
      const value = lookup(name);
      const op = m[2];
      const word = m[3] ?? '';
      if (op === ':-' || op === '-') out += value === undefined || (op === ':-' && value === '') ? expandVariables(word, vars, escape).value : value;
      else if (op === ':+' || op === '+') out += value === undefined || (op === ':+' && value === '') ? '' : expandVariables(word, vars, escape).value;
      else {
        if (value === undefined) unresolved.push(name);
        out += value ?? '';
      }
      i = close;
      continue;
    }
    const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i + 1));
    if (!m) {
      out += c;
      continue;
    }
    used.push(m[0]);
    const value = lookup(m[0]);
    if (value === undefined) unresolved.push(m[0]);
    out += value ?? '';
    i += m[0].length;
  }
  return { value: out, unresolved, used };
}

/** Substitute build variables in a FROM image with the given values (global ARG defaults + build args). */
export function resolveFrom(fromImage: string, args: Record<string, string | undefined>): string {
  return expandVariables(fromImage, args).value;
}

export interface Stage {
  /** 0-based stage index. */
  index: number;
  line: number;
  /** The image as written, e.g. ${HARBOR_REGISTRY}/library/python:3.12-slim. */
  image: string;
  /** `AS name`, lower-cased as the builder compares it. */
  name: string | undefined;
  /** `--platform=` flag as written. */
  platform: string | undefined;
  /** Instructions of the stage after its FROM. */
  instructions: Instruction[];
}

/** Build stages (one per FROM). A FROM with a missing image yields image ''. */
export function stages(parsed: ParsedDockerfile): Stage[] {
  const out: Stage[] = [];
  let current: Stage | undefined;
  for (const ins of parsed.instructions) {
    if (ins.keyword === 'FROM') {
      const words = shellWords(ins.args, parsed.escape);
      const asIndex = words.findIndex((w) => w.toLowerCase() === 'as');
      current = {
        index: out.length,
        line: ins.line,
        image: words[0] ?? '',
        name: asIndex >= 0 ? words[asIndex + 1]?.toLowerCase() : undefined,
        platform: flagValue(ins, 'platform'),
        instructions: [],
      };
      out.push(current);
    } else if (current) current.instructions.push(ins);
  }
  return out;
}

export interface CopySource {
  instruction: Instruction;
  /** COPY or ADD. */
  keyword: string;
  /** Source paths as written, relative to the context (unless fromStage/fromImage or a URL). */
  sources: string[];
  destination: string | undefined;
  /** `--from=` value: a stage name/index or an image; sources are then not from the context. */
  from: string | undefined;
  /** Shell operators (||, &&, ;, |) written on the line: COPY runs no shell, so they are file names. */
  shellOperators: string[];
}

/**
 * The sources of every COPY/ADD. Sources of instructions with `--from=` are listed but marked with
 * `from` (they come from a stage or an image, not from the build context). Words after a shell
 * operator are dropped (see `shellOperators`).
 */
export function copySources(parsed: ParsedDockerfile): CopySource[] {
  const out: CopySource[] = [];
  for (const ins of parsed.instructions) {
    if (ins.keyword !== 'COPY' && ins.keyword !== 'ADD') continue;
    if (ins.heredocs.length > 0) continue;
    let words = ins.json ?? shellWords(ins.args, parsed.escape);
    const shellOperators: string[] = [];
    if (!ins.json) {
      const cut = words.findIndex((w) => w === '||' || w === '&&' || w === ';' || w === '|');
      if (cut >= 0) {
        shellOperators.push(...words.slice(cut).filter((w) => w === '||' || w === '&&' || w === ';' || w === '|'));
        words = words.slice(0, cut);
      }
    }
    out.push({
      instruction: ins,
      keyword: ins.keyword,
      sources: words.slice(0, -1),
      destination: words.length > 0 ? words[words.length - 1] : undefined,
      from: flagValue(ins, 'from'),
      shellOperators,
    });
  }
  return out;
}

/** ADD sources that are fetched rather than read from the context. */
export function isRemoteSource(source: string): boolean {
  return /^(https?|git):\/\//i.test(source) || /^git@/.test(source);
}
