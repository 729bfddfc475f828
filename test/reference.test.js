// Image reference parsing follows the Docker CLI's normalisation (distribution/reference).
import t from 'tap';
import { parseReference, withDefaultTag, formatReference, isLoopbackRegistry, isValidTag, registryHost } from '../dist/lib/registry/reference.js';
import { ThinkubeImageError } from '../dist/lib/core/errors.js';

const D = 'sha256:' + 'a'.repeat(64);

t.test('parseReference normalises like docker', async (t) => {
  const table = [
    ['busybox', { registry: 'docker.io', repository: 'library/busybox' }],
    ['busybox:1.36', { registry: 'docker.io', repository: 'library/busybox', tag: '1.36' }],
    ['docker.io/busybox', { registry: 'docker.io', repository: 'library/busybox' }],
    ['index.docker.io/busybox', { registry: 'docker.io', repository: 'library/busybox' }],
    ['jupyter/base-notebook:lab', { registry: 'docker.io', repository: 'jupyter/base-notebook', tag: 'lab' }],
    ['library/busybox', { registry: 'docker.io', repository: 'library/busybox' }],
    ['localhost/foo', { registry: 'localhost', repository: 'foo' }],
    ['localhost:5000/foo:v1', { registry: 'localhost:5000', repository: 'foo', tag: 'v1' }],
    ['localhost:5000/a/b/c', { registry: 'localhost:5000', repository: 'a/b/c' }],
    ['harbor.example.com/library/jupyter-ml-cpu:latest', { registry: 'harbor.example.com', repository: 'library/jupyter-ml-cpu', tag: 'latest' }],
    ['harbor.example.com:8443/thinkube/x__y.z-w:V1_0.a-b', { registry: 'harbor.example.com:8443', repository: 'thinkube/x__y.z-w', tag: 'V1_0.a-b' }],
    ['127.0.0.1:5000/foo', { registry: '127.0.0.1:5000', repository: 'foo' }],
    ['[::1]:5000/foo:tag', { registry: '[::1]:5000', repository: 'foo', tag: 'tag' }],
    [`busybox@${D}`, { registry: 'docker.io', repository: 'library/busybox', digest: D }],
    [`reg.io/a/b:t@${D}`, { registry: 'reg.io', repository: 'a/b', tag: 't', digest: D }],
    // A first component without '.', ':' or 'localhost' is a path, not a host (Docker Hub user).
    ['myhost/foo', { registry: 'docker.io', repository: 'myhost/foo' }],
    // Uppercase in the first component marks a host too (Docker's rule).
    ['MyHost/foo', { registry: 'MyHost', repository: 'foo' }],
    // "localhost:5000" alone is the Hub image localhost with tag 5000, as in Docker.
    ['localhost:5000', { registry: 'docker.io', repository: 'library/localhost', tag: '5000' }],
    ['foo:' + 'x'.repeat(128), { registry: 'docker.io', repository: 'library/foo', tag: 'x'.repeat(128) }],
  ];
  for (const [input, expected] of table) t.strictSame(parseReference(input), expected, input);
});

t.test('invalid references throw ERR_INVALID_OPTIONS naming the reference', async (t) => {
  const bad = [
    '',
    'UPPERCASE',
    'localhost:5000/Foo',
    'harbor.example.com/Library/x',
    'foo:.tag',
    'foo:-tag',
    'foo:' + 'x'.repeat(129),
    'foo:ta/g',
    'foo@sha256:abc',
    `foo@md5:${'a'.repeat(32)}`,
    'foo bar',
    'harbor.example.com/',
    'foo//bar',
    'foo/-bar',
    'bad_host.com:99999/foo',
    'a..b/c',
    'harbor.example.com/a/b:',
  ];
  for (const ref of bad) {
    let error;
    try {
      parseReference(ref);
    } catch (e) {
      error = e;
    }
    t.ok(error instanceof ThinkubeImageError, `${JSON.stringify(ref)} throws`);
    t.equal(error?.code, 'ERR_INVALID_OPTIONS', `${JSON.stringify(ref)} code`);
    if (ref) t.match(error?.message, ref.slice(0, 40), `${JSON.stringify(ref)} named in message`);
    t.ok(error?.hint, 'has a hint');
  }
});

t.test('withDefaultTag adds latest only when there is neither tag nor digest', async (t) => {
  t.equal(withDefaultTag(parseReference('busybox')).tag, 'latest');
  t.equal(withDefaultTag(parseReference('busybox:1')).tag, '1');
  t.equal(withDefaultTag(parseReference(`busybox@${D}`)).tag, undefined);
  const ref = parseReference('busybox');
  withDefaultTag(ref);
  t.equal(ref.tag, undefined, 'input is not modified');
});

t.test('formatReference gives the fully qualified form and round-trips', async (t) => {
  t.equal(formatReference(parseReference('busybox')), 'docker.io/library/busybox');
  t.equal(formatReference(withDefaultTag(parseReference('localhost:5000/a/b'))), 'localhost:5000/a/b:latest');
  for (const s of ['harbor.example.com/library/x:1', `localhost:5000/a@${D}`, `reg.io/a/b:t@${D}`, '[::1]:5000/foo:tag']) {
    t.equal(formatReference(parseReference(s)), s);
    t.strictSame(parseReference(formatReference(parseReference(s))), parseReference(s));
  }
});

t.test('isLoopbackRegistry', async (t) => {
  const yes = ['localhost', 'localhost:5000', 'LOCALHOST:1', '127.0.0.1', '127.0.0.1:5000', '127.1.2.3:80', '127.255.255.255', '[::1]', '[::1]:5000', '::1'];
  const no = ['harbor.example.com', 'harbor.example.com:443', '128.0.0.1', '10.0.0.1:5000', '127.0.0.256', '127.0.0', 'localhost.example.com', 'mylocalhost:5000', '[::2]:5000', '0.0.0.0'];
  for (const h of yes) t.equal(isLoopbackRegistry(h), true, h);
  for (const h of no) t.equal(isLoopbackRegistry(h), false, h);
});

t.test('tag grammar and host helper', async (t) => {
  for (const tag of ['a', '_', '1.0', 'A_b-c.d', 'x'.repeat(128)]) t.ok(isValidTag(tag), tag);
  for (const tag of ['', '.a', '-a', 'x'.repeat(129), 'a/b', 'a:b', 'a b']) t.notOk(isValidTag(tag), JSON.stringify(tag));
  t.equal(registryHost('harbor.example.com:8443'), 'harbor.example.com');
  t.equal(registryHost('[::1]:5000'), '[::1]');
  t.equal(registryHost('harbor.example.com'), 'harbor.example.com');
});
