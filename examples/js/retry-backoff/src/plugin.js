// @ts-check
/**
 * Retries with capped exponential backoff and full jitter; a port of the
 * Rust plugin `plugins/retry-backoff`. After a failed attempt, the request
 * is sent again when all of these hold:
 *
 * 1. the host can replay it (`failure.replayable`: idempotent, small body);
 * 2. attempts remain: `failure.request.attempt + 1 < attempts`, where
 *    `attempt` is 0 for the first try, so `attempts` counts the first try
 *    too;
 * 3. the failure's kind is listed in `retry_on`.
 *
 * Otherwise the plugin gives up with `Decision.giveUp()`: the client gets
 * the endpoint's own response when there was one, and the host's error
 * status when there was not.
 *
 * The retry waits a random time, uniform in `0..=min(max_delay_ms,
 * base_delay_ms × 2^attempt)` ms: "full jitter" from Marc Brooker's
 * "Exponential Backoff And Jitter" on the AWS Architecture Blog
 * (https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/),
 * which spreads the retries of many clients that failed together instead of
 * sending them back in synchronized waves, and does the least total work of
 * the schemes compared there. Envoy's retry policy backs off the same way
 * and is where the `retry_on` conditions come from. The random numbers are
 * the host's (`host.randomBelow`). The host still enforces its retry budget
 * and the route's deadline.
 *
 * Config (JSON, every key optional):
 * - `attempts` (default 3, `DEFAULT_ATTEMPTS`): total attempts including
 *   the first, from 1 (never retry) to `MAX_ATTEMPTS`.
 * - `base_delay_ms` (default 5, `DEFAULT_BASE_DELAY_MS`): the backoff
 *   ceiling of the first retry; each further retry doubles it. 0 retries at
 *   once.
 * - `max_delay_ms` (default 250, `DEFAULT_MAX_DELAY_MS`): the most the
 *   ceiling grows to; at least `base_delay_ms`, at most
 *   `MAX_DELAY_LIMIT_MS`.
 * - `retry_on` (default `["connect-refused", "connect-timeout", "reset",
 *   "5xx"]`): the failures worth retrying, at least one of
 *   `"connect-refused"`, `"connect-timeout"`, `"reset"`,
 *   `"response-timeout"`, `"5xx"`, `"4xx"`, or a status such as `503` or
 *   `429`. `response-timeout` is off by default because the endpoint may
 *   still be working on the request; statuses are only reported for
 *   responses the route counts as failed. gRPC statuses are not matched.
 * - `same_endpoint` (default false): retry on the endpoint that failed
 *   rather than on another.
 *
 * ```toml
 * [[pools]]
 * name = "api"
 * recovery = { plugin = "js-retry-backoff", config = { attempts = 4, base_delay_ms = 10, max_delay_ms = 500, retry_on = ["connect-refused", "reset", "5xx", 429] } }
 * endpoints = [{ address = "10.0.0.1:8080" }, { address = "10.0.0.2:8080" }]
 * ```
 */

import { ConfigError, ConfigReader, Decision, Recovery, host } from '@switchyard/sdk';

/** Total attempts unless `attempts` says otherwise. */
export const DEFAULT_ATTEMPTS = 3;

/** The largest `attempts` accepted. */
export const MAX_ATTEMPTS = 10;

/** The first retry's backoff ceiling in ms unless `base_delay_ms` says otherwise. */
export const DEFAULT_BASE_DELAY_MS = 5;

/** The largest backoff ceiling in ms unless `max_delay_ms` says otherwise. */
export const DEFAULT_MAX_DELAY_MS = 250;

/**
 * The largest `max_delay_ms` accepted: a minute, far beyond any sensible
 * request deadline, so a larger value is a mistake (seconds for ms).
 */
export const MAX_DELAY_LIMIT_MS = 60_000;

/** The names accepted in `retry_on`, besides status numbers. */
export const RETRY_ON_NAMES = Object.freeze([
  'connect-refused',
  'connect-timeout',
  'reset',
  'response-timeout',
  '5xx',
  '4xx',
]);

/** The failures retried unless `retry_on` says otherwise. */
export const DEFAULT_RETRY_ON = Object.freeze(['connect-refused', 'connect-timeout', 'reset', '5xx']);

/**
 * One item of `retry_on`, checked: a name of `RETRY_ON_NAMES` or a status
 * from 100 to 599.
 * @param {unknown} item
 * @param {string} key where it sits, such as `retry_on[1]`
 * @returns {string | number}
 */
export function retryOnItem(item, key) {
  const names = `"${RETRY_ON_NAMES.join('", "')}"`;
  if (typeof item === 'number') {
    if (!Number.isInteger(item) || item < 100 || item > 599) {
      throw new ConfigError(key, `status ${item} is not from 100 to 599`);
    }
    return item;
  }
  if (typeof item === 'string') {
    if (!RETRY_ON_NAMES.includes(item)) {
      throw new ConfigError(key, `unknown failure \`${item}\`, expected one of ${names}, or a status number such as 503`);
    }
    return item;
  }
  throw new ConfigError(key, `expected one of ${names}, or a status such as 503, got ${JSON.stringify(item)}`);
}

/**
 * Whether a failure is one that `item` of `retry_on` names.
 * @param {string | number} item
 * @param {import('@switchyard/sdk').Failure} failure
 */
export function matches(item, failure) {
  if (failure.kind === 'status') {
    const status = /** @type {number} */ (failure.status);
    switch (item) {
      case '5xx':
        return status >= 500 && status <= 599;
      case '4xx':
        return status >= 400 && status <= 499;
      default:
        return item === status;
    }
  }
  return item === failure.kind;
}

export default class RetryBackoff extends Recovery {
  /** @param {object} config the pool's `recovery.config` */
  constructor(config) {
    super(config);
    const read = new ConfigReader(config);
    /** Total attempts, the first included. */
    this.attempts = read.integer('attempts', { default: DEFAULT_ATTEMPTS, min: 1, max: MAX_ATTEMPTS });
    /** The first retry's backoff ceiling in ms. */
    this.baseDelayMs = read.integer('base_delay_ms', { default: DEFAULT_BASE_DELAY_MS });
    /** The largest backoff ceiling in ms. */
    this.maxDelayMs = read.integer('max_delay_ms', { default: DEFAULT_MAX_DELAY_MS, max: MAX_DELAY_LIMIT_MS });
    if (this.baseDelayMs > this.maxDelayMs) {
      throw new ConfigError(
        'base_delay_ms',
        `must be at most \`max_delay_ms\` (${this.maxDelayMs}), got ${this.baseDelayMs}`,
      );
    }
    const retryOn = read.array('retry_on', { default: [...DEFAULT_RETRY_ON] });
    if (retryOn.length === 0) {
      throw new ConfigError('retry_on', 'must list at least one failure; to never retry, set `attempts` to 1');
    }
    /** The failures worth retrying. */
    this.retryOn = retryOn.map((item, index) => retryOnItem(item, `retry_on[${index}]`));
    /** Retry on the endpoint that failed rather than another. */
    this.sameEndpoint = read.boolean('same_endpoint', { default: false });
    read.finish();
  }

  /**
   * The most a retry after failed attempt `attempt` (0 for the first try)
   * waits: `min(max_delay_ms, base_delay_ms × 2^attempt)`.
   * @param {number} attempt
   */
  backoffCeilingMs(attempt) {
    if (this.baseDelayMs === 0) {
      return 0;
    }
    // Past 2^31 doublings any base exceeds the cap; numbers stay exact below.
    return attempt >= 31 ? this.maxDelayMs : Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** attempt);
  }

  /**
   * Whether a failure is worth retrying.
   * @param {import('@switchyard/sdk').Failure} failure
   */
  retries(failure) {
    return this.retryOn.some((item) => matches(item, failure));
  }

  /** @param {import('@switchyard/sdk').Failure} failure */
  onFailure(failure) {
    const attempt = failure.request.attempt;
    if (!failure.replayable || attempt + 1 >= this.attempts || !this.retries(failure)) {
      return Decision.giveUp();
    }
    const delayMs = host.randomBelow(this.backoffCeilingMs(attempt) + 1);
    return Decision.retry({ delayMs, sameEndpoint: this.sameEndpoint });
  }
}
