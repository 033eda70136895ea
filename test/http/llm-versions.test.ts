import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { PromptEncoder, PromptTokenizer } from '../../server/engine/prompt-encoder.ts';
import { resolveHead, type CausalLmHead } from '../../server/engine/prompt-template.ts';
import { generateDecoderModel, type GeneratedDecoder } from '../../server/modelgen/decoder-model.ts';
import { DecoderReference } from '../support/llm-reference.ts';
import { tinyModel } from '../support/models.ts';

/**
 * A cross-encoder version and an LLM-reranker version served side by side by a real `rerank-server start`
 * on loopback: the path, the X-Rerank-Version header and weights reach both, /info says which head and
 * graph form each runs, `compare` shows both columns, and a config reload switches a version between heads.
 */

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../server/cli/main.ts');
const run = promisify(execFile);
const QUERY = 'what is the giant panda?';
const DOCUMENTS = ['The giant panda is a bear species endemic to China.', 'hi', 'Pandas eat bamboo for most of the day, every day of the year.'];

let root: string;
let crossEncoderDir: string;
let qwen: GeneratedDecoder;
let gemmaFull: GeneratedDecoder;
let configFile: string;
let server: ChildProcess | undefined;
let url: string;

interface InfoVersion {
  name: string;
  state: string;
  error?: string;
  modelPath: string;
  head?: { type: string; template?: string; form?: string; yesTokenId?: number; noTokenId?: number; normalize?: string; source?: string };
}

async function writeConfig(versions: Record<string, unknown>, defaultVersion = 'ce'): Promise<void> {
  const temporary = `${configFile}.tmp`;
  await writeFile(temporary, JSON.stringify({ defaultVersion, versions, serving: { logLevel: 'info', maxLength: 256 } }));
  await rename(temporary, configFile);
}

async function info(): Promise<InfoVersion[]> {
  const response = await fetch(`${url}/info`);
  assert.equal(response.status, 200);
  return ((await response.json()) as { versions: InfoVersion[] }).versions;
}

async function rerank(pathname: string, headers: Record<string, string> = {}): Promise<{ version: string | null; scores: number[] }> {
  const response = await fetch(`${url}${pathname}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ query: QUERY, texts: DOCUMENTS, raw_scores: true }),
  });
  assert.equal(response.status, 200, await response.clone().text());
  const results = (await response.json()) as { index: number; score: number }[];
  const scores: number[] = [];
  for (const r of results) scores[r.index] = r.score;
  return { version: response.headers.get('x-rerank-version'), scores };
}

/** Polls until `check` holds (the server reloads its config on its own). */
async function until<T>(what: string, probe: () => Promise<T>, check: (value: T) => boolean): Promise<T> {
  let last: T | undefined;
  for (let i = 0; i < 300; i += 1) {
    last = await probe();
    if (check(last)) return last;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`timed out waiting for ${what}: last ${JSON.stringify(last)}`);
}

/** The raw scores the LLM version must give: yes − no (softmax heads) or yes (logit heads) at the last token, one prompt at a time. */
async function referenceScores(model: GeneratedDecoder, template: 'qwen3' | 'bge-gemma', instruction?: string): Promise<number[]> {
  const head = resolveHead({ type: 'causal-lm-yes-no', template, ...(instruction ? { instruction } : {}) }, undefined) as CausalLmHead;
  const encoder = await PromptEncoder.create(PromptTokenizer.load({ tokenizerPath: model.tokenizerPath }), head);
  const pairs = await encoder.encodePairs(QUERY, DOCUMENTS, { maxLength: 256 });
  const reference = await DecoderReference.load(model.modelPath);
  try {
    const scores: number[] = [];
    for (const pair of pairs) {
      const { yes, no } = await reference.yesNo(Array.from(pair.ids), model.yesTokenId, model.noTokenId);
      scores.push(head.normalize === 'softmax' ? yes - no : yes);
    }
    return scores;
  } finally {
    await reference.release();
  }
}

function assertClose(actual: readonly number[], expected: readonly number[], what: string): void {
  assert.equal(actual.length, expected.length, what);
  expected.forEach((value, i) => assert.ok(Math.abs((actual[i] as number) - value) <= 1e-4, `${what}: document ${i}: ${actual[i]} vs ${value}`));
}

before(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'rerank-llm-versions-'));
  crossEncoderDir = (await tinyModel()).dir;
  // The qwen3 version serves a prepared graph; its reference is the un-cut export of the same weights.
  qwen = await generateDecoderModel({ flavour: 'qwen3', form: 'prepared', outDir: path.join(root, 'qwen3') });
  gemmaFull = await generateDecoderModel({ flavour: 'gemma', outDir: path.join(root, 'gemma') });
  configFile = path.join(root, 'config.yaml');
  await writeConfig({
    ce: { model: crossEncoderDir, weight: 50 },
    llm: { model: qwen.dir, weight: 50, head: { type: 'causal-lm-yes-no', template: 'qwen3' } },
  });
  server = spawn(process.execPath, [cli, 'start', '--config', configFile, '--port', '0', '--host', '127.0.0.1', '--poll-interval', '100'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  url = await new Promise<string>((resolve, reject) => {
    createInterface({ input: server!.stdout! }).on('line', (line) => {
      const entry = JSON.parse(line) as Record<string, unknown>;
      if (entry.msg === 'listening') resolve(entry.url as string);
    });
    server!.once('exit', (code) => reject(new Error(`server exited early (${code})`)));
    setTimeout(() => reject(new Error('the server did not log "listening" within 60 s')), 60_000).unref();
  });
  await until('ready', () => fetch(`${url}/readyz`).then((r) => r.ok), (ok) => ok);
});

after(async () => {
  server?.kill('SIGKILL');
  await rm(root, { recursive: true, force: true });
});

describe('a cross-encoder version and an LLM-reranker version in one server', () => {
  it('both serve through /rerank/{version}, the header and the weights; the LLM version scores as the one-pair reference', async () => {
    const qwenFull = await generateDecoderModel({ flavour: 'qwen3', outDir: path.join(root, 'qwen3-full') });
    const expected = await referenceScores(qwenFull, 'qwen3');

    const byPath = await rerank('/rerank/llm');
    assert.equal(byPath.version, 'llm');
    assertClose(byPath.scores, expected, 'POST /rerank/llm');
    const byHeader = await rerank('/rerank', { 'X-Rerank-Version': 'llm' });
    assert.equal(byHeader.version, 'llm');
    assertClose(byHeader.scores, expected, 'X-Rerank-Version: llm');
    const crossEncoder = await rerank('/rerank/ce');
    assert.equal(crossEncoder.version, 'ce');
    assert.notDeepEqual(crossEncoder.scores, byPath.scores);

    const answered = new Set<string>();
    for (let i = 0; i < 40 && answered.size < 2; i += 1) answered.add((await rerank('/rerank')).version ?? '');
    assert.deepEqual([...answered].sort(), ['ce', 'llm'], 'weights 50/50 send unpinned traffic to both');
  });

  it('/info says which head and graph form each version runs', async () => {
    const versions = await info();
    const ce = versions.find((v) => v.name === 'ce');
    const llm = versions.find((v) => v.name === 'llm');
    assert.equal(ce?.head?.type, 'cross-encoder');
    assert.deepEqual(llm?.head, {
      type: 'causal-lm-yes-no',
      template: 'qwen3',
      form: 'prepared',
      yesTokenId: qwen.yesTokenId,
      noTokenId: qwen.noTokenId,
      normalize: 'softmax',
      paddingSide: 'left',
      source: 'config',
    });
  });

  it('compare shows both versions side by side', async () => {
    const { stdout } = await run(process.execPath, [cli, 'compare', '--url', url, '-q', QUERY, '-d', ...DOCUMENTS, '--versions', 'ce,llm']);
    const header = stdout.split('\n').find((line) => line.includes('DOCUMENT')) ?? '';
    assert.match(header, /\bce\b.*\bllm\b/, stdout);
    assert.equal(stdout.split('\n').filter((line) => /^\s*\d+\s/.test(line)).length, DOCUMENTS.length, stdout);
  });

  it('a reload switches a version between heads, and a head-only change (the instruction) reloads it too', async () => {
    // The cross-encoder version becomes an LLM reranker (un-cut gemma export, bge-gemma template)...
    await writeConfig({
      ce: { model: gemmaFull.dir, weight: 50, head: { type: 'causal-lm-yes-no', template: 'bge-gemma' } },
      llm: { model: qwen.dir, weight: 50, head: { type: 'causal-lm-yes-no', template: 'qwen3' } },
    });
    const switched = await until('ce on the causal-lm head', info, (v) => v.find((x) => x.name === 'ce')?.head?.type === 'causal-lm-yes-no' && v.find((x) => x.name === 'ce')?.state === 'ready');
    assert.deepEqual(switched.find((v) => v.name === 'ce')?.head?.form, 'full-vocabulary');
    assertClose((await rerank('/rerank/ce')).scores, await referenceScores(gemmaFull, 'bge-gemma'), 'ce as bge-gemma');

    // ...the LLM version's instruction changes (same model): its prompts, so its scores, change.
    const before = (await rerank('/rerank/llm')).scores;
    await writeConfig({
      ce: { model: gemmaFull.dir, weight: 50, head: { type: 'causal-lm-yes-no', template: 'bge-gemma' } },
      llm: { model: qwen.dir, weight: 50, head: { type: 'causal-lm-yes-no', template: 'qwen3', instruction: 'Judge passages about animals' } },
    });
    const qwenFull = path.join(root, 'qwen3-full');
    const expected = await referenceScores(await generateDecoderModel({ flavour: 'qwen3', outDir: qwenFull }), 'qwen3', 'Judge passages about animals');
    const after = await until('the new instruction', () => rerank('/rerank/llm'), (r) => Math.abs((r.scores[0] as number) - (before[0] as number)) > 1e-6);
    assertClose(after.scores, expected, 'llm with the new instruction');

    // A head whose template the tokenizer does not have fails the load, saying so; the serving session stays.
    await writeConfig({
      ce: { model: gemmaFull.dir, weight: 50, head: { type: 'causal-lm-yes-no', template: 'bge-gemma' } },
      llm: { model: qwen.dir, weight: 50, head: { type: 'causal-lm-yes-no', template: 'qwen3', yesToken: 'Absolutely' } },
    });
    const failed = await until('the failed load', info, (v) => v.find((x) => x.name === 'llm')?.error !== undefined);
    assert.match(failed.find((v) => v.name === 'llm')?.error ?? '', /the yes token "Absolutely" is not a token of the tokenizer/);
    assert.equal(failed.find((v) => v.name === 'llm')?.state, 'ready');
    assertClose((await rerank('/rerank/llm')).scores, expected, 'the previous session keeps serving');

    // ...and back to a cross-encoder.
    await writeConfig({
      ce: { model: crossEncoderDir, weight: 50 },
      llm: { model: qwen.dir, weight: 50, head: { type: 'causal-lm-yes-no', template: 'qwen3' } },
    });
    await until('ce back on the cross-encoder head', info, (v) => v.find((x) => x.name === 'ce')?.head?.type === 'cross-encoder' && v.find((x) => x.name === 'ce')?.state === 'ready');
    assert.equal((await rerank('/rerank/ce')).version, 'ce');
  });
});

describe('check-config and LLM heads', () => {
  it('says which head each version gets, and exits 1 when a template\'s tokens are not in the model\'s tokenizer', async () => {
    const file = path.join(root, 'check.yaml');
    const versions = {
      ce: { model: crossEncoderDir },
      gemma: { model: gemmaFull.dir, head: { type: 'causal-lm-yes-no', template: 'bge-gemma' } },
    };
    await writeFile(file, JSON.stringify({ defaultVersion: 'ce', versions }));
    const ok = await run(process.execPath, [cli, 'check-config', file]);
    assert.match(ok.stdout, /ce: .*head cross-encoder \(default\)/);
    assert.match(ok.stdout, new RegExp(`gemma: .*head causal-lm-yes-no: template bge-gemma \\(\\d+ tokens\\), yes "Yes"=${gemmaFull.yesTokenId}, no "No"=${gemmaFull.noTokenId}, normalize logit`));

    await writeFile(file, JSON.stringify({ defaultVersion: 'ce', versions: { ...versions, wrong: { model: gemmaFull.dir, head: { type: 'causal-lm-yes-no', template: 'qwen3' } } } }));
    await assert.rejects(run(process.execPath, [cli, 'check-config', file]), (error: { code: number; stdout: string; stderr: string }) => {
      assert.equal(error.code, 1);
      assert.match(error.stdout, /wrong: .*does NOT fit the tokenizer: head: template qwen3 writes <\|im_start\|>, <\|im_end\|>, which the tokenizer does not have/);
      assert.match(error.stderr, /the head of wrong does not fit its model's tokenizer/);
      return true;
    });
  });
});
