/** Tracker classes and the package entry, built with ts-morph from batched structures. */
import type { OptionalKind } from 'ts-morph';
import type { ModelIR, BackendIR } from '../model.js';

type TsMorph = typeof import('ts-morph');
type Project = import('ts-morph').Project;
type SourceFileStructure = import('ts-morph').SourceFileStructure;
type PropertyDeclarationStructure = import('ts-morph').PropertyDeclarationStructure;
type MethodDeclarationStructure = import('ts-morph').MethodDeclarationStructure;

const lit = (v: unknown) => JSON.stringify(v);

function descriptorText(b: BackendIR): string {
  const rules = (t: BackendIR['valueRules']['log']) =>
    `{ ${Object.entries(t).map(([k, r]) => `${k}: ${lit(r.action)}`).join(', ')} }`;
  const options = b.options.map((o) => {
    const parts = [`name: ${lit(o.name)}`];
    parts.push(`env: [${o.env.map((e) => `{ var: ${lit(e.var)}, parse: ${lit(e.parse)}, overrides: ${e.overrides} }`).join(', ')}]`);
    if (o.hasDefault) parts.push(`default: ${lit(o.default)}`);
    if (o.secret) parts.push('secret: true');
    if (o.jsonString) parts.push('jsonString: true');
    return `{ ${parts.join(', ')} }`;
  });
  return `{
  name: ${lit(b.name)},
  className: ${lit(b.className)},
  requiresLoggingDirectory: ${b.requiresLoggingDirectory},
  mainProcessOnly: ${b.mainProcessOnly},
  projectNameOption: ${lit(b.projectNameOption)},
  capabilities: { log_images: ${b.capabilities.log_images}, log_table: ${b.capabilities.log_table}, artifacts: ${b.capabilities.artifacts} },
  valueRules: {
    log: ${rules(b.valueRules.log)},
    storeInitConfiguration: ${rules(b.valueRules.storeInitConfiguration)},
  },
  options: [
    ${options.join(',\n    ')},
  ],
}`;
}

function classDocs(b: BackendIR): string {
  const rules = (t: BackendIR['valueRules']['log']) =>
    Object.entries(t)
      .map(([k, r]) => ` - ${k}: ${r.action === 'accept' ? r.doc : `${r.action} (${r.doc})`}`)
      .join('\n');
  return [
    `${b.title} tracker (\`${b.name}\`). ${b.description}`,
    '',
    `project_name (from Tracking) becomes the \`${b.projectNameOption}\` option.` +
      (b.requiresLoggingDirectory ? ' Requires `logging_dir`.' : '') +
      (b.mainProcessOnly ? ' Main process only: a no-op on ranks other than 0.' : ' Runs on every process.'),
    '',
    '`log()` values:',
    rules(b.valueRules.log),
    '',
    '`storeInitConfiguration()` values:',
    rules(b.valueRules.storeInitConfiguration),
    '',
    `Spec: spec/${b.specFile}. Options: {@link ${b.optionsType}}.`,
  ].join('\n');
}

function trackerFile(t: TsMorph, b: BackendIR, model: ModelIR): SourceFileStructure {
  const hasRequired = b.options.some((o) => o.required);
  const runtimeTypes = ['DriverHandle', 'TrackerDescriptor'];
  if (b.capabilities.log_images) runtimeTypes.push('ImageData', 'Values');
  if (b.capabilities.log_table) runtimeTypes.push('TableData');
  if (b.capabilities.log_table && !b.capabilities.log_images) runtimeTypes.push('Values');
  if (b.capabilities.artifacts && !b.capabilities.log_images) runtimeTypes.push('ImageData');
  const props: OptionalKind<PropertyDeclarationStructure>[] = [
    { name: 'trackerName', isStatic: true, isReadonly: true, initializer: lit(b.name), docs: ['Backend name (the key of init_kwargs and log kwargs).'] },
    { name: 'requiresLoggingDirectory', isStatic: true, isReadonly: true, initializer: String(b.requiresLoggingDirectory) },
    { name: 'mainProcessOnly', isStatic: true, isReadonly: true, initializer: String(b.mainProcessOnly) },
    { name: 'projectNameOption', isStatic: true, isReadonly: true, initializer: lit(b.projectNameOption), docs: ['Option that Tracking fills with project_name.'] },
    { name: 'available', isStatic: true, isReadonly: true, type: 'boolean', initializer: `driver.available`, docs: ['False while the backend transport is not built (start() then throws).'] },
    { name: 'descriptor', isStatic: true, isReadonly: true, type: 'TrackerDescriptor', initializer: 'descriptor' },
    { name: 'name', isReadonly: true, initializer: `${lit(b.name)} as const` },
    { name: 'requiresLoggingDirectory', isReadonly: true, initializer: String(b.requiresLoggingDirectory) },
    { name: 'mainProcessOnly', hasOverrideKeyword: true, isReadonly: true, initializer: String(b.mainProcessOnly) },
  ];
  const methods: OptionalKind<MethodDeclarationStructure>[] = [];
  if (b.capabilities.log_images) {
    methods.push({
      name: 'logImages',
      docs: ['Log images (`{ data: Uint8Array, height, width, channels }`, HWC uint8), one or a list per key.'],
      parameters: [
        { name: 'values', type: 'Record<string, ImageData | ImageData[]>' },
        { name: 'step', type: 'number', hasQuestionToken: true },
        { name: 'kwargs', type: 'Values', hasQuestionToken: true },
      ],
      returnType: 'void',
      statements: ['this.logImagesImpl(values, step, kwargs);'],
    });
  }
  if (b.capabilities.log_table) {
    methods.push({
      name: 'logTable',
      docs: ['Log a table (`{ columns?, data? }`) under `name`.'],
      parameters: [
        { name: 'name', type: 'string' },
        { name: 'table', type: 'TableData' },
        { name: 'step', type: 'number', hasQuestionToken: true },
        { name: 'kwargs', type: 'Values', hasQuestionToken: true },
      ],
      returnType: 'void',
      statements: ['this.logTableImpl(name, table, step, kwargs);'],
    });
  }
  if (b.capabilities.artifacts) {
    methods.push(
      {
        name: 'logArtifact',
        docs: [
          'Upload one local file as an artifact of the run, as `<artifactPath>/<file name>` (or `<file name>`).\n' +
            'Returns at once; the upload runs in the background and `flush()`/`finish()` report its failure.\n' +
            'A missing file, a path that is not a file, or an `artifactPath` with `..` or absolute is a `ValidationError` here.',
        ],
        parameters: [
          { name: 'localPath', type: 'string' },
          { name: 'artifactPath', type: 'string', hasQuestionToken: true },
        ],
        returnType: 'void',
        statements: ["this.logArtifactImpl('logArtifact', { kind: 'file', localPath, artifactPath });"],
      },
      {
        name: 'logArtifacts',
        docs: ['Upload every file below a local directory, keeping their relative paths (under `artifactPath` if given). Returns at once, as `logArtifact`.'],
        parameters: [
          { name: 'localDir', type: 'string' },
          { name: 'artifactPath', type: 'string', hasQuestionToken: true },
        ],
        returnType: 'void',
        statements: ["this.logArtifactImpl('logArtifacts', { kind: 'dir', localDir, artifactPath });"],
      },
      {
        name: 'logFigure',
        docs: ['Store an image (`{ data, height, width, channels }`, HWC uint8, PNG-encoded here; or PNG bytes) as the artifact file `artifactFile` (e.g. `plots/roc.png`). Returns at once, as `logArtifact`.'],
        parameters: [
          { name: 'image', type: 'ImageData | Uint8Array' },
          { name: 'artifactFile', type: 'string' },
        ],
        returnType: 'void',
        statements: ["this.logArtifactImpl('logFigure', { kind: 'figure', image, artifactFile });"],
      },
    );
  }
  const importAs = b.driverExport === 'driver' ? undefined : 'driver';
  return {
    kind: t.StructureKind.SourceFile,
    statements: [
      {
        kind: t.StructureKind.ImportDeclaration,
        moduleSpecifier: model.runtimeImport,
        namedImports: ['SpecTracker', ...runtimeTypes.sort().map((t) => `type ${t}`)],
      },
      { kind: t.StructureKind.ImportDeclaration, moduleSpecifier: b.driverImport, namedImports: [importAs ? `${b.driverExport} as driver` : 'driver'] },
      {
        kind: t.StructureKind.ImportDeclaration,
        moduleSpecifier: `./${b.optionsFile.replace(/\.ts$/, '.js')}`,
        namedImports: [`type ${b.optionsType}`, `type ${b.resolvedOptionsType}`],
      },
      { kind: t.StructureKind.ImportDeclaration, moduleSpecifier: './validators.gen.js', namedImports: [b.validatorName] },
      {
        kind: t.StructureKind.VariableStatement,
        declarationKind: t.VariableDeclarationKind.Const,
        declarations: [{ name: 'descriptor', type: 'TrackerDescriptor', initializer: descriptorText(b) }],
      },
      {
        kind: t.StructureKind.Class,
        name: b.className,
        isExported: true,
        docs: [classDocs(b)],
        extends: `SpecTracker<${b.resolvedOptionsType}, DriverHandle<typeof driver>>`,
        properties: props,
        ctors: [
          {
            docs: [`Options are validated here (ConfigError naming the option or environment variable on a bad value); environment variables are resolved here too.`],
            parameters: [{ name: 'options', type: b.optionsType, initializer: hasRequired ? undefined : '{}' }],
            statements: [`super(descriptor, options, ${b.validatorName}, driver);`],
          },
        ],
        methods,
      },
    ],
  } as SourceFileStructure;
}

function indexFile(t: TsMorph, model: ModelIR): SourceFileStructure {
  const statements: SourceFileStructure['statements'] = [];
  const imp = (moduleSpecifier: string, namedImports: string[]): import('ts-morph').ImportDeclarationStructure => ({ kind: t.StructureKind.ImportDeclaration, moduleSpecifier, namedImports });
  statements.push(imp('node:fs/promises', ['readFile']));
  statements.push(imp(model.runtimeImport, ['TrackingBase', 'loadConfigFile', 'type TrackerClass']));
  for (const b of model.backends) statements.push(imp(`./${b.classFile.replace(/\.ts$/, '.js')}`, [b.className]));
  statements.push(imp('./config.gen.js', ['type TrackingConfig']));
  statements.push(imp('./validators.gen.js', ['validateTrackingConfig']));
  statements.push({ kind: t.StructureKind.ExportDeclaration, moduleSpecifier: model.runtimeImport });
  statements.push({ kind: t.StructureKind.ExportDeclaration, namedExports: model.backends.map((b) => b.className) });
  for (const b of model.backends) {
    statements.push({
      kind: t.StructureKind.ExportDeclaration,
      isTypeOnly: true,
      moduleSpecifier: `./${b.optionsFile.replace(/\.ts$/, '.js')}`,
      namedExports: [b.optionsType, b.resolvedOptionsType],
    });
  }
  statements.push({ kind: t.StructureKind.ExportDeclaration, isTypeOnly: true, moduleSpecifier: './config.gen.js', namedExports: ['TrackingConfig'] });
  statements.push({
    kind: t.StructureKind.ExportDeclaration,
    moduleSpecifier: './validators.gen.js',
    namedExports: [...model.backends.map((b) => b.validatorName), 'validateTrackingConfig'].sort(),
  });
  statements.push({
    kind: t.StructureKind.TypeAlias,
    name: 'TrackerName',
    isExported: true,
    docs: ['Names of the built-in backends.'],
    type: model.backends.map((b) => lit(b.name)).join(' | '),
  });
  statements.push({
    kind: t.StructureKind.Class,
    name: 'Tracking',
    isExported: true,
    docs: ['Orchestrates several trackers as Accelerate\'s Accelerator does (log_with, initTrackers, log, getTracker, endTraining).'],
    extends: 'TrackingBase',
    properties: [
      {
        name: 'builtins',
        isStatic: true,
        isReadonly: true,
        scope: t.Scope.Protected,
        hasOverrideKeyword: true,
        type: 'readonly TrackerClass[]',
        initializer: `[${model.backends.map((b) => b.className).join(', ')}]`,
      },
    ],
  });
  statements.push({
    kind: t.StructureKind.Function,
    name: 'loadTrackingConfigSchema',
    isExported: true,
    isAsync: true,
    docs: ['The JSON Schema of tracker config files (generated/tracking-config.schema.json).'],
    returnType: 'Promise<Record<string, unknown>>',
    statements: ["return JSON.parse(await readFile(new URL('./tracking-config.schema.json', import.meta.url), 'utf8')) as Record<string, unknown>;"],
  });
  statements.push({
    kind: t.StructureKind.Function,
    name: 'loadTrackingConfig',
    isExported: true,
    docs: ['Read and validate a tracker config file (YAML or JSON). Throws ValidationError with FILE:LINE:COL issues.'],
    parameters: [{ name: 'path', type: 'string' }],
    returnType: 'Promise<TrackingConfig>',
    statements: ['return loadConfigFile<TrackingConfig>(path, validateTrackingConfig, loadTrackingConfigSchema);'],
  });
  return { kind: t.StructureKind.SourceFile, statements } as SourceFileStructure;
}

/** Print every class file and the index from structures in one batch. */
export function emitClasses(model: ModelIR, tsMorph: TsMorph, project: Project): Map<string, string> {
  const files = new Map<string, string>();
  const structures: [string, SourceFileStructure][] = model.backends.map((b) => [b.classFile, trackerFile(tsMorph, b, model)]);
  structures.push(['index.gen.ts', indexFile(tsMorph, model)]);
  for (const [name, structure] of structures) {
    const sf = project.createSourceFile(`/gen/${name}`, structure, { overwrite: true });
    files.set(name, sf.getFullText());
  }
  return files;
}
