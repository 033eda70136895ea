import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { dump as toYaml } from 'js-yaml';
import type { ServingConfig } from '../server/config/schema.ts';
import type { Contender } from './contender.ts';
import { freePort } from './process.ts';
import { metricSum } from './stats.ts';
import type { RerankWorkloadRequest } from './workload.ts';

/**
 * `rerank-server start` in a child process serving one version of a model directory with the variant
 * asked for (`fp32`: model.onnx, `int8`: model_int8.onnx), driven over HTTP on loopback. Scores are the
 * raw logits (`raw_scores: true`); padding comes from the server's own metrics.
 */
export class ServerContender implements Contender {
  readonly name: string;
  readonly #child: ChildProcess;
  readonly #url: string;

  private constructor(name: string, child: ChildProcess, url: string) {
    this.name = name;
    this.#child = child;
    this.#url = url;
  }

  get pid(): number {
    return this.#child.pid as number;
  }

  static async start(options: { name: string; root: string; configFile: string; modelDir: string; variant: 'fp32' | 'int8'; serving: ServingConfig }): Promise<ServerContender> {
    await writeFile(options.configFile, toYaml({ defaultVersion: 'bench', versions: { bench: { model: options.modelDir, variant: options.variant } }, serving: options.serving }));
    const port = await freePort();
    const child = spawn(process.execPath, [path.join(options.root, 'server/cli/main.ts'), 'start', '--config', options.configFile, '--port', String(port), '--host', '127.0.0.1'], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const server = new ServerContender(options.name, child, `http://127.0.0.1:${port}`);
    // A benchmark stopped half-way (Ctrl-C, an error) leaves no server running.
    const killOnExit = () => child.kill('SIGTERM');
    process.once('exit', killOnExit);
    child.once('exit', () => process.off('exit', killOnExit));
    try {
      await server.#waitReady(180_000);
    } catch (error) {
      await server.close();
      throw error;
    }
    return server;
  }

  async #waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.#child.exitCode !== null) throw new Error(`${this.name}: rerank-server exited with code ${this.#child.exitCode} before it was ready`);
      if (await fetch(`${this.#url}/readyz`).then((r) => r.ok, () => false)) return;
      await sleep(200);
    }
    throw new Error(`${this.name}: not ready after ${timeoutMs} ms`);
  }

  /** What /info says the version runs (the variant chosen and its file), for the report. */
  async info(): Promise<unknown> {
    return fetch(`${this.#url}/info`).then((r) => r.json());
  }

  async score(request: RerankWorkloadRequest): Promise<Float32Array> {
    const response = await fetch(`${this.#url}/rerank`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: request.query, texts: request.documents, raw_scores: true }),
    });
    if (!response.ok) throw new Error(`${this.name}: /rerank answered ${response.status}: ${await response.text()}`);
    const results = (await response.json()) as Array<{ index: number; score: number }>;
    const logits = new Float32Array(request.documents.length);
    for (const { index, score } of results) logits[index] = score;
    return logits;
  }

  async padding(): Promise<{ slots: number; tokens: number }> {
    const text = await fetch(`${this.#url}/metrics`).then((r) => r.text());
    return { slots: metricSum(text, 'reranker_batch_tokens_sum'), tokens: metricSum(text, 'reranker_tokens_total') };
  }

  async close(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    const exited = once(this.#child, 'exit');
    this.#child.kill('SIGTERM');
    await exited;
  }
}
