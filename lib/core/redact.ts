/**
 * Last line of defence for secrets: every value the caller marked secret (schema x-secret fields)
 * is replaced wherever it appears in output, including common encodings of it (base64 of
 * user:password as in Basic auth and Docker's auth entries, base64url JSON as in X-Registry-Auth).
 * Every non-empty secret counts, however short: a short one masks ordinary text too (which is why
 * the commands refuse secrets shorter than MIN_SECRET_LENGTH), but it is never printed.
 */
export const REDACTED = '********';

export class Redactor {
  private readonly needles = new Set<string>();

  add(secret: string | undefined, username?: string): this {
    if (!secret) return this;
    this.needles.add(secret);
    this.needles.add(JSON.stringify(secret).slice(1, -1));
    this.needles.add(encodeURIComponent(secret));
    if (username) {
      const basic = Buffer.from(`${username}:${secret}`);
      this.needles.add(basic.toString('base64'));
      this.needles.add(basic.toString('base64url'));
    }
    return this;
  }

  get size(): number {
    return this.needles.size;
  }

  redact(text: string): string {
    let out = text;
    // Longest first, so that an encoding containing the plain secret is replaced whole.
    for (const needle of [...this.needles].sort((a, b) => b.length - a.length)) {
      if (needle) out = out.split(needle).join(REDACTED);
    }
    return out;
  }

  /**
   * Deep copy of a JSON value with every secret replaced in its strings and keys. String by
   * string, so that the copy stays valid JSON whatever the secret holds (a quote, a brace).
   */
  redactValue<T>(value: T): T {
    if (this.needles.size === 0) return value;
    const walk = (node: unknown): unknown => {
      if (typeof node === 'string') return this.redact(node);
      if (Array.isArray(node)) return node.map(walk);
      if (node === null || typeof node !== 'object') return node;
      const out: Record<string, unknown> = {};
      // defineProperty: a key such as __proto__ stays a plain key.
      for (const [key, item] of Object.entries(node)) Object.defineProperty(out, this.redact(key), { value: walk(item), enumerable: true, writable: true, configurable: true });
      return out;
    };
    return walk(JSON.parse(JSON.stringify(value) ?? 'null')) as T;
  }
}
