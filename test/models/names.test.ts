import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { formatSize, parseSize, PullBudget } from '../../server/models/limits.ts';
import { fileNameProblem, joinInside, relativePathProblem } from '../../server/models/names.ts';

describe('the name check every pulled file goes through', () => {
  test('plain file names pass; anything that is a path, hidden in a path, or unprintable does not', () => {
    for (const good of ['model.onnx', 'tokenizer.json', 'model.onnx_data', '.archive.json', 'a b', 'модель.onnx', '..x', 'x..']) {
      assert.equal(fileNameProblem(good), undefined, good);
    }
    const bad: Array<[string, RegExp]> = [
      ['', /empty/], ['.', /is "\."/], ['..', /is "\.\."/], ['../../evil', /"\/"/], ['a\\b', /backslash/],
      ['model\0.onnx', /control/], ['a\nb', /control/], ['C:evil', /drive letter/], ['x'.repeat(256), /255 bytes/],
    ];
    for (const [name, problem] of bad) assert.match(fileNameProblem(name) ?? '', problem, JSON.stringify(name));
  });

  test('relative paths: each part a plain name; joinInside refuses what would leave the directory', () => {
    assert.equal(relativePathProblem('onnx/model.onnx'), undefined);
    for (const bad of ['', '/etc/passwd', 'a//b', './x', 'onnx/../../x', 'a/', 'a\\b']) assert.ok(relativePathProblem(bad), bad);
    assert.equal(joinInside('/models/m', 'onnx/model.onnx', 'src'), '/models/m/onnx/model.onnx');
    assert.throws(() => joinInside('/models/m', '../x', 'src'), /src: "\.\.\/x" has a part that is "\.\."; refusing to write it/);
  });
});

describe('sizes of the limits', () => {
  test('parseSize reads byte counts and units (KB: 1000, KiB: 1024); nonsense and zero are refused', () => {
    const cases: Array<[string, number]> = [['1048576', 1048576], ['500MB', 500e6], ['20GiB', 20 * 1024 ** 3], ['1.5 GB', 1.5e9], ['4 mib', 4 * 1024 ** 2], ['2k', 2000]];
    for (const [text, bytes] of cases) assert.equal(parseSize(text), bytes, text);
    for (const bad of ['', 'lots', '10 XB', '-1', '0', '1e3']) assert.throws(() => parseSize(bad), RangeError, bad);
  });

  test('formatSize gives a limit in the unit it was set in, other figures in powers of 1000', () => {
    assert.equal(formatSize(20 * 1024 ** 3), '20 GiB');
    assert.equal(formatSize(1400 * 1024), '1.4 MB');
    assert.equal(formatSize(300_000), '300.0 KB');
    assert.equal(formatSize(12), '12 B');
  });

  test('a budget refuses limits that are not above zero, naming the flag', () => {
    assert.throws(() => new PullBudget({ maxPullBytes: 0 }), /--max-pull-bytes: 0 is not a size above zero/);
  });
});
