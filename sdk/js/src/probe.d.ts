/**
 * Probes a health check uses to reach the endpoint under check, and nothing
 * else. A probe that gets no answer throws a `ProbeError` (a component's
 * `result` error is thrown in JS, and an exception is the JS way to say an
 * operation failed); the usual check catches it and returns a verdict.
 * Outside a health check (in a balancer or recovery plugin) both throw a
 * `'not-allowed'` ProbeError.
 * @module
 */

/**
 * The probe timeout used unless the request gives one, in milliseconds.
 *
 * @example
 * import { probe } from '@switchyard/sdk';
 * console.assert(probe.DEFAULT_TIMEOUT_MS === 1000);
 */
export declare const DEFAULT_TIMEOUT_MS: number;

/**
 * An HTTP/1.1 request to the endpoint under check; only `path` is required.
 *
 * @example
 * import { probe } from '@switchyard/sdk';
 * const response = probe.http({ path: '/ready', headers: [['accept', 'application/json']], timeoutMs: 250 });
 */
export interface HttpRequest {
  /** The method; `'GET'` unless given. */
  method?: string;
  /** Path and query, starting with `/`. */
  path: string;
  /** Extra request headers, as `[name, value]` pairs. */
  headers?: Array<[string, string]>;
  /** Give up after this many milliseconds (the host caps it at the check's timeout); `DEFAULT_TIMEOUT_MS` unless given. */
  timeoutMs?: number;
}

/**
 * The request with every field filled in, as the host receives it.
 *
 * @example
 * import { probe } from '@switchyard/sdk';
 * console.assert(probe.httpRequest({ path: '/' }).method === 'GET');
 */
export declare function httpRequest(request: HttpRequest): Required<HttpRequest>;

/**
 * The endpoint's answer to an HttpRequest.
 *
 * @example
 * import { probe } from '@switchyard/sdk';
 * const response = new probe.HttpResponse({ status: 200, body: 'ok' });
 * console.assert(response.text() === 'ok');
 */
export declare class HttpResponse {
  /**
   * A response; a string body is encoded as UTF-8. Missing fields are
   * empty or 0.
   *
   * @example
   * import { probe } from '@switchyard/sdk';
   * const teapot = new probe.HttpResponse({ status: 418, body: 'short and stout', latencyUs: 90 });
   */
  constructor(fields: {
    status: number;
    headers?: Array<[string, string]>;
    body?: Uint8Array | string;
    latencyUs?: number;
  });
  /** The status code. */
  status: number;
  /** The response headers, as `[name, value]` pairs. */
  headers: Array<[string, string]>;
  /** The body, cut at 64 KiB. */
  body: Uint8Array;
  /** Time from sending the request to the end of the body, in µs. */
  latencyUs: number;

  /**
   * The first header of this name (case-insensitive), or `undefined`.
   *
   * @example
   * import { probe } from '@switchyard/sdk';
   * const response = new probe.HttpResponse({ status: 200, headers: [['Content-Type', 'text/plain']] });
   * console.assert(response.header('content-type') === 'text/plain');
   */
  header(name: string): string | undefined;

  /**
   * The body as text, with invalid UTF-8 replaced by U+FFFD.
   *
   * @example
   * import { probe } from '@switchyard/sdk';
   * const healthy = (response) => response.text().includes('"status":"up"');
   */
  text(): string;
}

/**
 * Why a probe got no answer, or was not sent.
 *
 * @example
 * import { probe } from '@switchyard/sdk';
 * const timedOut = new probe.ProbeError('timeout');
 * console.assert(timedOut.message === 'timed out');
 */
export type ProbeErrorKind = 'refused' | 'timeout' | 'reset' | 'invalid-response' | 'not-allowed';

/**
 * A probe that got no answer: refused (`'connection refused'`), timed out
 * (`'timed out'`), reset (`'connection reset'`), an answer that is not HTTP
 * (`'invalid response: …'`), or a request the host would not send, such as
 * a bad method, path or header (`'not allowed: …'`).
 *
 * @example
 * import { HealthCheck, Verdict, probe } from '@switchyard/sdk';
 * class Check extends HealthCheck {
 *   check(_target) {
 *     try {
 *       return Verdict.healthy(`${probe.http({ path: '/' }).status}`);
 *     } catch (error) {
 *       if (!(error instanceof probe.ProbeError)) throw error;
 *       return error.kind === 'not-allowed' ? Verdict.unknown(error.message) : Verdict.unhealthy(error.message);
 *     }
 *   }
 * }
 */
export declare class ProbeError extends Error {
  /**
   * An error of this kind; `detail` says more for `'invalid-response'` and
   * `'not-allowed'`. Throw one from a `TestHost` handler.
   *
   * @example
   * import { probe } from '@switchyard/sdk';
   * throw new probe.ProbeError('invalid-response', 'no status line');
   */
  constructor(kind: ProbeErrorKind, detail?: string);
  /** What went wrong. */
  kind: ProbeErrorKind;
  /** The host's words, for `'invalid-response'` and `'not-allowed'`. */
  detail: string | undefined;
}

/**
 * Sends one HTTP/1.1 request to the endpoint under check. Throws a
 * ProbeError when it gets no answer; any status is an answer.
 *
 * @example
 * import { probe } from '@switchyard/sdk';
 * const status = probe.http({ path: '/healthz' }).status;
 */
export declare function http(request: HttpRequest): HttpResponse;

/**
 * Opens and closes a TCP connection to the endpoint under check; the
 * connect time in microseconds. Throws a ProbeError when it cannot connect.
 *
 * @example
 * import { probe } from '@switchyard/sdk';
 * const micros = probe.tcpConnect(500);
 */
export declare function tcpConnect(timeoutMs?: number): number;
