/**
 * The health-check world: judge one endpoint at a time through host probes.
 * @module
 */

import type { Endpoint, Health } from './types.js';

/**
 * The outcome of one check: what it concluded, and why in a few words
 * (shown in the API and in alerts).
 *
 * @example
 * import { Verdict } from '@switchyard/sdk';
 * const verdict = Verdict.unhealthy('status 500');
 * console.assert(verdict.health === 'unhealthy');
 */
export interface Verdict {
  /** What the check concluded. */
  health: Health;
  /** Why, in a few words. */
  reason: string;
}

/**
 * Builds verdicts: `Verdict.healthy(reason)`, `degraded`, `unhealthy`, and
 * `unknown` (the endpoint is not at fault, say when the host refused the
 * probe).
 *
 * @example
 * import { Verdict } from '@switchyard/sdk';
 * const slow = Verdict.degraded('slow: 900 ms');
 * console.assert(slow.reason === 'slow: 900 ms');
 */
export declare const Verdict: {
  /**
   * A passing check.
   *
   * @example
   * import { Verdict } from '@switchyard/sdk';
   * Verdict.healthy('200 in 3 ms');
   */
  healthy(reason: string): Verdict;
  /**
   * A check that passed but found the endpoint slow or partly failing.
   *
   * @example
   * import { Verdict } from '@switchyard/sdk';
   * Verdict.degraded('slow: 900 ms');
   */
  degraded(reason: string): Verdict;
  /**
   * A failing check.
   *
   * @example
   * import { Verdict } from '@switchyard/sdk';
   * Verdict.unhealthy('status 503, expected 200-399');
   */
  unhealthy(reason: string): Verdict;
  /**
   * A check that could not judge the endpoint (it is not at fault).
   *
   * @example
   * import { Verdict } from '@switchyard/sdk';
   * Verdict.unknown('the host refused the probe: bad path');
   */
  unknown(reason: string): Verdict;
};

/**
 * An active health check for the endpoints of one pool. Extend it and make
 * the subclass the default export of `src/plugin.js`.
 *
 * The host schedules checks (interval, timeout, rise and fall) and calls
 * `check` for one endpoint at a time; the `probe` functions reach only that
 * endpoint. The host makes one object of your class per pool with `new`,
 * given the pool's `health.config`, parsed; throwing from the constructor
 * refuses the config with your message. An exception thrown from `check` is
 * caught and logged, and becomes an `'unknown'` verdict carrying its message.
 *
 * @example
 * // @ts-check
 * import { HealthCheck, Verdict, probe } from '@switchyard/sdk';
 *
 * export default class TcpOpen extends HealthCheck {
 *   check(_target) {
 *     try {
 *       return Verdict.healthy(`connected in ${probe.tcpConnect(500)} µs`);
 *     } catch (error) {
 *       if (error instanceof probe.ProbeError) return Verdict.unhealthy(error.message);
 *       throw error;
 *     }
 *   }
 * }
 */
export declare class HealthCheck {
  /**
   * Builds the check from the pool's `health.config`. Throw to refuse it.
   *
   * @example
   * import { HealthCheck, ConfigReader } from '@switchyard/sdk';
   * class Path extends HealthCheck {
   *   constructor(config) {
   *     super(config);
   *     const read = new ConfigReader(config);
   *     this.path = read.string('path', { default: '/healthz' });
   *     read.finish();
   *   }
   * }
   */
  constructor(config: object);

  /**
   * Judges one endpoint.
   *
   * @example
   * import { HealthCheck, Verdict, probe } from '@switchyard/sdk';
   * class Http extends HealthCheck {
   *   check(_target) {
   *     const response = probe.http({ path: '/healthz' });
   *     return response.status === 200 ? Verdict.healthy('200') : Verdict.unhealthy(`status ${response.status}`);
   *   }
   * }
   */
  check(target: Endpoint): Verdict;
}
