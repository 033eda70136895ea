import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));

test('git ignores model directories (an export to models/<name>, the local stand-in) but keeps the catalogue', () => {
  const ignored = (path: string) => {
    try {
      execFileSync('git', ['check-ignore', '-q', '--no-index', path], { cwd: root });
      return true;
    } catch {
      return false;
    }
  };
  assert.equal(ignored('models/bge-reranker-v2-m3/model.onnx'), true);
  assert.equal(ignored('models/local/tiny/model.onnx'), true);
  assert.equal(ignored('models/catalog.yaml'), false);
});
