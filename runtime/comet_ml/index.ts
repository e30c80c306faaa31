/**
 * Comet ML backend. The transport is not built yet (issue #6): start() fails with a BackendError
 * saying so, and nothing is ever pretended to be logged.
 */
import { unavailableDriver } from '../driver.js';

export const driver = unavailableDriver('comet_ml', 'issue #6');
