/**
 * Aim backend. The transport is not built yet (issue #7): start() fails with a BackendError
 * saying so, and nothing is ever pretended to be logged.
 */
import { unavailableDriver } from '../driver.js';

export const driver = unavailableDriver('aim', 'issue #7');
