import { dump } from 'js-yaml';
import { configHash } from '../../server/config/load.ts';
import type { HeadConfig } from '../../server/config/head.ts';
import { RerankConfigSchema, type RerankConfigInput } from '../../server/config/schema.ts';
import { RouterConfigSchema } from '../../server/config/router-schema.ts';
import type { RerankerConfig, VersionSpec } from '../crd/spec.ts';
import { MODELS_DIR, SERVER_PORT, names, type Pool } from '../names.ts';
import { mirrorInEffect } from '../rollout/mirror.ts';
import { catalogueHeadForSource } from './catalogue-heads.ts';
import { servingPool, type WeightPlan } from '../weights.ts';

export interface RenderedFile {
  key: string;
  text: string;
  /** configHash of the file as the server will load it: what its pods report on GET /config/hash. */
  hash: string;
}

export interface RenderedConfig {
  /** config.yaml (every version, weights in effect: what the router serves), then one file per version pool. */
  files: RenderedFile[];
  /** The hash the pods of each (version, pool) must report. Keys: names.versionConfigKey. */
  hashByKey: Record<string, string>;
  fullHash: string;
}

/** A spec the server's own schema refuses; a terminal error (retrying will not help). */
export class PlanError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PlanError';
  }
}

/**
 * Render the serving config through the server's RerankConfigSchema: what the operator writes is what
 * the server would accept, defaults filled, and its hash is the one the pods will compute.
 */
export function renderServingConfig(rrc: RerankerConfig, weights: WeightPlan): RenderedConfig {
  const { spec } = rrc;
  const full: RerankConfigInput = {
    defaultVersion: spec.defaultVersion,
    versions: Object.fromEntries(
      spec.versions.map((v) => [v.name, versionEntry(v, 'gpu', v.enabled ? (weights.versions[v.name]?.weight ?? 0) : 0)]),
    ),
    serving: spec.serving,
  };
  const files = [render(names.fullConfigKey, full)];
  for (const version of spec.versions.filter((v) => v.enabled)) {
    for (const pool of poolsOf(version)) {
      files.push(
        render(names.versionConfigKey(version.name, pool), {
          defaultVersion: version.name,
          versions: { [version.name]: versionEntry(version, pool, 100) },
          serving: spec.serving,
        }),
      );
    }
  }
  const upstreams = Object.fromEntries(
    spec.versions
      .filter((v) => v.enabled)
      .map((v) => [v.name, `http://${names.service(rrc.metadata.name, v.name, servingPool(weights, v.name))}.${rrc.metadata.namespace}.svc:${SERVER_PORT}`]),
  );
  // While a rollout's step runs in router mode with a ranking gate, the router mirrors stable's requests to the canary.
  const mirror = spec.routing.mode === 'router' ? mirrorInEffect(spec) : undefined;
  const router = RouterConfigSchema.parse({ router: { headerName: spec.routing.headerName, upstreams, ...(mirror ? { mirror } : {}) } });
  files.push({ key: names.routerConfigKey, text: dump(router, { sortKeys: true, lineWidth: -1 }), hash: '' });
  return {
    files,
    hashByKey: Object.fromEntries(files.filter((f) => f.hash !== '').map((f) => [f.key, f.hash])),
    fullHash: files[0]!.hash,
  };
}

/** The pools a version runs: its main pods, plus CPU fallback pods when asked for. */
export function poolsOf(version: VersionSpec): Pool[] {
  return version.cpuFallback && version.cpuFallback.replicas > 0 && gpuCount(version) > 0 ? ['gpu', 'cpu'] : ['gpu'];
}

export function gpuCount(version: VersionSpec): number {
  return version.resources?.gpu?.count ?? 0;
}

function versionEntry(version: VersionSpec, pool: Pool, weight: number): NonNullable<RerankConfigInput['versions']>[string] {
  const onGpu = pool === 'gpu' && gpuCount(version) > 0;
  return {
    enabled: version.enabled,
    description: version.description,
    model: `${MODELS_DIR}/${version.name}`,
    device: onGpu ? 'cuda' : 'cpu',
    weight,
    fallbackToCpu: true,
    variant: version.variant,
    ...(version.gpuMemoryThresholdMb !== undefined ? { gpuMemoryThresholdMb: version.gpuMemoryThresholdMb } : {}),
    ...headOf(version),
    ...(version.faults ? { faults: version.faults } : {}),
  };
}

/**
 * The version's head: its own, else the catalogue's for an hf:// source the catalogue knows. The model lands
 * in a directory named like the version, so the server could not find it in the catalogue by itself.
 */
function headOf(version: VersionSpec): { head?: HeadConfig } {
  const head = version.head ?? catalogueHeadForSource(version.model.source);
  return head === undefined ? {} : { head };
}

function render(key: string, input: RerankConfigInput): RenderedFile {
  const parsed = RerankConfigSchema.safeParse(input);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new PlanError(`render ${key}: the server's config schema refuses it: ${issues}`);
  }
  return { key, text: dump(parsed.data, { sortKeys: true, lineWidth: -1 }), hash: configHash(parsed.data) };
}
