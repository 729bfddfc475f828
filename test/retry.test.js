// The shared retry rules and the secret heuristics, in-process: backoff with jitter inside its
// bounds, the budget's count and time limits, which push errors are worth another try, and which
// build arg names look like secrets. (Retry-After and retries over HTTP: test/http.test.js.)
import t from 'tap';
import { RetryBudget, backoffDelay, retrySettings } from '../dist/lib/core/retry.js';
import { transientPushError } from '../dist/lib/engine/push.js';
import { buildArgSecrets, looksLikeSecretName } from '../dist/lib/core/secrets.js';
import { virtualClock } from './helpers/virtual-clock.js';

t.test('backoff doubles, is capped, and jitters upward by at most 25%', async (t) => {
  const settings = { initialDelayMs: 1000, maxDelayMs: 10_000 };
  t.equal(backoffDelay(0, settings, () => 0), 1000);
  t.equal(backoffDelay(0, settings, () => 1), 1250);
  t.equal(backoffDelay(2, settings, () => 0), 4000);
  t.equal(backoffDelay(10, settings, () => 1), 10_000, 'never above maxDelayMs');
  const delays = Array.from({ length: 200 }, () => backoffDelay(1, settings));
  t.ok(delays.every((d) => d >= 2000 && d <= 2500), 'jittered within [2 s, 2.5 s]');
  t.ok(new Set(delays).size > 20, 'and actually spread');
});

t.test('the budget: count, total time, too long a Retry-After; each retry reported', async (t) => {
  const events = [];
  const budget = new RetryBudget('GET http://x/', retrySettings({ limit: 2, initialDelaySeconds: 0.01 }, { limit: 9, maxTotalMs: 60_000, initialDelayMs: 5000, maxDelayMs: 1000 }), { onRetry: (e) => events.push(e) });
  t.equal(await budget.wait('HTTP 503'), true);
  t.equal(await budget.wait('ECONNRESET'), true);
  t.equal(await budget.wait('HTTP 503'), false, 'limit 2 from the options wins over the default 9');
  t.match(budget.exhausted, /gave up after 2 retries/);
  t.same(events.map((e) => [e.type, e.operation, e.attempt, e.reason]), [['retry', 'GET http://x/', 1, 'HTTP 503'], ['retry', 'GET http://x/', 2, 'ECONNRESET']]);

  const slow = new RetryBudget('op', { limit: 5, maxTotalMs: 1000, initialDelayMs: 800, maxDelayMs: 60_000 });
  t.equal(await slow.wait('x'), true);
  t.equal(await slow.wait('x'), false, 'a second wait would pass the total time');
  t.match(slow.exhausted, /1 s retry time budget is spent/);

  const polite = new RetryBudget('op', { limit: 5, maxTotalMs: 600_000, initialDelayMs: 10, maxDelayMs: 1000, maxRetryAfterMs: 2000 });
  t.equal(polite.next(3000), undefined, 'Retry-After beyond the limit: no retry');
  t.match(polite.exhausted, /asked to retry after 3 s/);
  t.equal(polite.next(1500), 1500, 'a Retry-After is waited as asked, no jitter');

  const controller = new AbortController();
  const aborted = new RetryBudget('op', { limit: 5, maxTotalMs: 600_000, initialDelayMs: 10_000, maxDelayMs: 10_000 }, { signal: controller.signal });
  setTimeout(() => controller.abort(), 50);
  await t.rejects(aborted.wait('x'), { name: 'AbortError' }, 'the wait ends with the signal');
});

t.test('a wait lasts the delay it reports: the backoff, or the Retry-After as asked (virtual clock)', async (t) => {
  const clock = virtualClock(t);
  const events = [];
  const budget = new RetryBudget('op', { limit: 3, maxTotalMs: 600_000, initialDelayMs: 1000, maxDelayMs: 60_000 }, { onRetry: (e) => events.push(e) });
  const waited = async (reason, retryAfterMs) => {
    const from = clock.now();
    t.equal(await clock.run(budget.wait(reason, retryAfterMs)), true, `${reason}: retried`);
    return clock.now() - from;
  };
  t.equal(await waited('HTTP 429', 1500), 1500, 'a Retry-After of 1.5 s: woken after exactly 1.5 s');
  const backoff = await waited('HTTP 503');
  t.equal(backoff, events[1].delayMs, 'a backoff: woken after exactly the delay the retry event announced');
  t.ok(backoff >= 2000 && backoff <= 2500, `the second retry backs off 2 s plus jitter (${backoff} ms)`);

  let done = false;
  budget.wait('ECONNRESET').then(() => (done = true));
  await clock.tick(events[2].delayMs - 1);
  t.equal(done, false, 'not a millisecond early');
  await clock.tick(1);
  t.equal(done, true);
});

t.test('push errors from the engine: transient ones are retried, permanent ones never', async (t) => {
  const transient = {
    'received unexpected HTTP status: 503 Service Unavailable': 'HTTP 503 Service Unavailable',
    'received unexpected HTTP status: 502 Bad Gateway': 'HTTP 502 Bad Gateway',
    'toomanyrequests: rate limit exceeded': 'HTTP 429 (rate limited)',
    'Patch "http://r/v2/x/blobs/uploads/1": EOF': 'connection closed (EOF)',
    'read tcp 127.0.0.1:1->127.0.0.1:2: read: connection reset by peer': 'connection reset',
    'dial tcp 127.0.0.1:5000: connect: connection refused': 'connection refused',
    'net/http: TLS handshake timeout': 'timeout',
    'write tcp 1->2: write: broken pipe': 'broken pipe',
  };
  for (const [message, reason] of Object.entries(transient)) t.equal(transientPushError(message), reason, message);
  for (const message of [
    'unauthorized: authentication required',
    'denied: requested access to the resource is denied',
    'quota exceeded: adding 10 MiB exceeds the limit',
    'tag does not exist: x:1',
    'x509: certificate signed by unknown authority',
    'dial tcp: lookup nohost: no such host',
    'manifest invalid: manifest invalid',
  ]) {
    t.equal(transientPushError(message), undefined, `never retried: ${message}`);
  }
});

t.test('build arg names that look like secrets', async (t) => {
  for (const name of ['HF_TOKEN', 'GITHUB_TOKEN', 'DB_PASSWORD', 'AWS_SECRET_ACCESS_KEY', 'apiKey', 'api-key', 'NPM_AUTH', 'SSH_PRIVATE_KEY', 'DBPASSWORD', 'MY_APITOKEN', 'registry_credentials', 'GPG_PASSPHRASE', 'SECRETKEY', 'MYSECRET']) {
    t.ok(looksLikeSecretName(name), name);
  }
  for (const name of ['HARBOR_REGISTRY', 'PYTHON_VERSION', 'KEYBOARD_LAYOUT', 'MONKEY', 'PASSTHROUGH_MODE', 'AUTHOR', 'BASE_IMAGE', 'TOKENIZER_MODEL']) {
    t.notOk(looksLikeSecretName(name), name);
  }
  const found = buildArgSecrets({ HF_TOKEN: 'hf_abcdef', PIP_INDEX_URL: 'https://bob:s3cr3t-pw@pypi.example.com/simple', PLAIN: 'visible', MINE: 'declared-value' }, ['MINE']);
  t.same(found.names.sort(), ['HF_TOKEN', 'MINE']);
  t.equal(found.warnings.length, 3, 'two secret args and one URL with a password');
  const redacted = found.redactor.redact('hf_abcdef https://bob:s3cr3t-pw@pypi.example.com declared-value visible');
  t.equal(redacted, '******** https://bob:********@pypi.example.com ******** visible');
  // Hostile input (1 MB values) is handled correctly; how fast is bench/micro.js's business.
  const big = buildArgSecrets({ BIG: 'a'.repeat(1 << 20), URLS: 'a://'.repeat(200_000), HF_TOKEN: 'x'.repeat(1 << 20) });
  t.same(big.names, ['HF_TOKEN'], 'only the secret-looking name, not the 1 MB values');
  t.equal(big.redactor.redact(`${'x'.repeat(1 << 20)} and ${'a'.repeat(64)}`), `******** and ${'a'.repeat(64)}`, 'a 1 MB secret is redacted whole');
});
