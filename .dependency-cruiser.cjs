// Import rules of lib/ (checked by test/architecture.test.js): no cycles, and a folder imports
// only the folders before it in LAYERS, so data flows one way (build -> publish -> register).
// The generated option types are the schemas' contract and may be used by every layer.
const LAYERS = ['core', 'options', 'http', 'kube', 'registry', 'source', 'engine', 'harbor', 'build', 'publish', 'register', 'pipeline', 'adapters'];

const forbidden = [
  { name: 'no-circular', comment: 'An import cycle: break it by moving the shared piece down a layer.', severity: 'error', from: { path: '^lib/' }, to: { circular: true } },
  {
    name: 'known-layer',
    comment: `Every module of lib/ (but lib/index.ts) lives in one of the layers: ${LAYERS.join(', ')}.`,
    severity: 'error',
    from: { path: '^lib/', pathNot: [`^lib/(${LAYERS.join('|')})/`, '^lib/index\\.ts$'] },
    to: {},
  },
];
LAYERS.forEach((layer, i) => {
  const later = LAYERS.slice(i + 1);
  if (later.length === 0) return;
  forbidden.push({
    name: `${layer}-imports-up`,
    comment: `lib/${layer}/ may import only ${LAYERS.slice(0, i).join(', ') || 'itself'} (the layers below it), not ${later.join(', ')}.`,
    severity: 'error',
    from: { path: `^lib/${layer}/` },
    to: { path: `^lib/(${later.join('|')})/`, pathNot: '^lib/options/generated/' },
  });
});

module.exports = {
  forbidden,
  options: {
    doNotFollow: { path: 'node_modules' },
    includeOnly: '^lib/',
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    moduleSystems: ['es6'],
  },
};
