/**
 * Hot-reload benchmark: config changes under live traffic.
 *
 *   npm run bench:reload [-- --reloads 100 --toggles 50 --split-requests 10000 --clients 16]
 *
 * Serves two generated tiny models from a config in a kubelet-style ConfigMap directory, with 16 clients
 * sending traffic throughout, and measures:
 * 1. `reloads` knob changes, each published by an atomic `..data` swap: time from the write to the
 *    server reporting the new hash on GET /config/hash (p50/p99), and failed requests.
 * 2. `toggles` enable/disable cycles of the second version: RSS before and after (no leaked sessions),
 *    from an RSS settled under traffic, and the same time again with no cycles as the control.
 * 3. The weighted split over `split-requests` requests at 70/30: observed share vs configured.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { dump as toYaml } from 'js-yaml';
import { generateModel } from '../server/modelgen/index.ts';
import { KubeletVolume } from './kube-volume.ts';
import { freePort, rssMb } from './process.ts';
import { fmt, percentile } from './stats.ts';
import { Targets } from './targets.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values: args } = parseArgs({
  options: {
    reloads: { type: 'string', default: '100' },
    toggles: { type: 'string', default: '50' },
    'split-requests': { type: 'string', default: '10000' },
    clients: { type: 'string', default: '16' },
  },
});

interface Knobs {
  topK?: number;
  b: { enabled: boolean; weight: number };
}

function configText(models: { a: string; b: string }, knobs: Knobs): string {
  return toYaml({
    defaultVersion: 'a',
    versions: {
      a: { model: models.a, weight: 100 - knobs.b.weight },
      b: { model: models.b, enabled: knobs.b.enabled, weight: knobs.b.weight },
    },
    serving: { ...(knobs.topK === undefined ? {} : { topK: knobs.topK }), logLevel: 'warn' },
  });
}



const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Samples every 5 s until three samples in a row are within 1 % of the first of them (at most 180 s). */
async function settle(sample: () => Promise<number>): Promise<{ seconds: number; from: number; to: number }> {
  const started = performance.now();
  const from = await sample();
  let previous = from;
  let anchor = from;
  let steady = 0;
  while (steady < 3 && performance.now() - started < 180_000) {
    await sleep(5000);
    previous = await sample();
    if (Math.abs(previous - anchor) / anchor < 0.01) steady += 1;
    else {
      anchor = previous;
      steady = 0;
    }
  }
  return { seconds: (performance.now() - started) / 1000, from, to: previous };
}

async function main(): Promise<void> {
  const targets = new Targets();
  const work = await mkdtemp(path.join(os.tmpdir(), 'rerank-reload-bench-'));
  const a = await generateModel({ shape: 'tiny', seed: 1, outDir: path.join(work, 'model-a') });
  const b = await generateModel({ shape: 'tiny', seed: 2, outDir: path.join(work, 'model-b') });
  const models = { a: a.dir, b: b.dir };
  const volume = new KubeletVolume(path.join(work, 'config'));
  await volume.publish(configText(models, { b: { enabled: true, weight: 0 } }));

  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const server = spawn(process.execPath, [path.join(root, 'server/cli/main.ts'), 'start', '--config', volume.file, '--port', String(port), '--host', '127.0.0.1'], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const pid = server.pid!;
  const configNow = async () => (await (await fetch(`${url}/config/hash`)).json()) as { hash: string; appliedAt: string };
  const hashNow = async () => (await configNow()).hash;
  const info = async () => (await (await fetch(`${url}/info`)).json()) as { versions: Array<{ name: string; state: string }>; liveSessions?: number; tokenizers?: unknown };

  const metric = (text: string, name: string) => Number(new RegExp(`^${name} (\\S+)`, 'm').exec(text)?.[1] ?? NaN) / 2 ** 20;
  const memory = async () => {
    const text = await (await fetch(`${url}/metrics`)).text();
    return [await rssMb(pid), metric(text, 'nodejs_heap_size_used_bytes'), metric(text, 'nodejs_external_memory_bytes')].map((v) => fmt(v)).join(' / ');
  };

  try {
    for (let i = 0; i < 600 && !(await fetch(`${url}/readyz`).then((r) => r.ok, () => false)); i += 1) await sleep(100);

    // Traffic throughout: clients loop until told to stop; every non-200 is a failed request.
    let stop = false;
    let sent = 0;
    let failed = 0;
    const statuses: Record<string, number> = {};
    const body = JSON.stringify({ query: 'what is a reranker', texts: ['a reranker scores pairs', 'bananas are yellow', 'kubernetes runs pods'] });
    const client = async () => {
      while (!stop) {
        const status = await fetch(`${url}/rerank`, { method: 'POST', headers: { 'content-type': 'application/json' }, body }).then(
          async (r) => (await r.arrayBuffer(), String(r.status)),
          () => 'error',
        );
        sent += 1;
        statuses[status] = (statuses[status] ?? 0) + 1;
        if (status !== '200') failed += 1;
      }
    };
    const clients = Array.from({ length: Number(args.clients) }, client);

    // 1. Knob reloads: write → in effect.
    // In effect = the server swapped the config (its `appliedAt`, same clock); seen = a client polling
    // GET /config/hash saw the new hash, which adds the poll's own wait behind the traffic.
    const applied: number[] = [];
    const seen: number[] = [];
    for (let i = 0; i < Number(args.reloads); i += 1) {
      const before = await hashNow();
      await volume.publish(configText(models, { topK: 1 + (i % 3), b: { enabled: true, weight: 0 } }));
      // Written = the atomic ..data rename has completed.
      const written = Date.now();
      const t0 = performance.now();
      let now = await configNow();
      while (now.hash === before) {
        await sleep(1);
        now = await configNow();
      }
      seen.push(performance.now() - t0);
      applied.push(Date.parse(now.appliedAt) - written);
      await sleep(20);
    }
    console.log(
      `reloads: ${applied.length}, write → in effect p50 ${fmt(percentile(applied, 50))} ms, p99 ${fmt(percentile(applied, 99))} ms ${targets.check('config write → in effect, p99', percentile(applied, 99), '<=', 50, ' ms')}; ` +
        `write → seen by a polling client p50 ${fmt(percentile(seen, 50))} ms, p99 ${fmt(percentile(seen, 99))} ms`,
    );

    // 2. Enable/disable cycles of version b.
    const waitState = async (state: string) => {
      for (let i = 0; i < 1000; i += 1) {
        if ((await info()).versions.find((v) => v.name === 'b')?.state === state) return;
        await sleep(5);
      }
      throw new Error(`version b never reached ${state}`);
    };
    // RSS under traffic climbs for a while after start (ORT arenas, JIT, sockets) whether or not versions
    // change, so the cycles start from a settled RSS, and the same time with no cycles is the control.
    const settled = await settle(() => rssMb(pid));
    const rssBefore = await rssMb(pid);
    const sessionsBefore = (await info()).liveSessions;
    const series = [`0: ${await memory()}`];
    const cyclesStarted = performance.now();
    for (let i = 0; i < Number(args.toggles); i += 1) {
      await volume.publish(configText(models, { b: { enabled: false, weight: 0 } }));
      await waitState('disabled');
      await volume.publish(configText(models, { b: { enabled: true, weight: 0 } }));
      await waitState('ready');
      if ((i + 1) % 10 === 0) series.push(`${i + 1}: ${await memory()}`);
    }
    const cyclesSeconds = (performance.now() - cyclesStarted) / 1000;
    const rssAfter = await rssMb(pid);
    const sessionsAfter = (await info()).liveSessions;
    const { tokenizers } = await info();
    await sleep(cyclesSeconds * 1000);
    const rssControl = await rssMb(pid);
    const change = (from: number, to: number) => `${fmt(from)} MB → ${fmt(to)} MB (${fmt(((to - from) / from) * 100)} %)`;
    console.log(`RSS under traffic settled in ${fmt(settled.seconds)} s: ${settled.from.toFixed(0)} → ${settled.to.toFixed(0)} MB`);
    console.log(`memory every 10 cycles (RSS / JS heap used / external, MB): ${series.join('; ')}`);
    console.log(
      `enable/disable cycles: ${args.toggles} in ${fmt(cyclesSeconds)} s, RSS ${change(rssBefore, rssAfter)} ${targets.check('RSS change over the enable/disable cycles', Math.abs(((rssAfter - rssBefore) / rssBefore) * 100), '<=', 10, ' %')}; ` +
        `the same time again with no cycles: ${change(rssAfter, rssControl)}; ` +
        `live ORT sessions ${sessionsBefore} → ${sessionsAfter}, parsed tokenizers ${JSON.stringify(tokenizers)}`,
    );
    stop = true;
    await Promise.all(clients);
    console.log(`traffic during reloads and cycles: ${sent} requests, ${failed} failed ${JSON.stringify(statuses)} ${targets.check('requests failed during reloads and cycles', failed, '<=', 0)}`);

    // 3. Weighted split 70/30.
    const unsplit = await hashNow();
    await volume.publish(configText(models, { b: { enabled: true, weight: 30 } }));
    while ((await hashNow()) === unsplit) await sleep(5);
    const total = Number(args['split-requests']);
    let next = 0;
    const counts: Record<string, number> = {};
    const splitClient = async () => {
      while (next < total) {
        next += 1;
        const response = await fetch(`${url}/rerank`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
        await response.arrayBuffer();
        const version = response.headers.get('x-rerank-version') ?? 'none';
        counts[version] = (counts[version] ?? 0) + 1;
      }
    };
    await Promise.all(Array.from({ length: Number(args.clients) }, splitClient));
    const shareB = ((counts.b ?? 0) / total) * 100;
    console.log(`weighted split over ${total} requests: a ${counts.a ?? 0}, b ${counts.b ?? 0} → b ${fmt(shareB, 2)} % vs 30 %, error ${fmt(Math.abs(shareB - 30), 2)} pp ${targets.check('weighted split error', Math.abs(shareB - 30), '<=', 1, ' pp')}`);
    targets.report();
  } finally {
    server.kill('SIGTERM');
    await once(server, 'exit');
    await rm(work, { recursive: true, force: true });
  }
}

await main();
