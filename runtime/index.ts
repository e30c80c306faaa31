/**
 * The hand-written runtime the generated SDK stands on. Generated code imports from here; nothing
 * here imports generated code.
 */
export { TrackspecError, ConfigError, ValidationError, BackendError } from './core/errors.js';
export type { ValidationIssue, ConfigErrorDetails, BackendErrorDetails } from './core/errors.js';
export { GeneralTracker } from './core/general-tracker.js';
export type { ImageLogger, TableLogger, ArtifactLogger } from './core/general-tracker.js';
export { SpecTracker } from './core/spec-tracker.js';
export type { TrackerDescriptor } from './core/spec-tracker.js';
export { TrackingBase } from './core/tracking.js';
export type { TrackerClass, TrackingOptions, TrackingConfigInput, LogWithEntry } from './core/tracking.js';
export { unavailableDriver } from './core/driver.js';
export type { BackendDriver, TrackerDriver, DriverContext, DriverHandle, ImageData, TableData, Values, ArtifactRequest } from './core/driver.js';
export { resolveOptions } from './core/options.js';
export type { OptionDescriptor, EnvSource, Validator } from './core/options.js';
export { readEnv, parseEnv } from './core/env.js';
export type { Env, EnvParse } from './core/env.js';
export { processRank, isMainProcess, RANK_VARIABLES } from './core/rank.js';
export { valueKind, applyValueRules } from './core/values.js';
export type { ValueKind, ValueAction, ValueRuleTable } from './core/values.js';
export { setWarningHandler, warn } from './core/warnings.js';
export type { WarningHandler } from './core/warnings.js';
export { loadConfigFile, checkConfigText, parseLocated } from './core/config-file.js';
export type { LocatedIssue, CheckResult, Located } from './core/config-file.js';
export { humanizeErrors, didYouMean } from './core/humanize.js';
// Helpers the generated validators call (they stand in for ajv's runtime, which the SDK does not install).
export { ucs2length, deepEqual } from './core/validation.js';
export type { ValidateFunction, ErrorObject } from './core/validation.js';
// The TensorBoard writer and reader are usable on their own.
export { SummaryWriter, readEvents, readEventsSync, readEventStream, readEventStreamSync, EventStream, EventStreamSync, EventFileError, listEventFiles } from './backends/tensorboard/index.js';
export type { SummaryWriterOptions, DecodedEvent, DecodedValue, ReadResult, ReadError, EventStreamOptions } from './backends/tensorboard/index.js';
