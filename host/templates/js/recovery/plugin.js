// @ts-check
/**
 * `{{name}}`: retry elsewhere, for requests that can be sent again. After a
 * failed attempt of a request the host can replay (an idempotent method with
 * a small body), the request is sent again at once to another endpoint, up
 * to `retries` times; any other failure is answered with the endpoint's own
 * response, or the host's error status when there is none. The host still
 * enforces its retry budget and the route's deadline.
 *
 * Config (JSON, every key optional):
 * - `retries` (default `DEFAULT_RETRIES`): retries per request, from 0
 *   (never retry) to `MAX_RETRIES`.
 */

import { ConfigReader, Decision, Recovery } from '@switchyard/sdk';

/** Retries per request unless `retries` says otherwise. */
export const DEFAULT_RETRIES = 1;

/** The largest `retries` accepted. */
export const MAX_RETRIES = 5;

/** The policy for one pool. */
export default class RetryElsewhere extends Recovery {
  /** @param {object} config the pool's `recovery.config` */
  constructor(config) {
    super(config);
    const read = new ConfigReader(config);
    /** Retries per request. */
    this.retries = read.integer('retries', { default: DEFAULT_RETRIES, max: MAX_RETRIES });
    read.finish();
  }

  /**
   * @param {import('@switchyard/sdk').Failure} failure
   * @returns {import('@switchyard/sdk').Decision}
   */
  onFailure(failure) {
    // `attempt` counts from 0: the first try failed when it is 0.
    if (failure.replayable && failure.request.attempt < this.retries) {
      return Decision.retry({ delayMs: 0, sameEndpoint: false });
    }
    return Decision.giveUp();
  }
}
