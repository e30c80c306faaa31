/** The JSON Schema of tracker config files (YAML/JSON), built from the model. */
import { HEADER_TEXT } from '../paths.js';
import type { ModelIR } from '../model.js';

export function trackingConfigSchema(model: ModelIR): Record<string, unknown> {
  const names = [...model.backends.map((b) => b.name), 'all'];
  const definitions: Record<string, unknown> = {};
  const initKwargs: Record<string, unknown> = {};
  for (const b of model.backends) {
    const { $id: _id, required: _required, ...rest } = b.optionsSchema;
    definitions[b.optionsType] = { ...rest, description: `${b.className} options (init_kwargs.${b.name}); project_name and logging_dir fill ${b.projectNameOption}${b.requiresLoggingDirectory ? ' and logging_dir' : ''} unless set here.` };
    initKwargs[b.name] = { $ref: `#/definitions/${b.optionsType}` };
  }
  return {
    $comment: HEADER_TEXT,
    $schema: 'http://json-schema.org/draft-07/schema#',
    title: 'TrackingConfig',
    description: 'A trackspec tracker config file: the inputs of Tracking (log_with, logging_dir) and of initTrackers (project_name, config, init_kwargs).',
    type: 'object',
    additionalProperties: false,
    required: ['project_name', 'log_with'],
    properties: {
      $schema: { type: 'string', description: 'Path or URL of this schema, for editors.' },
      project_name: { type: 'string', minLength: 1, description: 'Project name: each backend maps it to its own concept (TensorBoard run directory, MLflow experiment, W&B project...).' },
      log_with: {
        description: 'Backends to log with: one name, a list, or "all".',
        anyOf: [
          { enum: names },
          { type: 'array', minItems: 1, uniqueItems: true, items: { enum: names } },
        ],
      },
      logging_dir: { type: ['string', 'null'], description: 'Directory for backends that require one (TensorBoard, Aim).' },
      config: { type: ['object', 'null'], description: 'Hyperparameters passed to storeInitConfiguration on every tracker.' },
      init_kwargs: {
        type: 'object',
        additionalProperties: false,
        description: 'Per-backend constructor options, keyed by backend name.',
        properties: initKwargs,
      },
    },
    definitions,
  };
}
