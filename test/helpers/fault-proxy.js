// A fault-injecting proxy on 127.0.0.1 between a client and a real server (registry, thinkube-control
// stand-in, or dockerd's unix socket). Two modes:
//   - 'tcp': bytes are piped as they are; faults: delay, pause (stall), cut a connection after N
//     bytes, refuse new connections, stop/start (a restart of the service as the client sees it).
//   - 'http': requests are forwarded one by one (keep-alive, chunked bodies, Host header kept, so a
//     registry's Location headers keep pointing at the proxy); besides the TCP faults, the first N
//     requests matching a method/path can be answered 503/429 (with Retry-After) or cut mid-body.
// Everything the proxy did is counted in `stats` and `log`, so tests can prove a fault happened.
import http from 'node:http';
import net from 'node:net';

/** 'localhost:5000' | 'unix:///path.sock' | { host, port } | { path } -> net.connect options. */
function targetOptions(target) {
  if (typeof target === 'string') {
    if (target.startsWith('unix://')) return { path: target.slice('unix://'.length) };
    const url = new URL(target.includes('://') ? target : `tcp://${target}`);
    return { host: url.hostname === 'localhost' ? '127.0.0.1' : url.hostname, port: Number(url.port) };
  }
  return target;
}

const matches = (rule, method, path) =>
  (!rule.method || rule.method === method) && (!rule.path || (rule.path instanceof RegExp ? rule.path.test(path) : path.includes(rule.path)));

export async function startFaultProxy({ target, mode = 'tcp', port = 0 } = {}) {
  const upstream = targetOptions(target);
  const sockets = new Set();
  const stats = { connections: 0, refused: 0, cuts: 0, injected: 0, requests: 0, bytesUp: 0, bytesDown: 0 };
  /** One entry per HTTP request (http mode): { method, path, status, injected?, cut? }. */
  const log = [];
  const faults = { delayMs: 0, paused: false, refuse: false, cut: [], http: [] };
  const waiters = new Set();

  const track = (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
  };
  const cutAll = () => {
    for (const s of sockets) s.destroy();
  };
  /** Resolves when data may flow (not paused), after the configured delay. */
  const gate = async () => {
    while (faults.paused) await new Promise((resolve) => waiters.add(resolve));
    if (faults.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, faults.delayMs));
  };

  /** Forward `from` -> `to`, counting bytes; honours pause/delay and the byte-count cut rules. */
  function forward(from, to, direction, connection) {
    let chain = Promise.resolve();
    from.on('data', (chunk) => {
      from.pause();
      chain = chain.then(async () => {
        await gate();
        if (to.destroyed) return;
        connection.bytes[direction] += chunk.length;
        stats[direction === 'up' ? 'bytesUp' : 'bytesDown'] += chunk.length;
        const rule = connection.cutRule;
        if (rule && (rule.direction ?? 'up') === direction && connection.bytes[direction] >= rule.afterBytes) {
          // Forward only what fits under the limit, then cut both sides like a dropped link.
          const keep = chunk.length - (connection.bytes[direction] - rule.afterBytes);
          if (keep > 0) to.write(chunk.subarray(0, keep));
          stats.cuts++;
          connection.client.destroy();
          connection.server?.destroy();
          return;
        }
        to.write(chunk);
        from.resume();
      });
    });
    from.on('end', () => {
      chain = chain.then(() => to.end());
    });
  }

  /** The cut rule the next connection gets (rules with `times` are consumed one per connection). */
  function takeCutRule() {
    const rule = faults.cut.find((r) => r.times > 0);
    if (!rule) return undefined;
    rule.times--;
    return rule;
  }

  function onTcpConnection(client) {
    track(client);
    if (faults.refuse) {
      stats.refused++;
      client.destroy();
      return;
    }
    stats.connections++;
    const server = net.connect(upstream);
    track(server);
    const connection = { client, server, bytes: { up: 0, down: 0 }, cutRule: takeCutRule() };
    server.on('error', () => client.destroy());
    client.on('error', () => server.destroy());
    client.on('close', () => server.destroy());
    server.on('close', () => client.destroy());
    forward(client, server, 'up', connection);
    forward(server, client, 'down', connection);
  }

  // ---------------------------------------------------------------- http mode
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  function takeHttpRule(method, path) {
    const rule = faults.http.find((r) => r.times > 0 && matches(r, method, path));
    if (!rule) return undefined;
    rule.times--;
    return rule;
  }

  async function onHttpRequest(req, res) {
    stats.requests++;
    const path = req.url;
    const entry = { method: req.method, path, status: 0 };
    log.push(entry);
    await gate();
    const rule = takeHttpRule(req.method, path);
    if (rule && rule.status) {
      // Answer without telling the server: the request was never processed.
      stats.injected++;
      entry.injected = true;
      entry.status = rule.status;
      req.resume();
      req.on('end', () => {
        const headers = { 'content-type': 'application/json', ...(rule.retryAfter === undefined ? {} : { 'retry-after': String(rule.retryAfter) }) };
        const body = JSON.stringify({ errors: [{ code: rule.status === 429 ? 'TOOMANYREQUESTS' : 'UNAVAILABLE', message: rule.message ?? (rule.status === 429 ? 'too many requests' : 'service unavailable') }] });
        res.writeHead(rule.status, { ...headers, 'content-length': Buffer.byteLength(body) });
        res.end(body);
      });
      return;
    }
    const upstreamReq = http.request({ ...upstream, agent, method: req.method, path, headers: req.headers });
    let sent = 0;
    upstreamReq.on('response', (upRes) => {
      entry.status = upRes.statusCode;
      res.writeHead(upRes.statusCode, upRes.rawHeaders);
      upRes.on('data', (chunk) => {
        stats.bytesDown += chunk.length;
        res.write(chunk);
      });
      upRes.on('end', () => res.end());
      upRes.on('error', () => res.destroy());
    });
    upstreamReq.on('error', () => {
      if (!res.headersSent) {
        entry.status = 502;
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end('upstream failed');
      } else res.destroy();
    });
    req.on('data', (chunk) => {
      // Chunks already buffered can still arrive after the cut: it counts once.
      if (entry.cut) return;
      sent += chunk.length;
      stats.bytesUp += chunk.length;
      if (rule?.cutAfterBytes !== undefined && sent >= rule.cutAfterBytes) {
        // A connection dropped in the middle of the request body.
        stats.cuts++;
        entry.cut = true;
        upstreamReq.destroy();
        req.socket.destroy();
        return;
      }
      upstreamReq.write(chunk);
    });
    req.on('end', () => {
      if (rule?.cutAfterBytes !== undefined && !entry.cut) {
        // Body smaller than the limit: cut before the answer instead.
        stats.cuts++;
        entry.cut = true;
        upstreamReq.destroy();
        req.socket.destroy();
        return;
      }
      upstreamReq.end();
    });
    req.on('error', () => upstreamReq.destroy());
  }

  let server;
  let listeningPort = port;
  async function start() {
    if (server) return;
    if (mode === 'http') {
      server = http.createServer((req, res) => {
        onHttpRequest(req, res).catch(() => res.destroy());
      });
      server.keepAliveTimeout = 30_000;
      server.on('connection', (socket) => {
        track(socket);
        if (faults.refuse) {
          stats.refused++;
          socket.destroy();
          return;
        }
        stats.connections++;
        const rule = takeCutRule();
        if (rule) {
          let bytes = 0;
          socket.on('data', (chunk) => {
            bytes += chunk.length;
            if (bytes >= rule.afterBytes) {
              stats.cuts++;
              socket.destroy();
            }
          });
        }
      });
    } else {
      server = net.createServer(onTcpConnection);
    }
    await new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(listeningPort, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    listeningPort = server.address().port;
  }
  async function stop() {
    if (!server) return;
    const closing = server;
    server = undefined;
    cutAll();
    await new Promise((resolve) => closing.close(() => resolve()));
  }
  await start();

  return {
    get port() {
      return listeningPort;
    },
    /** host:port as a registry address (dockerd treats localhost:* as a plain-HTTP registry). */
    get address() {
      return `localhost:${listeningPort}`;
    },
    get url() {
      return `http://127.0.0.1:${listeningPort}`;
    },
    stats,
    log,
    /** Delay every chunk (tcp) or request (http) by ms. */
    delay(ms) {
      faults.delayMs = ms;
    },
    /** Stop forwarding data (a stalled peer) until resume(). */
    pause() {
      faults.paused = true;
    },
    resume() {
      faults.paused = false;
      for (const wake of waiters) wake();
      waiters.clear();
    },
    /** Cut the next `times` connections after `afterBytes` bytes (direction 'up' = client to server; tcp mode). */
    cutAfter(afterBytes, { times = 1, direction = 'up' } = {}) {
      faults.cut.push({ afterBytes, times, direction });
    },
    /**
     * http mode: the next `times` requests matching method/path are answered `status` (503, 429...)
     * without reaching the server, or, with cutAfterBytes, forwarded and cut after that many body bytes.
     */
    failRequests({ method, path, times = 1, status, retryAfter, message, cutAfterBytes } = {}) {
      faults.http.push({ method, path, times, status: cutAfterBytes === undefined ? (status ?? 503) : undefined, retryAfter, message, cutAfterBytes });
    },
    /** Refuse (close at once) new connections while on. */
    refuse(on = true) {
      faults.refuse = on;
    },
    /** Remove every fault. */
    clear() {
      faults.delayMs = 0;
      faults.refuse = false;
      faults.cut = [];
      faults.http = [];
      this.resume();
    },
    /** Drop every open connection now. */
    cutAll,
    stop,
    start,
    /** Drop everything, stay down for downMs, listen again on the same port. */
    async restart(downMs = 0) {
      await stop();
      if (downMs > 0) await new Promise((resolve) => setTimeout(resolve, downMs));
      await start();
    },
    async close() {
      this.resume();
      await stop();
      agent.destroy();
    },
  };
}
