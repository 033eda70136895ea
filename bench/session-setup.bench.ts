/**
 * Session set-up: load time and first-request latency of an ORT session, with and without the saved
 * optimised graph (server/engine/optimized-model.ts), for the float32 and the int8 export:
 *
 *   npm run bench:session [-- --repeats 3 --shape minilm-l6]
 *
 * For each export, `repeats` times in turn: `off` (RERANK_ORT_CACHE_DIR=off: optimise at every load),
 * `save` (no saved graph: optimise and save it), `reuse` (read the saved graph, optimisations off). Each
 * load is followed by one request-sized run (8 pairs of ~200 tokens): its time is the first-request latency.
 * Medians are printed side by side; nothing is held to a target (the figures depend on the disk cache and
 * on the machine's load).
 */
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { OnnxSession } from '../server/engine/onnx-model.ts';
import { optimizedFilePath, optimizedModelSettings } from '../server/engine/optimized-model.ts';
import type { EncodedPair } from '../server/engine/pair-tokenizer.ts';
import { ensureModel, type ModelShape } from '../server/modelgen/index.ts';
import { percentile, fmt } from './stats.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values: args } = parseArgs({ options: { shape: { type: 'string', default: 'minilm-l6' }, repeats: { type: 'string', default: '3' } } });
const repeats = Number(args.repeats);

type Mode = 'off' | 'save' | 'reuse';

async function measure(modelPath: string, mode: Mode, pairs: EncodedPair[]): Promise<{ loadMs: number; firstMs: number; state: string }> {
  const saved = await optimizedFilePath(modelPath, 'cpu', optimizedModelSettings());
  if (mode === 'save' && saved) await rm(saved, { force: true });
  if (mode === 'off') process.env.RERANK_ORT_CACHE_DIR = 'off';
  else delete process.env.RERANK_ORT_CACHE_DIR;
  const started = performance.now();
  const session = await OnnxSession.load({ modelPath, device: 'cpu', padId: 0 });
  const loadMs = performance.now() - started;
  const first = performance.now();
  await session.run(pairs);
  const firstMs = performance.now() - first;
  await session.release();
  return { loadMs, firstMs, state: session.description.optimized?.state ?? 'none' };
}

async function main(): Promise<void> {
  const modelDir = path.join(root, '.bench', 'models', args.shape as string);
  await ensureModel({ shape: args.shape as ModelShape, outDir: modelDir, quantize: true });
  const pairs: EncodedPair[] = Array.from({ length: 8 }, (_, i) => {
    const length = 180 + i * 6;
    const ids = Int32Array.from({ length }, (_, j) => (j === 0 ? 101 : j === length - 1 ? 102 : 1000 + ((i * 31 + j * 7) % 20000)));
    return { ids, typeIds: new Uint8Array(length), length };
  });
  console.log(`model: ${args.shape}; ${repeats} repeats of each mode; medians (load ms / first request ms)`);
  for (const file of ['model.onnx', 'model_int8.onnx']) {
    const modelPath = path.join(modelDir, file);
    const results: Record<Mode, Array<{ loadMs: number; firstMs: number }>> = { off: [], save: [], reuse: [] };
    for (let i = 0; i < repeats; i += 1) {
      for (const mode of ['off', 'save', 'reuse'] as const) {
        const r = await measure(modelPath, mode, pairs);
        if (mode === 'reuse' && r.state !== 'reused') throw new Error(`${file}: expected a reused graph, got ${r.state}`);
        results[mode].push(r);
      }
    }
    const median = (mode: Mode, key: 'loadMs' | 'firstMs') => percentile(results[mode].map((r) => r[key]), 50);
    const line = (['off', 'save', 'reuse'] as const).map((m) => `${m} ${fmt(median(m, 'loadMs'), 0)} / ${fmt(median(m, 'firstMs'), 0)}`).join(', ');
    console.log(`${file}: ${line}; load reuse ÷ off ${fmt(median('reuse', 'loadMs') / median('off', 'loadMs'), 2)}`);
  }
}

await main();
