// labelInstruction (lib/build/build.ts): the labels of a build as one LABEL line for dockerd's
// classic builder, which otherwise spends a step (a container commit) per label; or undefined
// when the line could not say exactly what the request labels say.
import t from 'tap';
import { labelInstruction } from '../dist/lib/build/build.js';

t.test('sorted, single-quoted values: no escapes, no variable expansion', async (t) => {
  t.equal(
    labelInstruction({ 'org.opencontainers.image.title': 'My image', 'io.thinkube.custom-images.input-digest': 'sha256:ab', 'com.example/x': '$HOME \\ "q"' }, 'FROM x\n'),
    `LABEL com.example/x='$HOME \\ "q"' io.thinkube.custom-images.input-digest='sha256:ab' org.opencontainers.image.title='My image'`,
  );
  t.equal(labelInstruction({ a: '' }, 'FROM x'), "LABEL a=''", 'an empty value; a Dockerfile without a final newline');
});

t.test('undefined where one line would not say the same: the request keeps its labels', async (t) => {
  t.equal(labelInstruction({}, 'FROM x\n'), undefined, 'no labels');
  t.equal(labelInstruction({ a: "it's" }, 'FROM x\n'), undefined, 'a single quote in a value');
  t.equal(labelInstruction({ a: 'two\nlines' }, 'FROM x\n'), undefined, 'a line break in a value');
  t.equal(labelInstruction({ 'a b': '1' }, 'FROM x\n'), undefined, 'a key with a space');
  t.equal(labelInstruction({ '-a': '1' }, 'FROM x\n'), undefined, 'a key starting with a dash');
  t.equal(labelInstruction({ a: '1' }, 'FROM x\nRUN echo \\\n'), undefined, 'a Dockerfile ending in a line continuation');
  t.equal(labelInstruction({ a: '1' }, '# escape=`\nFROM x\nRUN echo `\n  \n'), undefined, 'or in a backtick continuation');
});
