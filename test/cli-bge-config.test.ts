import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { BGE_IMAGE_CONFIG } from './support/bge-config.ts';
import { layOutModel } from './support/model-layouts.ts';
import { scratchDir } from './support/models.ts';

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../server/cli/main.ts');
const run = promisify(execFile);

/** The BGE image's config.yaml with a folder per version beside it: v2-m3 split with model_cpu/, v1 flat, v2-gemma absent. */
async function bgeImageDir(): Promise<string> {
  const dir = await scratchDir('bge-image');
  await mkdir(dir, { recursive: true });
  await layOutModel(path.join(dir, 'v2-m3'), 'split', { cpu: true });
  await layOutModel(path.join(dir, 'v1'), 'flat');
  await writeFile(path.join(dir, 'config.yaml'), BGE_IMAGE_CONFIG);
  return dir;
}

describe('a config written for the BGE reranker image', () => {
  test('check-config accepts it and says, per version, whether its model files exist', async () => {
    const dir = await bgeImageDir();
    const { stdout } = await run(process.execPath, [cli, 'check-config', path.join(dir, 'config.yaml')]);
    assert.match(stdout, /: ok \(hash [0-9a-f]{16}; versions: v2-m3, v2-gemma \(disabled\), v1\)\n/);
    assert.match(stdout, /\n {2}v2-m3: model files found in .*v2-m3: model model\/model\.onnx, tokenizer tokenizer\/tokenizer\.json, CPU fallback model_cpu\/model\.onnx; head cross-encoder \(default\)\n/);
    assert.match(stdout, /\n {2}v2-gemma \(disabled\): model files MISSING: no model\.onnx in .*v2-gemma/);
    assert.match(stdout, /\n {2}v1: model files found in .*v1: model model\.onnx, tokenizer tokenizer\.json; head cross-encoder \(default\)\n/);
  });

  test('start serves it: POST /rerank/v1 {query, docs} is answered in the TEI shape', async () => {
    const dir = await bgeImageDir();
    const server = spawn(process.execPath, [cli, 'start', '--config', path.join(dir, 'config.yaml'), '--port', '0', '--host', '127.0.0.1'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        createInterface({ input: server.stdout! }).on('line', (line) => {
          const entry = JSON.parse(line) as Record<string, unknown>;
          if (entry.msg === 'listening') resolve(entry.url as string);
        });
        server.once('exit', (code) => reject(new Error(`server exited early (${code})`)));
      });
      for (let i = 0; i < 200 && !(await fetch(`${url}/readyz`)).ok; i += 1) await new Promise((r) => setTimeout(r, 50));
      const response = await fetch(`${url}/rerank/v1`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: 'what is a reranker?', docs: ['a reranker scores passages', 'bread'] }),
      });
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('x-rerank-version'), 'v1');
      const ranks = (await response.json()) as Array<{ index: number; score: number }>;
      assert.deepEqual(ranks.map((rank) => rank.index).sort(), [0, 1]);
      const info = (await (await fetch(`${url}/info`)).json()) as { versions: Array<{ name: string; state: string; fp16?: { applied: boolean; note: string } }> };
      const m3 = info.versions.find((v) => v.name === 'v2-m3');
      assert.equal(m3?.state, 'ready');
      assert.match(m3?.fp16?.note ?? '', /use_?[Ff]p16 does not apply on CPU/i);
    } finally {
      server.kill('SIGKILL');
    }
  });
});
