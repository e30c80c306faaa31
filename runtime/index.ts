/**
 * The hand-written runtime the generated SDK stands on. Generated code imports from here; nothing
 * here imports generated code.
 */
export { TrackspecError, ConfigError, ValidationError, BackendError } from './errors.js';
export type { ValidationIssue, ConfigErrorDetails, BackendErrorDetails } from './errors.js';
export { GeneralTracker } from './general-tracker.js';
export type { ImageLogger, TableLogger } from './general-tracker.js';
export { SpecTracker } from './spec-tracker.js';
export type { TrackerDescriptor } from './spec-tracker.js';
export { TrackingBase } from './tracking.js';
export type { TrackerClass, TrackingOptions, TrackingConfigInput, LogWithEntry } from './tracking.js';
export { unavailableDriver } from './driver.js';
export type { BackendDriver, TrackerDriver, DriverContext, DriverHandle, ImageData, TableData, Values } from './driver.js';
export { resolveOptions } from './options.js';
export type { OptionDescriptor, EnvSource, Validator } from './options.js';
export { readEnv, parseEnv } from './env.js';
export type { Env, EnvParse } from './env.js';
export { processRank, isMainProcess, RANK_VARIABLES } from './rank.js';
export { valueKind, applyValueRules } from './values.js';
export type { ValueKind, ValueAction, ValueRuleTable } from './values.js';
export { setWarningHandler, warn } from './warnings.js';
export type { WarningHandler } from './warnings.js';
export { loadConfigFile, checkConfigText, parseLocated } from './config-file.js';
export type { LocatedIssue, CheckResult, Located } from './config-file.js';
export { humanizeErrors, didYouMean } from './humanize.js';
// The TensorBoard writer and reader are usable on their own.
export { SummaryWriter, readEvents, readEventsSync, listEventFiles } from './tensorboard/index.js';
export type { SummaryWriterOptions, DecodedEvent, DecodedValue, ReadResult } from './tensorboard/index.js';
