/**
 * One attempt of an HTTP exchange on Node's own node:http / node:https (issue 15: got and its
 * dependencies cost ~200 ms of every process start; these modules ~20 ms). What HttpClient needs
 * and nothing more: a time limit on the whole attempt (connect, send, answer, body), cancellation,
 * the answer buffered, gzip/deflate/br/zstd decoded on request, redirects followed on request (the
 * rules got 14 applied: a 303 becomes a GET without body, other codes keep method and body;
 * Authorization and Cookie are dropped when the redirect leaves the origin). Connections are kept
 * alive and reused through Node's global agents (keepAlive by default since Node 19). Every
 * failure is a plain Error with a code: nothing in it refers to the request's headers.
 */
import type * as http from 'node:http';
import type * as https from 'node:https';
import { promisify } from 'node:util';

// Node's modules through process.getBuiltinModule when first used, not `import`: an ES import of
// node:http reads every export, and Node 24's http exports WebSocket and co. as getters that load
// undici (~80 ms); https (TLS, crypto) and zlib load only for a request that needs them.
const httpModule = (secure: boolean): typeof http | typeof https => process.getBuiltinModule(secure ? 'node:https' : 'node:http');
const zlib = (): typeof import('node:zlib') => process.getBuiltinModule('node:zlib');

export interface TransportRequest {
  method: string;
  url: URL;
  /** Lower-case names. */
  headers: Record<string, string>;
  body?: Buffer | undefined;
  /** Time limit of the attempt, redirects and the body included. */
  timeoutMs: number;
  /** Decode the body by its content-encoding (and ask for one). */
  decompress: boolean;
  /** TLS options of https requests (rejectUnauthorized, ca; cert and key for a client certificate). */
  tls: https.RequestOptions;
  /** A unix socket to send to instead of the URL's host (a container engine's API). */
  socketPath?: string | undefined;
  followRedirect: boolean;
  /** Called before a redirect is followed; throw to refuse it (the attempt rejects with what was thrown). */
  beforeRedirect?: ((next: URL) => void) | undefined;
  signal?: AbortSignal | undefined;
}

export interface TransportResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** Where the answer came from (after redirects). */
  url: URL;
}

export const MAX_REDIRECTS = 10;
const REDIRECT_CODES = new Set([300, 301, 302, 303, 304, 307, 308]);

type Decoder = (data: Buffer) => Promise<Buffer>;
/** The content-encodings decoded, as got (decompress-response) did; zstd where this Node has it (22.15+). */
const DECODERS: Record<string, Decoder> = {
  gzip: (data) => promisify(zlib().unzip)(data),
  // A zlib-wrapped deflate stream (RFC 1950 header: method 8, check bits), or (what some servers send) a raw one.
  deflate: (data) => (data.length >= 2 && (data[0]! & 0x0f) === 8 && ((data[0]! << 8) | data[1]!) % 31 === 0 ? promisify(zlib().unzip)(data) : promisify(zlib().inflateRaw)(data)),
  br: (data) => promisify(zlib().brotliDecompress)(data),
  ...(process.versions.zstd ? { zstd: (data: Buffer) => promisify(zlib().zstdDecompress)(data) } : {}),
};
/** The accept-encoding sent when decompressing (got's: what can be decoded). */
export const ACCEPT_ENCODING = Object.keys(DECODERS).join(', ');

/** A named failure with a code, like Node's own socket errors. */
function failure(name: string, code: string, message: string): Error {
  return Object.assign(new Error(message), { name, code });
}

/** The attempt's time limit ran out (code ETIMEDOUT like got's; errors.ts tells it from a socket's by name). */
export function timeoutError(ms: number): Error {
  return failure('TimeoutError', 'ETIMEDOUT', `Timeout: no complete answer within ${ms} ms`);
}

function abortError(): Error {
  return failure('AbortError', 'ERR_ABORTED', 'The request was cancelled');
}

/** The answer to a request: for a redirect, not followed. */
async function hop(req: TransportRequest, deadline: number): Promise<TransportResponse> {
  const { url, method } = req;
  if (req.signal?.aborted) throw abortError();
  const secure = url.protocol === 'https:';
  const options: https.RequestOptions = {
    method,
    headers: req.body !== undefined ? { ...req.headers, 'content-length': String(req.body.length) } : req.headers,
    ...(secure ? req.tls : {}),
    ...(req.socketPath ? { socketPath: req.socketPath } : {}),
  };
  return new Promise<TransportResponse>((resolve, reject) => {
    let settled = false;
    let response: http.IncomingMessage | undefined;
    const request = httpModule(secure).request(url, options);
    /** True the first time: the attempt is over (its timer and abort listener gone). */
    const settle = (): boolean => {
      if (settled) return false;
      settled = true;
      clearTimeout(timer);
      req.signal?.removeEventListener('abort', onAbort);
      return true;
    };
    const stop = (error: Error): void => {
      if (!settle()) return;
      response?.destroy();
      request.destroy();
      reject(error);
    };
    const ms = Math.max(0, deadline - Date.now());
    const timer = setTimeout(() => stop(timeoutError(req.timeoutMs)), ms);
    const onAbort = (): void => stop(abortError());
    req.signal?.addEventListener('abort', onAbort, { once: true });
    request.on('error', (error) => stop(error));
    request.on('response', (res) => {
      response = res;
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', (error) => stop(error));
      res.on('end', () => {
        if (settled) return;
        const body = Buffer.concat(chunks);
        const encoding = (res.headers['content-encoding'] ?? '').toLowerCase();
        const decoder = DECODERS[encoding];
        const status = res.statusCode ?? 0;
        // Bodies that cannot exist (HEAD, 1xx, 204, 205, 304) or are empty are not decoded.
        const noBody = method === 'HEAD' || status < 200 || status === 204 || status === 205 || status === 304 || body.length === 0;
        if (!req.decompress || !decoder || noBody || (req.followRedirect && REDIRECT_CODES.has(status) && res.headers.location)) {
          if (settle()) resolve({ status, headers: res.headers, body, url });
          return;
        }
        decoder(body).then(
          (decoded) => {
            if (!settle()) return;
            // As got did: the headers describe the decoded body.
            const headers = { ...res.headers };
            delete headers['content-encoding'];
            delete headers['content-length'];
            resolve({ status, headers, body: decoded, url });
          },
          (error: Error) => stop(error),
        );
      });
    });
    request.end(req.body);
  });
}

/** One attempt: the request, and the redirects it is told to follow. */
export async function exchange(req: TransportRequest): Promise<TransportResponse> {
  const deadline = Date.now() + req.timeoutMs;
  let current: TransportRequest = req.decompress && req.headers['accept-encoding'] === undefined ? { ...req, headers: { ...req.headers, 'accept-encoding': ACCEPT_ENCODING } } : req;
  for (let redirects = 0; ; redirects++) {
    const response = await hop(current, deadline);
    const location = response.headers.location;
    if (!current.followRedirect || !location || !REDIRECT_CODES.has(response.status)) return response;
    if (redirects >= MAX_REDIRECTS) throw failure('MaxRedirectsError', 'ERR_TOO_MANY_REDIRECTS', `Redirected ${MAX_REDIRECTS} times. Aborting.`);
    // Location as bytes read as UTF-8 (what got did), relative to where the answer came from.
    const next = new URL(Buffer.from(location, 'binary').toString(), current.url);
    const headers = { ...current.headers };
    let { method, body } = current;
    // 303: the server asks for a GET. 301/302 keep the method and body (got 14's default, no method rewriting).
    if (response.status === 303 && method !== 'GET' && method !== 'HEAD') {
      method = 'GET';
      body = undefined;
      delete headers['content-length'];
      delete headers['content-type'];
    }
    // Another origin (host or port): the credentials and cookies were meant for this one only.
    if (next.hostname !== current.url.hostname || next.port !== current.url.port) {
      delete headers.authorization;
      delete headers.cookie;
      delete headers.host;
    }
    current.beforeRedirect?.(next);
    current = { ...current, method, url: next, headers, body };
  }
}
