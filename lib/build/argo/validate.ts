/**
 * The rendered Workflow checked before anything sees it: against Argo's Workflow schema and
 * Kubernetes' schemas for its pod parts (containers, volumes), both from the pinned
 * @kubernetes-models packages, plus unknown fields: those validators ignore a field they do not
 * know, where Argo and the API server (strict decoding) reject it.
 */
import { Workflow } from '@kubernetes-models/argo-workflows/argoproj.io/v1alpha1/Workflow';
import { Container } from 'kubernetes-models/v1/Container';
import { Volume } from 'kubernetes-models/v1/Volume';
import { ThinkubeImageError } from '../../core/errors.js';
import { WORKFLOW_ROOT, WORKFLOW_SHAPES, type FieldNode } from './generated/workflow-fields.js';
import type { IWorkflow } from './workflow.js';

function schemaProblems(validate: () => void): string[] {
  try {
    validate();
    return [];
  } catch (error) {
    return (error instanceof Error ? error.message : String(error)).split(/, (?=data)/);
  }
}

function unknownFields(value: unknown, node: FieldNode, at: string, out: string[]): void {
  if (node === 0 || value === null || typeof value !== 'object') return;
  if (typeof node === 'object') {
    if (Array.isArray(value)) value.forEach((item, i) => unknownFields(item, node.i, `${at}/${i}`, out));
    return;
  }
  const shape = WORKFLOW_SHAPES[node];
  // A wrong type is the schema's to report.
  if (!shape || Array.isArray(value)) return;
  for (const [key, child] of Object.entries(value as Record<string, unknown>)) {
    const known = shape.f[key];
    if (known !== undefined) unknownFields(child, known, `${at}/${key}`, out);
    else if (shape.v !== undefined) unknownFields(child, shape.v, `${at}/${key}`, out);
    else out.push(`${at}/${key} is not a field Argo or Kubernetes knows`);
  }
}

/** Every problem of a Workflow document, each naming its path (data/spec/templates/1/...); [] when valid. */
export function workflowProblems(doc: unknown): string[] {
  const problems = schemaProblems(() => new Workflow(doc as IWorkflow).validate());
  const templates = (doc as IWorkflow | undefined)?.spec?.templates ?? [];
  if (Array.isArray(templates)) {
    templates.forEach((template, i) => {
      if (template?.container) problems.push(...schemaProblems(() => new Container(template.container).validate()).map((p) => p.replace(/^data/, `data/spec/templates/${i}/container`)));
    });
  }
  const volumes = (doc as IWorkflow | undefined)?.spec?.volumes ?? [];
  if (Array.isArray(volumes)) volumes.forEach((volume, i) => problems.push(...schemaProblems(() => new Volume(volume).validate()).map((p) => p.replace(/^data/, `data/spec/volumes/${i}`))));
  unknownFields(doc, WORKFLOW_ROOT, 'data', problems);
  return [...new Set(problems)];
}

/** Throws ERR_WORKFLOW listing the problems of an invalid Workflow. */
export function validateWorkflow(doc: unknown): void {
  const problems = workflowProblems(doc);
  if (problems.length === 0) return;
  throw new ThinkubeImageError('ERR_WORKFLOW', `The rendered Workflow is not valid for Argo/Kubernetes: ${problems.slice(0, 10).join('; ')}${problems.length > 10 ? ` (and ${problems.length - 10} more)` : ''}`, {
    hint: 'Report this with the options used: the renderer made a Workflow Argo would refuse',
    details: { problems },
  });
}
