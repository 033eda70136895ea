import { readFileSync } from 'node:fs';
import { load } from 'js-yaml';
import { parseRerankerConfig } from '../../../operator/crd/parse.ts';
import type { RerankerConfig, RerankerConfigObject } from '../../../operator/crd/spec.ts';
import type { Images } from '../../../operator/planner.ts';

export function readExample(name: string): RerankerConfigObject {
  return load(readFileSync(new URL(`../../../crds/examples/${name}.yaml`, import.meta.url), 'utf8')) as RerankerConfigObject;
}

/** An example as the apiserver would hand it to the operator: with a uid and a generation. */
export function example(name: string, uid = `uid-${name}`): RerankerConfig {
  const object = readExample(name);
  return parseRerankerConfig({ ...object, metadata: { ...object.metadata, uid, generation: 1 } });
}

export const IMAGES: Images = { server: 'ghcr.io/rerank-dev/rerank-server:0.1.0' };
