// @ts-check
/**
 * `{{name}}`: an HTTP health check. Each check sends `GET path` to the
 * endpoint under check through the host's HTTP probe and judges the answer:
 * **healthy** on a 2xx or 3xx status, **unhealthy** on any other status or
 * when the probe gets no answer (refused, timed out, reset, not HTTP). When
 * the host refuses to send the request (a path it does not accept), the
 * endpoint is not at fault and the verdict is **unknown**.
 *
 * The host schedules the checks and applies the pool's `health` table
 * (`interval_ms`, `timeout_ms`, `rise`, `fall`); this plugin judges one
 * probe.
 *
 * Config (JSON, every key optional):
 * - `path` (default `DEFAULT_PATH`): the path requested; starts with `/`.
 * - `timeout_ms` (default `DEFAULT_TIMEOUT_MS`): the probe's own timeout, at
 *   least 1; the host caps it at the check's time limit.
 */

import { ConfigError, ConfigReader, HealthCheck, Verdict, probe } from '@switchyard/sdk';

/** The path requested unless `path` says otherwise. */
export const DEFAULT_PATH = '/healthz';

/** The probe's timeout in milliseconds unless `timeout_ms` says otherwise. */
export const DEFAULT_TIMEOUT_MS = 1000;

/** The check for one pool: the request it sends. */
export default class HttpGet extends HealthCheck {
  /** @param {object} config the pool's `health.config` */
  constructor(config) {
    super(config);
    const read = new ConfigReader(config);
    const path = read.string('path', { default: DEFAULT_PATH });
    if (!path.startsWith('/')) {
      throw new ConfigError('path', `must start with \`/\`, got ${JSON.stringify(path)}`);
    }
    const timeoutMs = read.integer('timeout_ms', { default: DEFAULT_TIMEOUT_MS, min: 1 });
    read.finish();
    /** The probe this check sends. */
    this.request = { method: 'GET', path, timeoutMs };
  }

  /**
   * @param {import('@switchyard/sdk').Endpoint} _target
   * @returns {import('@switchyard/sdk').Verdict}
   */
  check(_target) {
    let response;
    try {
      response = probe.http(this.request);
    } catch (error) {
      if (!(error instanceof probe.ProbeError)) {
        throw error;
      }
      if (error.kind === 'not-allowed') {
        return Verdict.unknown(`the host refused the probe: ${error.detail}`);
      }
      return Verdict.unhealthy(error.message);
    }
    if (response.status >= 200 && response.status < 400) {
      return Verdict.healthy(`${response.status} in ${Math.ceil(response.latencyUs / 1000)} ms`);
    }
    return Verdict.unhealthy(`status ${response.status}, expected 200-399`);
  }
}
