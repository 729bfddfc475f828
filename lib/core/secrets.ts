/**
 * Secrets that arrive as build args. The classic builder records every build arg in the image
 * history, so a secret passed that way is readable by anyone who can pull the image: such args get
 * a warning, and their values are redacted from everything this tool prints (logs, events,
 * results, errors), like the fields the schemas mark x-secret.
 */
import { Redactor } from './redact.js';

/** Words that make a build arg name look like a secret when they are a whole part of it. */
const SECRET_WORDS = new Set(['PASSWORD', 'PASSWD', 'PASS', 'PWD', 'SECRET', 'SECRETS', 'TOKEN', 'TOKENS', 'KEY', 'KEYS', 'APIKEY', 'CREDENTIAL', 'CREDENTIALS', 'CREDS', 'AUTH', 'PRIVATE', 'PAT', 'PASSPHRASE']);
/** Longer words that count inside a part too: at its end (DBPASSWORD, APITOKEN) or before another such word (SECRETKEY). */
const SECRET_INFIXES = ['PASSWORD', 'PASSWD', 'SECRET', 'TOKEN', 'CREDENTIAL', 'APIKEY', 'PASSPHRASE'];

function secretPart(part: string): boolean {
  if (SECRET_WORDS.has(part)) return true;
  return SECRET_INFIXES.some((word) => part.endsWith(word) || (part.startsWith(word) && (SECRET_WORDS.has(part.slice(word.length)) || part === `${word}S`)));
}

/** True for names such as HF_TOKEN, DB_PASSWORD, awsSecretAccessKey, NPM_AUTH, api-key. */
export function looksLikeSecretName(name: string): boolean {
  const parts = name
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toUpperCase()
    .split(/[^A-Z0-9]+/)
    .filter(Boolean);
  return parts.some(secretPart);
}

/**
 * The commands refuse a secret shorter than this (the library takes any). Output is redacted by
 * replacing the secret wherever it occurs, so a short one would mask ordinary text (a 1-character
 * password masks that letter everywhere, digests included, and the masked places give it away by
 * context); 8 characters is also the least Harbor takes for a password.
 */
export const MIN_SECRET_LENGTH = 8;

/** user:password@ in a URL value (a private package index, a git remote). Bounded: linear on any input. */
const URL_CREDENTIALS = /[a-z][a-z0-9+.-]{0,31}:\/\/([^/\s:@]{1,256}):([^/\s@]{1,256})@/gi;

export interface BuildArgSecrets {
  /** Names of the build args whose values are treated as secrets. */
  names: string[];
  /** One warning per secret-looking build arg: it ends up in the image history. */
  warnings: string[];
  /** Redacts the secret values (and URL passwords found in any build arg). */
  redactor: Redactor;
  /** Every secret value found: the arg it is in, and whether it is the password of a URL in it. */
  values: Array<{ name: string; value: string; inUrl: boolean }>;
}

/**
 * Which build args carry secrets: those named in `declared` (secretBuildArgs), those whose name
 * looks like a secret, and passwords inside URLs. `redactor` is extended when given.
 */
export function buildArgSecrets(buildArgs: Record<string, string> | undefined, declared: readonly string[] = [], redactor: Redactor = new Redactor()): BuildArgSecrets {
  const names: string[] = [];
  const warnings: string[] = [];
  const values: BuildArgSecrets['values'] = [];
  for (const [name, value] of Object.entries(buildArgs ?? {})) {
    if (typeof value !== 'string') continue;
    const inUrl = [...value.matchAll(URL_CREDENTIALS)];
    for (const match of inUrl) {
      redactor.add(match[2], match[1]);
      values.push({ name, value: match[2] as string, inUrl: true });
    }
    // A name that only looks like a secret's with a short value (USE_AUTH=1, TOKEN_TTL=60) is a
    // setting, not a secret: warned about, not masked everywhere nor refused.
    const guessedSetting = !declared.includes(name) && value.length < MIN_SECRET_LENGTH;
    if (declared.includes(name) || looksLikeSecretName(name)) {
      names.push(name);
      if (!guessedSetting) {
        redactor.add(value);
        if (value !== '') values.push({ name, value, inUrl: false });
      }
      warnings.push(
        `Build arg ${name} looks like a secret: build args are recorded in the image history (docker history --no-trunc shows them to anyone who can pull the image). Do not bake secrets into images: give them to the container at run time (environment variable or mounted file)`,
      );
    } else if (inUrl.length > 0) {
      warnings.push(`Build arg ${name} holds a URL with a password in it, which is recorded in the image history: use a URL without credentials and give them at run time`);
    }
  }
  return { names, warnings, redactor, values };
}
