import { toStructuralSchema, type JsonSchemaProps } from './openapi.ts';
import { GROUP, KIND, PLURAL, RerankerConfigSpecSchema, RerankerConfigStatusSchema, VERSION } from './spec.ts';

export interface CustomResourceDefinition {
  apiVersion: 'apiextensions.k8s.io/v1';
  kind: 'CustomResourceDefinition';
  metadata: { name: string; labels?: Record<string, string> };
  spec: {
    group: string;
    scope: 'Namespaced';
    names: { kind: string; listKind: string; plural: string; singular: string; shortNames: string[]; categories: string[] };
    versions: Array<{
      name: string;
      served: boolean;
      storage: boolean;
      subresources: { status: Record<string, never> };
      additionalPrinterColumns: Array<{ name: string; type: string; jsonPath: string; description?: string; priority?: number }>;
      schema: { openAPIV3Schema: JsonSchemaProps };
    }>;
  };
}

export const CRD_NAME = `${PLURAL}.${GROUP}`;

/** The RerankerConfig CRD, built from the same zod schemas the operator validates specs with. */
export function buildCustomResourceDefinition(): CustomResourceDefinition {
  const openAPIV3Schema: JsonSchemaProps = {
    type: 'object',
    description: 'RerankerConfig: reranker versions, their routing and canary weights, and the serving knobs, as one resource.',
    properties: {
      apiVersion: { type: 'string' },
      kind: { type: 'string' },
      metadata: { type: 'object' },
      spec: toStructuralSchema(RerankerConfigSpecSchema),
      status: toStructuralSchema(RerankerConfigStatusSchema),
    },
    required: ['spec'],
  };
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: CRD_NAME, labels: { 'app.kubernetes.io/part-of': 'rerank-operator' } },
    spec: {
      group: GROUP,
      scope: 'Namespaced',
      names: {
        kind: KIND,
        listKind: `${KIND}List`,
        plural: PLURAL,
        singular: 'rerankerconfig',
        shortNames: ['rrc'],
        categories: ['rerank'],
      },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            { name: 'Versions', type: 'string', jsonPath: '.status.versionNames' },
            { name: 'Weights', type: 'string', jsonPath: '.status.weights', description: 'Weights in effect' },
            { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
            { name: 'Rollout', type: 'string', jsonPath: '.status.rollout.phase', description: 'Phase of the rollout of spec.rollout', priority: 1 },
            { name: 'Canary', type: 'integer', jsonPath: '.status.rollout.weight', description: "The rollout's canary weight in effect, percent", priority: 1 },
            { name: 'Config', type: 'string', jsonPath: '.status.configApplied', description: 'Ready pods running the current config', priority: 1 },
            { name: 'Config-Hash', type: 'string', jsonPath: '.status.configHash' },
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
          ],
          schema: { openAPIV3Schema },
        },
      ],
    },
  };
}
